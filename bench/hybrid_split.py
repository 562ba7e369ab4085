"""How `--agent hybrid` splits experiments between Claude and the knob sampler.

    python bench/hybrid_split.py                  # the synthetic target, 30 experiments, seeds 0..2
    python bench/hybrid_split.py --experiments 60 --seeds 5 --offline-search optuna
    python bench/hybrid_split.py --target forecast   # examples/forecast through the real engine

A scripted Claude session against the local Messages API server
(tests/fake_messages_api.py; the real SingleAgent and anthropic SDK over
HTTP, token usage priced as the API would) is mixed with the real offline
search. It prints who got each experiment, how the bandit split them over
the run, and what each side contributed: improvement, dollars, training time.

`--target synthetic` (the default): bench/offline_search.py's train.py plus
a structural term: each `# idea` line Claude writes lowers val_bpb by 0.03,
up to four of them (structure helps early, then stops helping), while the
knobs keep paying off. The loop is the engine's greedy decisions (propose,
run train.py as a child, keep if better).

`--target forecast`: examples/forecast, the fast real target, each (seed,
sampler) a real `ar-tui run --headless --agent hybrid` (bench/arms.py) with
the server standing in for the API. The scripted Claude reads train.py with
the editor tool and makes real structural changes from a fixed list (a
cosine schedule, a persistence forecast, weight averaging, gradient
clipping, warm-up, input jitter): the first it has not tried that applies
to the file as it is, else a tried one again on the newer best; whether
each helps is what training says. Once every idea is in the
file it has none left and says so with a comment-only change.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ar_tui.agents.single import SingleAgent  # noqa: E402
from ar_tui.agents.hybrid import HybridProposer  # noqa: E402
from ar_tui.agents.offline import OfflineProposer  # noqa: E402
from ar_tui.core.config import TargetConfig  # noqa: E402
from ar_tui.core.proposer import ResultRow  # noqa: E402
from ar_tui.core.records.ledger import read_results  # noqa: E402
from bench.arms import Arm, greedy_loop, headless_run  # noqa: E402
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


IDEA_PREFIX = "structural idea: "
# (what it is, [(old, new) edits of train.py]): real changes of examples/forecast's code.
FORECAST_IDEAS: list[tuple[str, list[tuple[str, str]]]] = [
    ("cosine decay of the learning rate",
     [("* ((m / (1 - BETA1**step))", "* 0.5 * (1 + np.cos(np.pi * step / TRAIN_STEPS)) * ((m / (1 - BETA1**step))")]),
    ("forecast the change from the last year (persistence plus a learned correction)",
     [("    return h @ params[-2] + params[-1], activations",
       "    return h @ params[-2] + params[-1] + inputs[:, -1:], activations")]),
    ("average the weights over training and forecast with the average",
     [("    second = [np.zeros_like(p) for p in params]\n",
       "    second = [np.zeros_like(p) for p in params]\n    average = [p.copy() for p in params]\n"),
      ("        if step % 500 == 0:",
       "        for a, p in zip(average, params):\n            a *= 0.995\n            a += 0.005 * p\n"
       "        if step % 500 == 0:"),
      ("    return params\n\n\ndef main():", "    return average\n\n\ndef main():")]),
    ("clip the gradient's global norm at 1",
     [("        for p, g, m, v in zip(params, gradients(params, inputs[batch], targets[batch]), first, second):",
       "        grads = gradients(params, inputs[batch], targets[batch])\n"
       "        norm = np.sqrt(sum(float(np.sum(g * g)) for g in grads))\n"
       "        grads = [g * min(1.0, 1.0 / (norm + 1e-12)) for g in grads]\n"
       "        for p, g, m, v in zip(params, grads, first, second):")]),
    ("warm the learning rate up over the first 100 steps",
     [("p -= LEARNING_RATE * ", "p -= LEARNING_RATE * min(1.0, step / 100) * ")]),
    ("jitter the inputs with Gaussian noise (sd 0.02) as augmentation",
     [("gradients(params, inputs[batch], targets[batch])",
       "gradients(params, inputs[batch] + rng.normal(0.0, 0.02, inputs[batch].shape), targets[batch])")]),
]


def _result_text(result: dict) -> str:
    content = result.get("content", "")
    if isinstance(content, list):
        content = "".join(block.get("text", "") for block in content)
    return content


def forecast_claude(request):
    """Read train.py; make the first structural idea not tried yet that
    applies to it (else a tried one again, on the newer best); submit it."""
    results = request.tool_results()
    if not results:
        return reply(text("Reading train.py first."), edit("view", path="train.py"))
    calls = [b for b in request.messages()[-2]["content"] if b["type"] == "tool_use"]
    if calls and calls[0]["input"].get("command") == "view":
        current = "\n".join(line.split("\t", 1)[-1] for line in _result_text(results[0]).splitlines())
        history = request.text()
        tried = [idea for idea in FORECAST_IDEAS if IDEA_PREFIX + idea[0][:40] in history]
        # The ideas not tried yet first, in order; then the tried ones again (on a newer best).
        for name, edits in [idea for idea in FORECAST_IDEAS if idea not in tried] + tried:
            if all(current.count(old) == 1 for old, _ in edits):
                return reply(text(f"Trying: {name}."),
                             *[edit("str_replace", path="train.py", old_str=old, new_str=new) for old, new in edits])
        return reply(text("Trying: nothing new (every idea is in the file already)."),
                     edit("insert", path="train.py", insert_line=0,
                          insert_text=f"# none left after {history.count(IDEA_PREFIX)} mentions\n"))
    said = " ".join(b.get("text", "") for b in request.messages()[-2]["content"] if b["type"] == "text")
    name = said.split("Trying: ", 1)[-1].rstrip(".")
    return reply(run_experiment(IDEA_PREFIX + name, rationale="structure"))


async def forecast_run(seed: int, experiments: int, work: Path, search: str) -> list[ResultRow]:
    """One real `ar-tui run --headless --agent hybrid` on examples/forecast,
    the local server standing in for the API; its ledger."""
    arm = Arm(f"hybrid-{search}", ("--agent", "hybrid", "--offline-search", search))
    with FakeMessagesAPI() as api:
        api.responder = forecast_claude
        env = {"ANTHROPIC_API_KEY": "sk-ant-bench", "ANTHROPIC_BASE_URL": api.base_url,
               "PYTHONWARNINGS": "ignore::DeprecationWarning"}
        await headless_run(REPO / "examples" / "forecast", arm, seed, experiments, work, env=env,
                           log=lambda line: print(line, file=sys.stderr, flush=True))
    return read_results(work / f"{arm.name}-{seed}" / "run" / "results.tsv")[1]


async def one_run(seed: int, experiments: int, work: Path, search: str) -> list[ResultRow]:
    root, run_dir = work / f"target-{seed}", work / f"run-{seed}"
    root.mkdir(parents=True)
    run_dir.mkdir()
    (root / "train.py").write_text(TARGET)
    with FakeMessagesAPI() as api:
        api.responder = scripted_claude
        claude = SingleAgent(model="claude-sonnet-4-5", program="Improve val_bpb.", api_key="sk-ant-bench",
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
    parser.add_argument("--target", choices=["synthetic", "forecast"], default="synthetic")
    args = parser.parse_args()
    run = forecast_run if args.target == "forecast" else one_run
    with tempfile.TemporaryDirectory() as tmp:
        runs = [await run(seed, args.experiments, Path(tmp), args.offline_search) for seed in range(args.seeds)]
    what = ("examples/forecast through the real engine (scripted structural ideas: "
            f"{len(FORECAST_IDEAS)} real code changes)" if args.target == "forecast" else
            f"the synthetic target (+ up to {MAX_USEFUL_IDEAS} structural ideas worth {IDEA_GAIN} each)")
    print(f"hybrid (sampler: {args.offline_search}) on {what}, {args.experiments} experiments, "
          f"seeds 0..{args.seeds - 1}")
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
    print("\nwhat claude tried (seed: description -> status, metric)")
    for seed, history in enumerate(runs):
        for r in history[1:]:
            if r.proposer == "claude":
                shown = f"{r.metric:.6f}" if r.metric is not None else "-"
                print(f"  {seed}: {r.description[:90]} -> {r.status} {shown}")
    finals = [min(r.metric for r in h if r.metric is not None and r.status == "keep") for h in runs]
    print("\nfinal best per seed: " + " ".join(f"{v:.6f}" for v in finals)
          + f" (baseline {runs[0][0].metric:.6f})")


if __name__ == "__main__":
    asyncio.run(main())
