"""Leave-one-out ablation of a night's changes, with the night's own engine.

A change kept at experiment 5 may do nothing once experiment 30's change is
in. So the final best is trained again with each change on its lineage taken
out, one at a time, with fresh seeds, and each change is judged by the
night's decision rule (`decisions.decide`, one look, the night's confidence,
min_effect and pooled noise): kept against "without it" means it still
matters; "without it" kept against it means it hurts; neither is no
measurable effect.

The runs go through the engine opened on the run dir (`Engine.session`): the
same executor, sandbox, slots, logs and GPU accounting as the night, spread
over every slot by the scheduler's measuring (`Measuring.spread`). The full best and the baseline
are run again in the same session rather than taken from the night: a
time-budgeted target trains more steps on a quieter machine, so only runs
made side by side compare fairly. For the same reason the runs are
interleaved (full, baseline, without 1, without 2 ..., then again).

Every finished run is appended to ablation.jsonl at once (flushed and
synced), and a restart reads it back: a kill -9 loses only the runs that were
training. A variant's run numbers (and so its seeds and logs) are chosen once,
in the plan line, after the night's last experiment.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ar_tui.core import events as ev
from ar_tui.core.decisions import KEEP, NoiseModel, decide
from ar_tui.core.engine.parts import Candidate, Outcome
from ar_tui.core.finalize.changes import Effect, Night, effect_between

if TYPE_CHECKING:
    from ar_tui.core.engine.facade import Engine

FULL, BASELINE = "full", "baseline"
MATTERS, NULL, HURTS, NEEDED = "still matters", "no measurable effect", "hurts", "needed by a later change"
DEFAULT_REPEATS = 4


@dataclass
class Variant:
    name: str  # "full", "baseline", or "without <exp>"
    exp: int  # the run number its runs are logged and seeded under
    left_out: int | None = None  # the experiment whose change it leaves out
    commit: str | None = None  # None: it could not be built
    runs: list[float] = field(default_factory=list)
    seeds: list[int | None] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # why runs failed
    attempts: int = 0


@dataclass
class Verdict:
    exp: int
    description: str
    mark: str  # MATTERS / NULL / HURTS / NEEDED
    effect: Effect | None  # the gain of having it, on top of all the others
    rule: str

    def text(self, metric: str, confidence: float) -> str:
        if self.effect is None:
            return f"{self.mark} ({self.rule})"
        return f"{self.mark}: {self.effect.text(metric, confidence)} on top of the others"


class AblationLog:
    """ablation.jsonl: the plan, then one line per finished run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> tuple[dict | None, list[dict]]:
        plan, runs = None, []
        if not self.path.is_file():
            return plan, runs
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line torn by a kill -9
            if record.get("kind") == "plan":
                plan = record
            elif record.get("kind") == "run":
                runs.append(record)
        return plan, runs

    def append(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def _ensure_newline(path: Path) -> None:
    """A torn last line (a kill -9 mid-write) must not swallow the next record."""
    if path.is_file() and path.stat().st_size:
        with open(path, "rb+") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                handle.write(b"\n")


@dataclass
class AblationResult:
    verdicts: list[Verdict]
    together: Effect | None  # all the changes at once: the full best against the base, side by side
    variants: list[Variant]
    confidence: float

    def write_table(self, path: Path) -> None:
        """ablation.tsv: one row per change, its mark and leave-one-out effect."""
        lines = ["exp\tmark\teffect\tlow\thigh\truns_with\truns_without\tdescription\trule"]
        for v in self.verdicts:
            e = v.effect
            cells = [str(v.exp), v.mark, _num(e.gain if e else None), _num(e.low if e else None),
                     _num(e.high if e else None), str(e.runs if e else 0), str(e.reference_runs if e else 0),
                     " ".join(v.description.split()), " ".join(v.rule.split())]
            lines.append("\t".join(cells))
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


async def run_ablation(engine: "Engine", night: Night, repeats: int = DEFAULT_REPEATS) -> AblationResult:
    """Run what is missing of the ablation on the opened `engine` (in its
    `session()`); the verdicts."""
    run, scheduler = engine.opened, engine.scheduler
    assert run is not None and scheduler is not None
    log = AblationLog(night.run_dir.ablation_log)
    _ensure_newline(log.path)
    plan, done = log.read()
    variants = _plan(engine, night, plan, log)
    by_name = {v.name: v for v in variants}
    for record in done:
        variant = by_name.get(record["variant"])
        if variant is None:
            continue
        variant.attempts = max(variant.attempts, int(record.get("attempt", 0)))
        if record.get("metric") is not None:
            variant.runs.append(float(record["metric"]))
            variant.seeds.append(record.get("seed"))
        else:
            variant.failed.append(record.get("message", "failed"))
    await asyncio.to_thread(_build, night, variants)
    jobs: list[Candidate] = []
    cands = {v.name: Candidate(exp=v.exp, description=_describe(v, night), rationale="", diff="",
                               base_commit=v.commit or "", commit=v.commit, parent=v.commit, attempt=v.attempts,
                               stop=asyncio.Event()) for v in variants if v.commit is not None}
    for round_ in range(repeats):
        for variant in variants:
            if variant.commit is not None and not variant.failed and len(variant.runs) <= round_ < repeats:
                jobs.append(cands[variant.name])
    if jobs:
        engine.emit(run.started())
        engine.emit(ev.Notice(level="info", message=f"ablation: {len(jobs)} run(s) of {len(cands)} variant(s) "
                                                    f"over {len(run.slots)} slot(s)"))

        async def record(cand: Candidate, outcome: Outcome) -> bool:
            variant = next(v for v in variants if v.exp == cand.exp)
            entry = {"kind": "run", "variant": variant.name, "attempt": cand.attempt, "seed": outcome.seed,
                     "metric": outcome.metric if outcome.outcome == ev.OUTCOME_OK else None,
                     "outcome": outcome.outcome, "seconds": outcome.seconds, "message": outcome.message}
            if outcome.outcome == ev.OUTCOME_INTERRUPTED:
                return False
            log.append(entry)
            if entry["metric"] is not None:
                variant.runs.append(float(entry["metric"]))
                variant.seeds.append(outcome.seed)
            else:
                variant.failed.append(outcome.message or outcome.outcome)
            scheduler.recorder.save_state()
            return True  # a variant that fails is a finding, not a reason to stop the others

        await scheduler.measuring.spread(jobs, record)
        scheduler.recorder.save_state()
        _close_session(engine)
    confidence = scheduler.judge.judging.confidence
    return AblationResult(judge(engine, night, variants), together(night, variants, confidence), variants, confidence)


def _close_session(engine: "Engine") -> None:
    """The ablation's session ends as the night did (a viewer, the report's
    stop reason), with the GPU time now including the ablation's runs."""
    import dataclasses
    import time

    from ar_tui.core.records.ledger import read_events

    stopped = [e for e in read_events(engine.run_dir.events) if isinstance(e, ev.RunStopped)]
    if not stopped or engine.opened is None:
        return
    accounting = engine.opened.accounting
    engine.emit(dataclasses.replace(stopped[-1], ts=time.time(), gpu_seconds=accounting.gpu_seconds,
                                    gpu_cost_usd=accounting.gpu_usd if accounting.pricing.priced else None))


def _describe(variant: Variant, night: Night) -> str:
    if variant.left_out is None:
        return f"ablation: {variant.name}"
    change = next(c for c in night.changes if c.exp == variant.left_out)
    return f"ablation: without exp {variant.left_out} ({change.description})"


def _plan(engine: "Engine", night: Night, plan: dict | None, log: AblationLog) -> list[Variant]:
    wanted = [FULL, BASELINE] + [f"without {c.exp}" for c in night.changes]
    if plan is not None and plan.get("best") == night.best_commit and \
            [v["name"] for v in plan["variants"]] == wanted:
        return [Variant(v["name"], int(v["exp"]), v.get("left_out")) for v in plan["variants"]]
    assert engine.opened is not None and engine.scheduler is not None
    state = engine.opened.state
    first = state.next_exp
    variants = [Variant(FULL, first), Variant(BASELINE, first + 1)]
    variants += [Variant(f"without {c.exp}", first + 2 + i, c.exp) for i, c in enumerate(night.changes)]
    # The night's numbering moves past them: a resumed night never reuses their seeds or logs.
    state.next_exp = first + len(variants)
    engine.scheduler.recorder.save_state()
    log.append({"kind": "plan", "best": night.best_commit,
                "variants": [{"name": v.name, "exp": v.exp, "left_out": v.left_out} for v in variants]})
    return variants


def _build(night: Night, variants: list[Variant]) -> None:
    """The code of each variant, as a commit: the best, the base, and the
    base with every change but one replayed on it (None when a later change
    does not apply without it)."""
    git = night.git
    worktree = night.run_dir.worktrees / "ablation"
    for variant in variants:
        if variant.name == FULL:
            variant.commit = night.best_commit
            continue
        if variant.name == BASELINE:
            variant.commit = night.base_commit
            continue
        git.ensure_worktree(worktree, night.base_commit)
        for change in night.changes:
            if change.exp == variant.left_out:
                continue
            if git.apply_3way(worktree, change.diff) is not None:
                variant.commit = None
                variant.failed.append(f"exp {change.exp}'s change does not apply without exp {variant.left_out}'s")
                break
        else:
            variant.commit = git.commit(worktree, f"ablation: the best without exp {variant.left_out}")
    git.remove_worktree(worktree)


def judge(engine: "Engine", night: Night, variants: list[Variant]) -> list[Verdict]:
    """Each change's mark by the night's rule, on the night's noise pooled
    with the ablation's own repeats."""
    assert engine.scheduler is not None
    judging = engine.scheduler.judge.judging
    noise = NoiseModel.from_dict(night.noise.to_dict())
    for variant in variants:
        for metric, seed in zip(variant.runs, variant.seeds):
            noise.add(f"ablation:{variant.name}", metric, seed)
    full = next(v for v in variants if v.name == FULL)
    verdicts: list[Verdict] = []
    for change in night.changes:
        variant = next(v for v in variants if v.left_out == change.exp)
        if variant.commit is None:
            verdicts.append(Verdict(change.exp, change.description, NEEDED, None, variant.failed[0]))
            continue
        if not variant.runs or not full.runs:
            why = variant.failed[0] if variant.failed else "not run yet"
            mark = MATTERS if variant.failed and full.runs else NULL
            verdicts.append(Verdict(change.exp, change.description, mark, None,
                                    f"training without it failed: {why}" if variant.failed else why))
            continue
        effect = effect_between(full.runs, variant.runs, noise, night.direction, judging.confidence)
        common = dict(noise=noise, direction=night.direction, confidence=judging.confidence, max_runs=1,
                      min_effect=judging.min_effect, metric_name=night.metric, max_best_runs=0)
        with_it = decide(full.runs, variant.runs, **common)
        if with_it.action == KEEP:
            mark, rule = MATTERS, with_it.rule
        else:
            without_it = decide(variant.runs, full.runs, **common)
            mark, rule = (HURTS, without_it.rule) if without_it.action == KEEP else (NULL, with_it.rule)
        verdicts.append(Verdict(change.exp, change.description, mark, effect, rule))
    return verdicts


def together(night: Night, variants: list[Variant], confidence: float) -> Effect | None:
    """All the changes together: the full best against the base, run side by side."""
    full = next((v for v in variants if v.name == FULL), None)
    base = next((v for v in variants if v.name == BASELINE), None)
    if full is None or base is None:
        return None
    noise = NoiseModel.from_dict(night.noise.to_dict())
    for variant in variants:
        for metric in variant.runs:
            noise.add(f"ablation:{variant.name}", metric)
    return effect_between(full.runs, base.runs, noise, night.direction, confidence)
