"""How often do keeps mean a real gain? The old rule against the new one.

Synthetic targets behave like training: a run's metric is a pure function of
(code, seed): the same code with the same seed gives the same metric, and any
change of the code or of the seed re-draws it around the code's true value
with a noise sd of 1. The null target's changes have no effect at all; the
effect targets have one change (knob X) that is truly better by 1 or 2 sds.

Each decision goes through the same procedure the engine follows (baseline
runs, candidate runs, re-runs, re-measures of the best), over the pure
functions of `ar_tui.core.decisions` and `ar_tui.core.seeds`:

- `old`: today's rule before issue 13 (k x sd from repeats, k = 2, 2 baseline
  runs, 2 runs at most) with the old harness, which ran every repeat with the
  script's own seed: repeats of one commit agree exactly.
- `old+seeds`: the same rule, fed seed-varied repeats.
- `bonferroni`: `decisions.decide` with the first rule of issue 13: Student-t
  quantiles, 1 - confidence split evenly over the looks, futility at 0.5 se
  (`design="bonferroni"`), at the 5 baseline runs it shipped with.
- `new`: `decisions.decide` at its defaults (the sequential design; 8 baseline
  runs, 95% confidence, 4 runs at most; the flags change them), seeds from
  `seeds.seed_for`.

Two settings: a single decision against a freshly measured baseline (the
issue's definition of one decision), and whole nights (baseline + 20
experiments, the effect proposed at a random position among null changes),
where a lucky keep early in the night makes later decisions harder.

    python bench/noise_decisions.py                 # 400 decisions / nights per cell, ~1.5 min
    python bench/noise_decisions.py --rules new --baseline-runs 12  # one rule, other settings
    python bench/noise_decisions.py --rules bonferroni,new --settings single --trials 2000
    python bench/noise_decisions.py --trials 100    # quick
    python bench/noise_decisions.py --engine 10     # also 10 nights per target through the real engine

`--engine N` runs the same nights through the real `Engine` (real git, real
child processes, `ScriptedProposer`) on a tiny script that draws its metric
from a hash of its own source and AR_SEED; about 5 s of CPU per night.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ar_tui.core.decisions import (  # noqa: E402
    DEFAULT_BASELINE_RUNS,
    DEFAULT_CONFIDENCE,
    DEFAULT_MAX_RUNS,
    KEEP,
    REMEASURE_BEST,
    RERUN,
    NoiseModel,
    decide,
    improvement_ci_pct,
    mean,
)
from ar_tui.core.seeds import seed_for  # noqa: E402

SD = 1.0
BASE = 100.0  # the baseline's true metric (lower is better)
SCRIPT_SEED = 1337  # the old harness: every run used the script's own seed


@dataclass
class Target:
    """Code is the set of changes applied; its true metric is BASE minus the
    effects of the changes it holds."""

    effects: dict[str, float]
    world: int  # one synthetic universe per trial

    def true_value(self, code: frozenset[str]) -> float:
        return BASE - sum(self.effects.get(change, 0.0) for change in code) * SD

    def run(self, code: frozenset[str], seed: int) -> float:
        key = f"{self.world}|{sorted(code)}|{seed}".encode()
        draw = random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big")).gauss(0.0, 1.0)
        return self.true_value(code) + SD * draw


# --------------------------------------------------------------------------- the old rule


def old_judge(runs: list[float], best: float, groups: dict, k: float, max_runs: int) -> str:
    """decisions.judge as it was before issue 13 (commit 81e9411), direction min."""
    pooled, dof = 0.0, 0
    for values in groups.values():
        if len(values) > 1:
            centre = mean(values)
            pooled += sum((v - centre) ** 2 for v in values)
            dof += len(values) - 1
    band = k * math.sqrt(pooled / dof) if dof else None
    gain = best - mean(runs)
    if gain <= 0:
        return "discard"
    if not band:
        return "keep"
    threshold = band / math.sqrt(len(runs))
    if gain >= threshold:
        return "keep"
    return RERUN if len(runs) < max_runs else "discard"


# --------------------------------------------------------------------------- one night


@dataclass
class Night:
    runs: int = 0  # after the baseline
    decisions: int = 0
    null_decisions: int = 0
    false_keeps: int = 0
    effect_kept: bool | None = None
    interval: tuple[float, float] | None = None
    improvement_true: float = 0.0
    confirmation_runs: int = 0
    log: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Settings:
    confidence: float = DEFAULT_CONFIDENCE
    max_runs: int = DEFAULT_MAX_RUNS
    baseline_runs: int = DEFAULT_BASELINE_RUNS


# The rules that go through decisions.decide. Bonferroni runs at the settings it
# shipped with (5 baseline runs); `new` at the command line's (--baseline-runs).
DESIGNS = {"new": "sequential", "bonferroni": "bonferroni"}
BONFERRONI_BASELINE_RUNS = 5


def simulate(rule: str, target: Target, proposals: list[str], settings: Settings = Settings()) -> Night:
    """The engine's procedure over the pure functions: a baseline, one
    decision per proposal (a change applied on top of the best), and the
    confirmation of a kept best with fresh seeds before the report."""
    night = Night()
    seeded = rule != "old"
    design = DESIGNS.get(rule)
    baseline_runs = {"sequential": settings.baseline_runs, "bonferroni": BONFERRONI_BASELINE_RUNS}.get(design, 2)
    max_runs = settings.max_runs if design else 2
    confidence = settings.confidence
    best_code: frozenset[str] = frozenset()
    noise = NoiseModel()
    groups: dict[str, list[float]] = {}

    def seed(exp: int, attempt: int) -> int:
        return seed_for(exp, attempt) if seeded else SCRIPT_SEED

    def key(code: frozenset[str]) -> str:
        return "|".join(sorted(code))

    for attempt in range(1, baseline_runs + 1):
        metric = target.run(best_code, seed(0, attempt))
        noise.add(key(best_code), metric, seed(0, attempt))
        groups.setdefault(key(best_code), []).append(metric)
    baseline_key = key(best_code)
    best_metric = mean(groups[baseline_key])

    for exp, change in enumerate(proposals, 1):
        code = best_code | {change}
        runs: list[float] = []
        attempt = 0
        while True:
            attempt += 1
            metric = target.run(code, seed(exp, attempt))
            night.runs += 1
            runs.append(metric)
            noise.add(key(code), metric, seed(exp, attempt))
            groups.setdefault(key(code), []).append(metric)
            if design:
                action = decide(runs, noise.runs(key(best_code)), noise, "min", confidence, max_runs,
                                design=design).action
                while action == REMEASURE_BEST:
                    attempt += 1
                    noise.add(key(best_code), target.run(best_code, seed(exp, attempt)), seed(exp, attempt))
                    night.runs += 1
                    action = decide(runs, noise.runs(key(best_code)), noise, "min", confidence, max_runs,
                                    design=design).action
            else:
                action = old_judge(runs, best_metric, groups, 2.0, max_runs)
            if action != RERUN:
                break
        night.decisions += 1
        kept = action == KEEP
        if change == "X":
            night.effect_kept = kept
        else:
            night.null_decisions += 1
            night.false_keeps += kept
        if kept:
            best_code = code
            best_metric = mean(runs)
            noise.mark_kept(key(best_code))
    if design:
        # The engine's _confirm_best: fresh seeds for a kept best, then the interval from fresh runs.
        attempt = baseline_runs
        while noise.sd and len(noise.fresh_runs(key(best_code))) < baseline_runs:
            attempt += 1
            noise.add(key(best_code), target.run(best_code, seed(0, attempt)), seed(0, attempt))
            night.confirmation_runs += 1
        night.interval = improvement_ci_pct(noise.runs(baseline_key), noise.fresh_runs(key(best_code)), noise,
                                            "min", confidence)
    night.improvement_true = 100.0 * (BASE - target.true_value(best_code)) / BASE
    return night


# --------------------------------------------------------------------------- the table


@dataclass
class Cell:
    decisions: int = 0
    runs: int = 0
    null_decisions: int = 0
    false_keeps: int = 0
    effects: int = 0
    effects_kept: int = 0
    intervals: int = 0
    intervals_holding_truth: int = 0
    nights: int = 0
    confirmation_runs: int = 0

    def add(self, night: Night) -> None:
        self.decisions += night.decisions
        self.nights += 1
        self.confirmation_runs += night.confirmation_runs
        self.runs += night.runs
        self.null_decisions += night.null_decisions
        self.false_keeps += night.false_keeps
        if night.effect_kept is not None:
            self.effects += 1
            self.effects_kept += night.effect_kept
        if night.interval is not None:
            self.intervals += 1
            low, high = night.interval
            self.intervals_holding_truth += low <= night.improvement_true <= high

    def row(self, rule: str, setting: str, target: str) -> str:
        false_keep = f"{self.false_keeps / self.null_decisions:.1%}" if self.null_decisions else "-"
        power = f"{self.effects_kept / self.effects:.0%}" if self.effects else "-"
        runs = f"{self.runs / self.decisions:.2f}"
        cover = f"{self.intervals_holding_truth / self.intervals:.0%}" if self.intervals else "-"
        confirm = f"{self.confirmation_runs / self.nights:.2f}" if rule in DESIGNS else "-"
        return (f"| {setting} | {target} | {rule} | {self.decisions} | {false_keep} | {power} | {runs} | {confirm} "
                f"| {cover} |")


# --------------------------------------------------------------------------- through the real engine

ENGINE_SCRIPT = """\
import hashlib, os, random
WORLD = {world}  # one synthetic universe per night: its source, so its luck, is its own
X = 0  # the knob with a real effect at 1
{knobs}
source = open(__file__).read()
luck = random.Random(hashlib.sha256((source + os.environ.get("AR_SEED", "")).encode()).hexdigest()).gauss(0, 1)
print(f"val_bpb: {{{base} - {effect} * X + luck:.6f}}")
"""


async def engine_night(effect: float, proposals: list[str], settings: Settings, root: Path, world: int = 0) -> Night:
    """One night through the real engine; the figures read back from its ledger and events."""
    from ar_tui.agents.scripted import ScriptedProposer, ScriptStep
    from ar_tui.core import events as ev
    from ar_tui.core.engine import Engine, EngineOptions
    from ar_tui.core.records.ledger import read_events, read_results

    knobs = "\n".join(f"{name} = 0" for name in proposals if name != "X")
    target = root / "target"
    target.mkdir(parents=True)
    (target / "train.py").write_text(ENGINE_SCRIPT.format(knobs=knobs, base=BASE, effect=effect, world=world))
    (target / "prepare.py").write_text("# fixed\n")
    env = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="b",
               GIT_COMMITTER_EMAIL="b@b")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "target"]):
        subprocess.run(["git", *args], cwd=target, env=env, check=True, capture_output=True)
    steps = [ScriptStep(name, f"{name} = 0", f"{name} = 1") for name in proposals]
    run_dir = root / "run"
    engine = Engine(EngineOptions(target_dir=target, tag="bench", run_dir=run_dir, attended=False, lookahead=0,
                                  write_report=False, max_experiments=len(steps), confidence=settings.confidence,
                                  max_runs=settings.max_runs, baseline_runs=settings.baseline_runs),
                    ScriptedProposer(steps), services=[])
    stopped = await engine.run()
    night = Night()
    _, rows, _ = read_results(run_dir / "results.tsv")
    for row in rows:
        if row.exp in (0, None):
            continue
        night.decisions += 1
        kept = row.status == "keep"
        if row.description == "X":
            night.effect_kept = kept
        else:
            night.null_decisions += 1
            night.false_keeps += kept
    started = [e for e in read_events(run_dir / "events.jsonl") if isinstance(e, ev.ExperimentStarted)]
    night.runs = sum(1 for e in started if e.exp != 0)
    night.confirmation_runs = sum(1 for e in started if e.exp == 0) - settings.baseline_runs
    if stopped.improvement_ci_pct is not None:
        night.interval = tuple(stopped.improvement_ci_pct)
    night.improvement_true = 100.0 * (effect if night.effect_kept else 0.0) / BASE
    return night


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=400, help="decisions (single) and nights per cell")
    parser.add_argument("--night", type=int, default=20, help="experiments per night")
    parser.add_argument("--confidence", type=float, default=DEFAULT_CONFIDENCE)
    parser.add_argument("--max-runs", type=int, default=DEFAULT_MAX_RUNS)
    parser.add_argument("--baseline-runs", type=int, default=DEFAULT_BASELINE_RUNS)
    parser.add_argument("--rules", default="old,old+seeds,bonferroni,new")
    parser.add_argument("--settings", default="single,night", help="which settings to simulate")
    parser.add_argument("--engine", type=int, default=0, metavar="NIGHTS",
                        help="also run NIGHTS nights per target through the real engine")
    args = parser.parse_args()
    settings = Settings(args.confidence, args.max_runs, args.baseline_runs)
    started = time.time()
    print(f"new rule: --confidence {settings.confidence} --max-runs {settings.max_runs} "
          f"--baseline-runs {settings.baseline_runs}\n")
    print("| setting | target | rule | decisions | false keeps (null changes) | power (effect kept) "
          "| runs per decision | confirmation runs per night | interval holds the true gain |")
    print("|---|---|---|---|---|---|---|---|---|")
    for setting in [s for s in args.settings.split(",") if s]:
        for target_name, effect in (("null", 0.0), ("effect 1 sd", 1.0), ("effect 2 sd", 2.0)):
            for rule in args.rules.split(","):
                cell = Cell()
                rng = random.Random(f"{setting}{target_name}{rule}")
                for trial in range(args.trials):
                    target = Target({"X": effect} if effect else {}, world=trial)
                    if setting == "single":
                        proposals = ["X"] if effect else ["N1"]
                    else:
                        proposals = [f"N{i}" for i in range(args.night)]
                        if effect:
                            proposals[rng.randrange(args.night)] = "X"
                    cell.add(simulate(rule, target, proposals, settings))
                print(cell.row(rule, setting, target_name), flush=True)
    if args.engine:
        import asyncio
        import tempfile

        for target_name, effect in (("null", 0.0), ("effect 1 sd", 1.0), ("effect 2 sd", 2.0)):
            cell = Cell()
            rng = random.Random(f"engine{target_name}")
            for trial in range(args.engine):
                proposals = [f"N{i}" for i in range(args.night)]
                if effect:
                    proposals[rng.randrange(args.night)] = "X"
                with tempfile.TemporaryDirectory(prefix="noise-bench-") as scratch:
                    cell.add(asyncio.run(engine_night(effect, proposals, settings, Path(scratch), world=trial)))
            print(cell.row("new", "engine night", target_name), flush=True)
    print(f"\n({time.time() - started:.0f} s; noise sd 1; single = one decision against a fresh baseline; "
          f"night = baseline + {args.night} experiments)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
