"""Optuna's search against the hand-written ("classic") one, side by side on
the same target and seeds: best-so-far per experiment, and how many
experiments each needs to reach the other's final best.

    python bench/offline_search.py                       # the synthetic target, 30 experiments x 5 seeds
    python bench/offline_search.py --experiments 60 --seeds 5 --searches classic optuna:tpe optuna:cmaes
    python bench/offline_search.py --engine --target nanochat --experiments 20 --time-budget 60 --seeds 3

By default the loop is the engine's greedy strategy reduced to its decisions
(propose, run train.py as a child process, keep if better, otherwise restore
the file), so the comparison measures the searches and nothing else. With
`--engine`, every (search, seed) is a real `ar-tui run --headless` on the
target (a git repository), and the curves are read from its results.tsv:
that is the form for real targets (CPU nanochat, examples/fast).

The synthetic target (`--target synthetic`, the default) is a train.py whose
val_bpb is a noisy function of knobs of every kind the discovery knows (two
learning rates that interact with the batch size, a width and a depth that
run out of memory together, a ratio, a beta, a weight decay) and trains in
milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ar_tui.agents.offline import OfflineProposer  # noqa: E402
from ar_tui.core.config import TargetConfig  # noqa: E402
from ar_tui.core.proposer import ProposalContext, ProposalFailed, ResultRow  # noqa: E402
from ar_tui.core.workspace import Workspace  # noqa: E402

SYNTHETIC = '''"""Synthetic target: val_bpb is a noisy function of knobs of several kinds."""
import hashlib
import math
import os

SEED = 42  # the run's seed: part of the noise, never a knob
MATRIX_LR = 0.04  # learning rate for matrices
EMBEDDING_LR = 0.6  # learning rate for embeddings
WEIGHT_DECAY = 0.2  # weight decay
ADAM_BETAS = (0.8, 0.95)  # Adam beta1, beta2
WARMDOWN_RATIO = 0.5  # fraction of the budget spent decaying the LR
WIDTH = 256  # model width
DEPTH = 4  # transformer layers
BATCH_SIZE = 2**5  # sequences per step

if __name__ == "__main__":
    if WIDTH * DEPTH * BATCH_SIZE > 2**16:
        raise SystemExit("RuntimeError: CUDA out of memory. Tried to allocate 3.00 GiB")
    # The best matrix LR grows with the square root of the batch (a real interaction).
    lr_best = 0.02 * math.sqrt(BATCH_SIZE / 16)
    loss = (
        1.0
        + 0.30 * math.log(MATRIX_LR / lr_best) ** 2
        + 0.05 * math.log(EMBEDDING_LR / 0.3) ** 2
        + 0.02 * math.log(WEIGHT_DECAY / 0.05) ** 2
        + 0.04 * math.log((1 - ADAM_BETAS[1]) / 0.02) ** 2
        + 0.01 * math.log((1 - ADAM_BETAS[0]) / 0.1) ** 2
        + 0.20 * (WARMDOWN_RATIO - 0.3) ** 2
        + 0.15 * math.log2(WIDTH / 384) ** 2
        + 0.03 * (DEPTH - 6) ** 2
        + 0.05 * math.log2(BATCH_SIZE / 16) ** 2
    )
    knobs = repr((MATRIX_LR, EMBEDDING_LR, WEIGHT_DECAY, ADAM_BETAS, WARMDOWN_RATIO, WIDTH, DEPTH, BATCH_SIZE))
    digest = hashlib.sha256(f"{knobs}:{os.environ.get('BENCH_RUN', '0')}".encode()).digest()
    noise = (int.from_bytes(digest[:4], "big") / 2**32 - 0.5) * 2 * float(os.environ.get("BENCH_NOISE", "0.002"))
    print("---")
    print(f"val_bpb: {loss + noise:.6f}")
'''


async def run_target(root: Path, config: TargetConfig, run: int) -> tuple[float | None, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "train.py", cwd=root, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={"BENCH_RUN": str(run), "PATH": "/usr/bin:/bin"},
    )
    output = (await process.communicate())[0].decode(errors="replace")
    match = config.metric_regex.search(output)
    if process.returncode != 0 or not match:
        return None, output[-2000:]
    return float(match.group(1)), output


async def one_run(search: str, seed: int, experiments: int, source: str, editable: list[str],
                  work: Path) -> list[float]:
    """Best-so-far after each experiment (index 0 is the baseline)."""
    name, _, sampler = search.partition(":")
    root = work / f"{search.replace(':', '-')}-{seed}"
    run_dir = work / f"{search.replace(':', '-')}-{seed}-run"
    root.mkdir(parents=True)
    run_dir.mkdir()
    (root / "train.py").write_text(source)
    config = TargetConfig(root=root)
    workspace = Workspace(root, editable, [])
    proposer = OfflineProposer(seed=seed, search=name, sampler=sampler or "tpe")
    train = root / "train.py"
    counter = 0
    baseline, _ = await run_target(root, config, counter)
    assert baseline is not None, "the target's baseline failed"
    history = [ResultRow(0, "0" * 7, baseline, "keep", "baseline")]
    best, curve, tail = baseline, [baseline], ""
    for exp in range(1, experiments + 1):
        before = train.read_text()
        ctx = ProposalContext(exp=exp, target=config, best_metric=best, baseline_metric=baseline,
                              history=list(history), last_failure_tail=tail, run_dir=run_dir)
        try:
            proposal = await proposer.propose(ctx, workspace, lambda event: None)
        except ProposalFailed as exc:
            print(f"  {search} seed {seed}: stopped at {exp}: {exc.reason}", file=sys.stderr)
            curve.extend([best] * (experiments + 1 - len(curve)))
            break
        counter += 1
        metric, output = await run_target(root, config, counter)
        if metric is None:
            status, tail = "crash", output
        elif metric < best:
            status, best = "keep", metric
        else:
            status = "discard"
        if status != "keep":
            train.write_text(before)
        history.append(ResultRow(exp, f"{exp:07x}", metric, status, proposal.description))
        curve.append(best)
    return curve


def reach(curve: list[float], level: float) -> int | None:
    """The first experiment whose best-so-far is at or below `level`."""
    return next((i for i, value in enumerate(curve) if value <= level), None)


def engine_run(search: str, seed: int, experiments: int, target: Path, work: Path,
               time_budget: float | None) -> list[float]:
    """One real `ar-tui run --headless`; best-so-far after each experiment."""
    import subprocess

    from ar_tui.core.ledger import read_results

    name, _, sampler = search.partition(":")
    tag = f"bench-{search.replace(':', '-')}-{seed}"
    run_dir = work / tag
    cmd = [sys.executable, "-m", "ar_tui.cli", "run", "--headless", "--target", str(target), "--tag", tag,
           "--run-dir", str(run_dir), "--agent", "offline", "--offline-search", name, "--sampler", sampler or "tpe",
           "--seed", str(seed), "--unattended", "--lookahead", "0", "--baseline-runs", "1",
           "--max-experiments", str(experiments)]
    if time_budget is not None:
        cmd += ["--time-budget", str(time_budget)]
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    _, rows, _ = read_results(run_dir / "results.tsv")
    curve, best = [], None
    for row in rows:
        if row.status == "keep" and row.metric is not None:
            best = row.metric
        curve.append(best)
    curve.extend([best] * (experiments + 1 - len(curve)))
    return curve


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="synthetic", help="'synthetic' or a target directory with train.py")
    parser.add_argument("--experiments", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--searches", nargs="+", default=["classic", "optuna:tpe", "optuna:cmaes"])
    parser.add_argument("--engine", action="store_true", help="each run a real `ar-tui run --headless`")
    parser.add_argument("--time-budget", type=float, help="training seconds per experiment (with --engine)")
    args = parser.parse_args()
    if args.engine:
        if args.target == "synthetic":
            raise SystemExit("--engine needs --target DIR (a git repository with train.py)")
        curves_e: dict[str, list[list[float]]] = {s: [] for s in args.searches}
        with tempfile.TemporaryDirectory() as tmp:
            for seed in range(args.seeds):
                for search in args.searches:
                    curves_e[search].append(engine_run(search, seed, args.experiments, Path(args.target).resolve(),
                                                       Path(tmp), args.time_budget))
        report(args, curves_e)
        return
    if args.target == "synthetic":
        source = SYNTHETIC
    else:
        source = (Path(args.target) / "train.py").read_text()
    curves: dict[str, list[list[float]]] = {s: [] for s in args.searches}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for search in args.searches:
                curves[search].append(await one_run(search, seed, args.experiments, source, ["train.py"],
                                                    Path(tmp)))
    report(args, curves)


def report(args, curves: dict[str, list[list[float]]]) -> None:
    print(f"target {args.target}, {args.experiments} experiments, seeds 0..{args.seeds - 1} (lower is better)")
    print("\nmedian best-so-far over seeds, per experiment")
    marks = sorted({0, 1, 2, 5, 10, 15, 20, 30, 40, 50, 60, args.experiments} & set(range(args.experiments + 1)))
    print("exp  " + "  ".join(f"{s:>12}" for s in args.searches))
    for i in marks:
        print(f"{i:>3}  " + "  ".join(f"{statistics.median(c[i] for c in curves[s]):>12.6f}" for s in args.searches))
    print("\nfinal best per seed")
    for search in args.searches:
        print(f"{search:>12}: " + " ".join(f"{c[-1]:.6f}" for c in curves[search]))
    print("\nexperiments to reach the other's final best (same seed; '-' = never within the budget)")
    for a in args.searches:
        for b in args.searches:
            if a == b:
                continue
            needed = [reach(ca, cb[-1]) for ca, cb in zip(curves[a], curves[b])]
            shown = " ".join("-" if n is None else str(n) for n in needed)
            print(f"{a:>12} reaching {b}'s final best: {shown}")
    wins = {s: 0 for s in args.searches}
    for seed in range(args.seeds):
        winner = min(args.searches, key=lambda s: curves[s][seed][-1])
        wins[winner] += 1
    print("\nseeds won (lowest final best): " + ", ".join(f"{s} {n}" for s, n in wins.items()))


if __name__ == "__main__":
    asyncio.run(main())
