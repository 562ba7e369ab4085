"""Optuna's search against the hand-written ("classic") one, side by side on
the same target and seeds: best-so-far per experiment, and how many
experiments each needs to reach the other's final best.

    python bench/offline_search.py                       # the synthetic target, 30 experiments x 5 seeds
    python bench/offline_search.py --experiments 60 --seeds 5 --searches classic optuna:tpe optuna:cmaes
    python bench/offline_search.py --engine --target nanochat --experiments 20 --time-budget 60 --seeds 3
    python bench/offline_search.py --engine --target examples/forecast --experiments 60 --seeds 5

By default the loop is the engine's greedy strategy reduced to its decisions
(propose, run train.py as a child process, keep if better, otherwise restore
the file), so the comparison measures the searches and nothing else. With
`--engine`, every (search, seed) is a real `ar-tui run --headless` on a
fresh git copy of the target folder (bench/arms.py), and the curves are read
from its results.tsv (`--parallel` runs the searches of a seed at once):
that is the form for real targets (CPU nanochat, examples/forecast).

The synthetic target (`--target synthetic`, the default) is a train.py whose
val_bpb is a noisy function of knobs of every kind the discovery knows (two
learning rates that interact with the batch size, a width and a depth that
run out of memory together, a ratio, a beta, a weight decay) and trains in
milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ar_tui.agents.offline import OfflineProposer  # noqa: E402
from ar_tui.core.config import TargetConfig  # noqa: E402
from ar_tui.core.direction import Direction  # noqa: E402
from bench.arms import (Arm, curve_of, greedy_loop, headless_run, load_line, mark_points, reach,  # noqa: E402
                        run_arms, target_direction, target_source)

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


async def one_run(search: str, seed: int, experiments: int, source: str, work: Path) -> list[float]:
    """Best-so-far after each experiment (index 0 is the baseline)."""
    name, _, sampler = search.partition(":")
    root = work / f"{search.replace(':', '-')}-{seed}"
    run_dir = work / f"{search.replace(':', '-')}-{seed}-run"
    root.mkdir(parents=True)
    run_dir.mkdir()
    (root / "train.py").write_text(source)
    proposer = OfflineProposer(seed=seed, search=name, sampler=sampler or "tpe")
    history = await greedy_loop(proposer, root, TargetConfig(root=root), run_dir, experiments, run_target,
                                label=f"{search} seed {seed}")
    return curve_of(history, experiments)


def search_arm(search: str) -> Arm:
    """`classic`, `optuna:tpe`, `optuna:cmaes` as `ar-tui run` flags."""
    name, _, sampler = search.partition(":")
    return Arm(search, ("--offline-search", name, "--sampler", sampler or "tpe"))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="synthetic",
                        help="'synthetic', a target directory with train.py, or nanochat (the bundled one)")
    parser.add_argument("--experiments", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--searches", nargs="+", default=["classic", "optuna:tpe", "optuna:cmaes"])
    parser.add_argument("--engine", action="store_true", help="each run a real `ar-tui run --headless`")
    parser.add_argument("--time-budget", type=float, help="training seconds per experiment (with --engine)")
    parser.add_argument("--parallel", action="store_true",
                        help="with --engine: the searches of one seed run at the same time, so they share the load")
    parser.add_argument("--keep", type=Path, help="with --engine: keep every run's target copy and run dir here; "
                                                  "a finished run found there is read, not rerun")
    args = parser.parse_args()
    began = time.monotonic()
    if args.engine:
        if args.target == "synthetic":
            raise SystemExit("--engine needs --target DIR (a target folder) or --target nanochat")
        target = target_source(args.target)
        direction = target_direction(target)
        arms = {search: search_arm(search) for search in args.searches}
        with tempfile.TemporaryDirectory(prefix="ar-bench-") as tmp:
            work = args.keep.resolve() if args.keep else Path(tmp)
            work.mkdir(parents=True, exist_ok=True)

            def one(search: str, seed: int):
                return headless_run(target, arms[search], seed, args.experiments, work,
                                    time_budget=args.time_budget, direction=direction,
                                    log=lambda line: print(line, file=sys.stderr, flush=True))

            curves = await run_arms(args.searches, args.seeds, one, parallel=args.parallel)
        report(args, curves, direction, time.monotonic() - began)
        return
    if args.target == "synthetic":
        source = SYNTHETIC
    else:
        source = (Path(args.target) / "train.py").read_text()
    with tempfile.TemporaryDirectory() as tmp:
        curves = await run_arms(args.searches, args.seeds,
                                lambda search, seed: one_run(search, seed, args.experiments, source, Path(tmp)))
    report(args, curves, Direction.MIN, time.monotonic() - began)


def report(args, curves: dict[str, list[list[float]]], direction: Direction, seconds: float) -> None:
    print(f"target {args.target}, {args.experiments} experiments, seeds 0..{args.seeds - 1} ({direction.words})")
    budget = f"time budget {args.time_budget:g} s, " if args.time_budget else ""
    how = ("real engine, searches of a seed in parallel" if args.parallel else "real engine") if args.engine \
        else "greedy loop"
    print(f"{budget}{how}, {seconds / 60:.0f} min in all; {load_line()} at the end")
    print("\nmedian best-so-far over seeds, per experiment")
    print("exp  " + "  ".join(f"{s:>12}" for s in args.searches))
    for i in mark_points(args.experiments):
        print(f"{i:>3}  " + "  ".join(f"{statistics.median(c[i] for c in curves[s]):>12.6f}" for s in args.searches))
    print("\nfinal best per seed")
    for search in args.searches:
        print(f"{search:>12}: " + " ".join(f"{c[-1]:.6f}" for c in curves[search]))
    print("\nexperiments to reach the other's final best (same seed; '-' = never within the budget)")
    for a in args.searches:
        for b in args.searches:
            if a == b:
                continue
            needed = [reach(ca, cb[-1], direction) for ca, cb in zip(curves[a], curves[b])]
            shown = " ".join("-" if n is None else str(n) for n in needed)
            print(f"{a:>12} reaching {b}'s final best: {shown}")
    wins = {s: 0 for s in args.searches}
    for seed in range(args.seeds):
        finals = {s: curves[s][seed][-1] for s in args.searches}
        wins[next(s for s in args.searches if finals[s] == direction.best(finals.values()))] += 1
    best_word = "lowest" if direction is Direction.MIN else "highest"
    print(f"\nseeds won ({best_word} final best): " + ", ".join(f"{s} {n}" for s, n in wins.items()))


if __name__ == "__main__":
    asyncio.run(main())
