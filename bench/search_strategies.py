"""Greedy, tree and islands at equal numbers of experiments, with the offline
proposer, on a real target: best-so-far curves (mean and spread over seeds)
and the number of experiments each strategy needs to reach greedy's final best.

    python bench/search_strategies.py --target examples/forecast --experiments 60 --seeds 5
    python bench/search_strategies.py --target nanochat --time-budget 10 --experiments 30 --seeds 3

Each (strategy, seed) is a real `ar-tui run --headless --agent offline
--strategy S --seed N` on a fresh git copy of the target (bench/arms.py:
the real runner, evaluator and noise handling), so the figures include
everything a night would do. Runs go seed by seed, every strategy inside a
seed, so a machine whose load drifts drifts over all of them alike;
`--parallel` runs the strategies of one seed at the same time. It prints
what it measured and writes a JSON file and a PNG of the curves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.arms import (Arm, headless_run, load_line, plot_curves, reach, run_arms, spread,  # noqa: E402
                        target_direction, target_source)

STRATEGIES = ("greedy", "tree", "islands")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="a target folder, or nanochat (the bundled one)")
    parser.add_argument("--experiments", type=int, default=60)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--time-budget", type=float)
    parser.add_argument("--baseline-runs", type=int, default=3)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--offline-search", choices=["classic", "optuna"],
                        help="the offline proposer's search (default: the target's, as `ar-tui run` chooses it)")
    parser.add_argument("--parallel", action="store_true",
                        help="the strategies of one seed run at the same time, so they share the load")
    parser.add_argument("--keep", type=Path, help="keep every run's target copy and run dir here; a finished run "
                                                  "found there is read, not rerun")
    parser.add_argument("--out", type=Path, default=Path("search_strategies"))
    args = parser.parse_args()
    target = target_source(args.target)
    direction = target_direction(target)
    strategies = args.strategies.split(",")
    search = ("--offline-search", args.offline_search) if args.offline_search else ()
    arms = {s: Arm(s, ("--strategy", s, "--slots", str(args.slots), *search)) for s in strategies}
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ar-bench-") as tmp:
        work = args.keep.resolve() if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)

        def one(strategy: str, seed: int):
            return headless_run(target, arms[strategy], seed, args.experiments, work, time_budget=args.time_budget,
                                baseline_runs=args.baseline_runs, direction=direction,
                                log=lambda line: print(line, flush=True))

        curves = asyncio.run(run_arms(strategies, args.seeds, one, parallel=args.parallel))
    budget = f", time budget {args.time_budget:g} s" if args.time_budget else ""
    print(f"\n{time.monotonic() - began:.0f} s in all; {args.experiments} experiments per run, {args.seeds} seeds"
          f"{budget}, {args.slots} slot(s){', strategies of a seed in parallel' if args.parallel else ''}; "
          f"{load_line()} at the end\n")
    greedy_final = statistics.mean(c[-1] for c in curves["greedy"]) if "greedy" in curves else None
    summary = {}
    print("| strategy | final best (mean ± sd) | experiments to greedy's final best (per seed) "
          "| experiments to greedy's final best on the same seed |")
    print("|---|---|---|---|")

    def shown(needed: list[int | None]) -> str:
        return ", ".join("-" if n is None else str(n) for n in needed)

    for strategy, runs in curves.items():
        finals = [c[-1] for c in runs]
        needed = [reach(c, greedy_final, direction) for c in runs] if greedy_final is not None else []
        same_seed = [reach(c, g[-1], direction) for c, g in zip(runs, curves["greedy"])] if "greedy" in curves else []
        summary[strategy] = {"finals": finals, "reach_greedy_final": needed, "reach_same_seed_greedy_final": same_seed,
                             "curves": runs}
        print(f"| {strategy} | {statistics.mean(finals):.6f} ± {spread(finals):.6f} | {shown(needed)} "
              f"| {shown(same_seed)} |")
    args.out.with_suffix(".json").write_text(json.dumps({**vars(args), "target": str(args.target),
                                                         "out": str(args.out), "keep": str(args.keep),
                                                         "load": load_line(), "results": summary}, indent=1))
    plot_curves(curves, args.out.with_suffix(".png"), f"{Path(args.target).name}: search strategies, offline "
                f"proposer, {args.experiments} experiments x {args.seeds} seed(s){budget}")
    print(f"\nwrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
