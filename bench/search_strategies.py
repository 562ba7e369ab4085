"""Greedy, tree and islands at equal numbers of experiments, with the offline
proposer, on a real target: best-so-far curves (mean and spread over seeds)
and the number of experiments each strategy needs to reach greedy's final best.

    python bench/search_strategies.py --target examples/fast --experiments 60 --seeds 5
    python bench/search_strategies.py --target nanochat --time-budget 10 --experiments 30 --seeds 3

Each (strategy, seed) is a fresh copy of the target in its own git repository
and a full engine run (the real runner, evaluator and noise handling), so
the figures include everything a night would do. It prints what it measured
and writes a JSON file and a PNG of the curves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ar_tui.agents.offline import OfflineProposer  # noqa: E402
from ar_tui.core.config import load_target  # noqa: E402
from ar_tui.core.direction import Direction  # noqa: E402
from ar_tui.core.engine import Engine, EngineOptions  # noqa: E402
from ar_tui.core.ledger import read_results  # noqa: E402

STRATEGIES = ("greedy", "tree", "islands")


def fresh_copy(source: Path, into: Path) -> Path:
    shutil.copytree(source, into, ignore=shutil.ignore_patterns("__pycache__", ".git", "*.pt"))
    env = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="b",
               GIT_COMMITTER_EMAIL="b@b")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "target"]):
        subprocess.run(["git", *args], cwd=into, env=env, check=True)
    return into


def best_so_far(run_dir: Path, direction: Direction, experiments: int) -> list[float]:
    """The best metric after each experiment (index 0: the baseline)."""
    _, rows, _ = read_results(run_dir / "results.tsv")
    curve: list[float] = []
    best = None
    by_exp = {r.exp: r for r in rows if r.exp is not None}
    for exp in range(experiments + 1):
        row = by_exp.get(exp)
        if row is not None and row.status == "keep" and row.metric is not None:
            best = row.metric if best is None or direction.better(row.metric, best) else best
        curve.append(best if best is not None else float("nan"))
    return curve


async def one_run(target: Path, strategy: str, seed: int, experiments: int, slots: int,
                  time_budget: float | None, baseline_runs: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="ar-bench-") as tmp:
        copy = fresh_copy(target, Path(tmp) / "target")
        run_dir = Path(tmp) / "run"
        options = EngineOptions(target_dir=copy, tag=f"{strategy}{seed}", run_dir=run_dir, attended=False,
                                lookahead=0, baseline_runs=baseline_runs, max_experiments=experiments,
                                devices=["cpu"] * slots, strategy=strategy, time_budget=time_budget,
                                write_report=False)
        stopped = await Engine(options, OfflineProposer(seed=seed)).run()
        if stopped.error:
            raise SystemExit(f"{strategy} seed {seed}: {stopped.reason}")
        direction = Direction(load_target(copy).direction)
        return best_so_far(run_dir, direction, experiments)


def reach(curve: list[float], goal: float, direction: Direction) -> int | None:
    for exp, value in enumerate(curve):
        if value == value and not direction.better(goal, value):  # value is at least as good as goal
            return exp
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", type=Path, required=True)
    parser.add_argument("--experiments", type=int, default=60)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--time-budget", type=float)
    parser.add_argument("--baseline-runs", type=int, default=3)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--out", type=Path, default=Path("search_strategies"))
    args = parser.parse_args()
    target = args.target.resolve()
    direction = Direction(load_target(target).direction)
    curves: dict[str, list[list[float]]] = {}
    began = time.monotonic()
    for strategy in args.strategies.split(","):
        for seed in range(args.seeds):
            curve = asyncio.run(one_run(target, strategy, seed, args.experiments, args.slots, args.time_budget,
                                        args.baseline_runs))
            curves.setdefault(strategy, []).append(curve)
            print(f"{strategy:8s} seed {seed}: baseline {curve[0]:.6f} -> best {curve[-1]:.6f}", flush=True)
    print(f"\n{time.monotonic() - began:.0f} s in all; {args.experiments} experiments per run, {args.seeds} seeds\n")
    greedy_final = statistics.mean(c[-1] for c in curves["greedy"]) if "greedy" in curves else None
    summary = {}
    print("| strategy | final best (mean ± sd) | experiments to greedy's final best (per seed) |")
    print("|---|---|---|")
    for strategy, runs in curves.items():
        finals = [c[-1] for c in runs]
        needed = [reach(c, greedy_final, direction) for c in runs] if greedy_final is not None else []
        summary[strategy] = {"finals": finals, "reach_greedy_final": needed, "curves": runs}
        spread = statistics.stdev(finals) if len(finals) > 1 else 0.0
        shown = ", ".join("-" if n is None else str(n) for n in needed)
        print(f"| {strategy} | {statistics.mean(finals):.6f} ± {spread:.6f} | {shown} |")
    args.out.with_suffix(".json").write_text(json.dumps({"target": str(args.target), **vars(args) | {
        "target": str(args.target), "out": str(args.out)}, "results": summary}, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    for strategy, runs in curves.items():
        xs = list(range(len(runs[0])))
        means = [statistics.mean(c[i] for c in runs) for i in xs]
        lows = [min(c[i] for c in runs) for i in xs]
        highs = [max(c[i] for c in runs) for i in xs]
        ax.plot(xs, means, label=f"{strategy} (mean of {len(runs)})")
        ax.fill_between(xs, lows, highs, alpha=0.2)
    ax.set_xlabel("experiment")
    ax.set_ylabel("best so far")
    ax.set_title(f"{args.target.name}: search strategies, offline proposer")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"))
    print(f"\nwrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
