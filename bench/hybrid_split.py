"""How `--agent hybrid` splits experiments between Claude and the knob sampler.

    python bench/hybrid_split.py                  # 30 experiments, seeds 0..2
    python bench/hybrid_split.py --experiments 60 --seeds 5 --offline-search optuna

A scripted Claude session against the local Messages API server
(tests/fake_messages_api.py; the real ClaudeAgent and anthropic SDK over
HTTP, token usage priced as the API would) is mixed with the real Optuna
sampler on a fast synthetic target: bench/offline_search.py's train.py, plus
a structural term: each `# idea` line Claude writes lowers val_bpb by 0.03,
up to four of them (structure helps early, then stops helping), while the
knobs keep paying off. The loop is the engine's greedy decisions (propose,
run train.py as a child, keep if better). It prints who got each
experiment, how the bandit split them over the run, and what each side
contributed: improvement, dollars, training time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ar_tui.agents.claude import ClaudeAgent  # noqa: E402
from ar_tui.agents.hybrid import HybridProposer  # noqa: E402
from ar_tui.agents.offline import OfflineProposer  # noqa: E402
from ar_tui.core.config import TargetConfig  # noqa: E402
from ar_tui.core.proposer import ResultRow  # noqa: E402
from bench.arms import greedy_loop  # noqa: E402
from bench.offline_search import SYNTHETIC, run_target  # noqa: E402
from tests.fake_messages_api import FakeMessagesAPI, edit, reply, run_experiment, text  # noqa: E402

MAX_USEFUL_IDEAS = 4
IDEA_GAIN = 0.03
TARGET = SYNTHETIC.replace(
    '    print("---")',
    f'    ideas = sum(1 for line in open("train.py") if line.startswith("# idea"))\n'
    f'    loss -= {IDEA_GAIN} * min(ideas, {MAX_USEFUL_IDEAS})\n'
    '    print("---")',
)


def scripted_claude(request):
    """One structural change per proposal (an `# idea` line), then run_experiment."""
    if request.tool_results():
        return reply(run_experiment("a structural idea", rationale="architecture"))
    count = request.text().count("a structural idea")
    return reply(text("Restructuring the model."),
                 edit("insert", path="train.py", insert_line=0, insert_text=f"# idea {count}\n"))


async def one_run(seed: int, experiments: int, work: Path, search: str) -> list[ResultRow]:
    root, run_dir = work / f"target-{seed}", work / f"run-{seed}"
    root.mkdir(parents=True)
    run_dir.mkdir()
    (root / "train.py").write_text(TARGET)
    with FakeMessagesAPI() as api:
        api.responder = scripted_claude
        claude = ClaudeAgent(model="claude-sonnet-4-5", program="Improve val_bpb.", api_key="sk-ant-bench",
                             base_url=api.base_url)
        hybrid = HybridProposer(claude, OfflineProposer(seed=seed, search=search))
        return await greedy_loop(hybrid, root, TargetConfig(root=root), run_dir, experiments, run_target,
                                 stop_when_exhausted=False, label=f"seed {seed}")


def contributions(history: list[ResultRow]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    best = history[0].metric
    for row in history[1:]:
        side = out.setdefault(row.proposer, {"experiments": 0, "keeps": 0, "improvement": 0.0, "usd": 0.0,
                                             "train_s": 0.0})
        side["experiments"] += 1
        side["usd"] += row.cost_usd
        side["train_s"] += row.seconds
        if row.status == "keep" and row.metric is not None:
            side["keeps"] += 1
            side["improvement"] += best - row.metric
            best = row.metric
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--offline-search", choices=["classic", "optuna"], default="classic",
                        help="the sampler side (default: classic, as `--agent hybrid` uses)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [await one_run(seed, args.experiments, Path(tmp), args.offline_search) for seed in range(args.seeds)]
    print(f"hybrid (sampler: {args.offline_search}) on the synthetic target (+ up to {MAX_USEFUL_IDEAS} structural ideas worth {IDEA_GAIN} each), "
          f"{args.experiments} experiments, seeds 0..{args.seeds - 1}")
    print("\nwho got each experiment (C = claude, o = offline sampler; upper case = kept)")
    for seed, history in enumerate(runs):
        marks = "".join(("C" if r.proposer == "claude" else "O") if r.status == "keep"
                        else ("c" if r.proposer == "claude" else "o") for r in history[1:])
        print(f"seed {seed}: {marks}")
    thirds = [(i * args.experiments // 3 + 1, (i + 1) * args.experiments // 3) for i in range(3)]
    print("\nclaude's share of the experiments, by third of the run")
    for lo, hi in thirds:
        share = [sum(r.proposer == "claude" for r in h[lo:hi + 1]) / max(1, len(h[lo:hi + 1])) for h in runs]
        print(f"  exp {lo:>3}-{hi:<3}: " + " ".join(f"{s:.0%}" for s in share))
    print("\nwhat each side contributed (summed over seeds)")
    totals: dict[str, dict[str, float]] = {}
    for history in runs:
        for side, numbers in contributions(history).items():
            into = totals.setdefault(side, dict.fromkeys(numbers, 0.0))
            for name, value in numbers.items():
                into[name] += value
    print(f"  {'side':<8} {'exps':>5} {'keeps':>5} {'improvement':>12} {'usd':>8} {'train_s':>8}")
    for side, n in sorted(totals.items()):
        print(f"  {side:<8} {n['experiments']:>5.0f} {n['keeps']:>5.0f} {n['improvement']:>12.4f} "
              f"{n['usd']:>8.4f} {n['train_s']:>8.1f}")
    finals = [min(r.metric for r in h if r.metric is not None and r.status == "keep") for h in runs]
    print("\nfinal best per seed: " + " ".join(f"{v:.6f}" for v in finals)
          + f" (baseline {runs[0][0].metric:.6f})")


if __name__ == "__main__":
    asyncio.run(main())
