"""The morning report's figures: what a night of experiments found and what it cost.

Every figure comes from the ledger (`results.tsv`), the record of what was
decided. `events.jsonl`, when there is one, adds what the ledger has no room
for: the metric's direction, rationales, run times, tokens and spend. A
results.tsv written by karpathy/autoresearch itself (five columns, no events)
gives a report too, with the figures it cannot know shown as unknown rather
than guessed.

`build_report` reads, `report_as_dict` is what `ar-tui report --json` prints.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ar_tui.core import events as ev
from ar_tui.core.control.role_costs import role_costs
from ar_tui.core.control.view import RunView
from ar_tui.core.decisions import NoiseModel, keep_is_solid, night_summary
from ar_tui.core.direction import Direction
from ar_tui.core.errors import UserError
from ar_tui.core.records.ledger import LedgerError, LedgerRow, read_events, read_results, read_state
from ar_tui.core.records.rundir import LEDGER_FILE, RunDir
from ar_tui.headless import plateau_line
from ar_tui.lineage import lineage_nodes

FINAL_STATUSES = (ev.STATUS_KEEP, ev.STATUS_DISCARD, ev.STATUS_CRASH, ev.STATUS_VETO)

class ReportError(UserError):
    """No report can be made; the message is one line meant for the user."""


@dataclass
class KeptChange:
    exp: int
    commit: str
    description: str
    rationale: str
    metric: float
    previous: float | None  # the metric of the kept commit it was built on
    delta: float | None  # metric - previous, in the metric's units (negative is better for "min")
    cost_usd: float | None
    rule: str
    forced: bool
    diff: str
    # Its gain over its parent still holds on runs made after it was kept;
    # None: never re-measured (unconfirmed).
    solid: bool | None = None
    gpu_usd: float | None = None  # its runs' GPU time, priced; None: not priced


@dataclass
class FailedIdea:
    exp: int
    commit: str
    status: str  # discard / crash / veto
    description: str
    metric: float | None
    delta: float | None  # against the kept commit it was built on
    reason: str  # the deciding rule, when the ledger has one
    cost_usd: float | None = None  # its tokens; None in a bare original ledger
    gpu_usd: float | None = None  # its runs' GPU time, priced; None: not priced


@dataclass
class Report:
    run_dir: str
    source: str  # "ar-tui" (an events.jsonl beside the ledger) or "results.tsv" (the ledger alone)
    original_format: bool  # results.tsv has only karpathy/autoresearch's five columns
    tag: str
    agent: str
    model: str | None
    metric: str
    direction: str  # "min" or "max"
    baseline: float | None
    baseline_commit: str
    best: float | None
    best_exp: int | None
    best_commit: str
    improvement_pct: float | None
    experiments: int  # decided experiments after the baseline
    kept: int  # kept improvements, the baseline not counted
    discarded: int
    crashed: int
    vetoed: int
    wall_seconds: float | None  # time the engine was running, summed over sessions
    training_seconds: float | None  # sum of the seconds of every training run
    slots: int
    experiments_per_hour: float | None
    training_share: float | None  # training_seconds / (wall_seconds * slots), 0..1
    cost_usd: float | None
    cost_is_lower_bound: bool  # some requests used a model with no known price
    tokens: dict[str, int] | None
    cost_per_experiment: float | None
    cost_per_kept: float | None
    stopped_reason: str
    # The night's gain with its uncertainty (ar_tui.core.decisions.night_summary).
    improvement_ci_pct: list[float] | None = None
    improvement_text: str = ""
    noise_sd: float | None = None
    noise_dof: int = 0
    noise_jitter_only: bool = False
    # Spend by role and model, and proposals a reviewer rejected before training
    # (ar_tui.core.control.role_costs).
    cost_by_role: dict[str, float] = field(default_factory=dict)
    cost_by_model: dict[str, float] = field(default_factory=dict)
    rejected_before_training: int = 0
    sandbox: str = ""  # how the runs were confined, as the engine said at the start
    # The whole cost (ar_tui.core.money.gpu_cost): tokens, GPU time and their sum.
    # GPU figures are None when the run had no --gpu-usd-per-hour; the total
    # is then the tokens'.
    token_cost_usd: float | None = None
    gpu_cost_usd: float | None = None
    total_cost_usd: float | None = None
    gpu_usd_per_hour: float | None = None
    gpu_hours: float | None = None  # device-hours held by every run, priced or not
    gpu_cost_per_experiment: float | None = None
    gpu_cost_per_kept: float | None = None
    total_cost_per_experiment: float | None = None
    total_cost_per_kept: float | None = None
    budget_covers: str = "tokens"
    budget_usd: float | None = None
    # The population as a tree (ar_tui.lineage): one entry per node.
    lineage: list[dict[str, Any]] = field(default_factory=list)
    kept_changes: list[KeptChange] = field(default_factory=list)
    failed_ideas: list[FailedIdea] = field(default_factory=list)
    rows: list[LedgerRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    plateaus: list[str] = field(default_factory=list)  # each plateau the engine noticed, and what it did

    @property
    def better_word(self) -> str:
        return Direction.parse(self.direction).comparative


# ---------------------------------------------------------------- reading


@dataclass
class LedgerContents:
    metric: str
    rows: list[LedgerRow]  # complete rows, each with its experiment number
    warnings: list[str]
    original_format: bool  # karpathy/autoresearch's five columns: no costs, times or rationales


def read_ledger(path: Path) -> LedgerContents:
    """results.tsv through the engine's own reader, checked for what a report needs.

    A bare original results.tsv has no exp column: its rows are numbered in
    order, the baseline 0, as the original's analysis numbers them.
    """
    if not path.is_file():
        raise ReportError(f"{path}: no {LEDGER_FILE} here; is this a run dir?")
    if not path.read_bytes().strip():
        raise ReportError(f"{path} is empty: no experiment has finished yet")
    try:
        metric_name, rows, torn = read_results(path)
    except LedgerError as exc:
        raise ReportError(str(exc)) from None
    warnings = []
    if torn:
        warnings.append(
            f"{LEDGER_FILE} has a half-written row, left out; the report uses the {len(rows)} complete rows"
        )
    if not rows:
        raise ReportError(f"{path} has no complete rows yet: no experiment has finished")
    checked = []
    for index, row in enumerate(rows):
        where = f"{path}: row {index + 1} ({row.commit or 'no commit'})"
        status = row.status.strip().lower()
        if status not in FINAL_STATUSES:
            raise ReportError(f"{where}: unknown status {row.status!r} (expected keep, discard, crash or veto)")
        metric = row.metric if row.metric is not None and math.isfinite(row.metric) else None
        if status in (ev.STATUS_KEEP, ev.STATUS_DISCARD) and metric is None:
            raise ReportError(f"{where}: a {status} row with no number in the {metric_name} column")
        # The original writes 0.000000 for a run that produced no metric.
        if status in (ev.STATUS_CRASH, ev.STATUS_VETO) and metric == 0.0:
            metric = None
        checked.append(
            dataclasses.replace(row, status=status, metric=metric, exp=row.exp if row.exp is not None else index)
        )
    original_format = all(row.exp is None for row in rows)
    return LedgerContents(metric_name, checked, warnings, original_format)


# ---------------------------------------------------------------- figures


@dataclass
class _Timing:
    wall_seconds: float | None = None
    training_seconds: float | None = None
    slots: int = 1


def _timing(events: list[ev.Event]) -> _Timing:
    """Wall time is summed over sessions (each RunStarted opens one), so the
    hours a stopped run sat waiting to be resumed do not count as work."""
    if not events:
        return _Timing()
    sessions: list[list[float]] = [[]]
    for event in events:
        if isinstance(event, ev.RunStarted) and sessions[-1]:
            sessions.append([])
        sessions[-1].append(event.ts)
    return _Timing(
        # An event's time is taken when it is made, which is not always the
        # order it is written in: take each session's extremes.
        wall_seconds=sum(max(times) - min(times) for times in sessions),
        training_seconds=sum(e.seconds for e in events if isinstance(e, ev.ExperimentFinished)),
        slots=max([1, *(len(e.slots) for e in events if isinstance(e, ev.RunStarted))]),
    )


def _read_diff(run_dir: Path, exp: int, view: RunView) -> str:
    path = RunDir(run_dir).diff(exp)
    if path.is_file():
        return path.read_text(encoding="utf-8", errors="replace")
    proposal = view.proposals.get(exp)
    return proposal.diff if proposal else ""


def build_report(run_dir: Path) -> Report:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: no such run dir")
    ledger = read_ledger(RunDir(run_dir).ledger)
    metric_name, rows, warnings = ledger.metric, ledger.rows, ledger.warnings
    events = list(read_events(RunDir(run_dir).events))

    view = RunView(metric_name=metric_name)
    for event in events:
        view.apply(event)
    direction = view.direction if view.direction in {d.value for d in Direction} else Direction.MIN.value

    baseline_row = next((r for r in rows if r.status == ev.STATUS_KEEP and r.metric is not None), None)
    experiments = [r for r in rows if r is not baseline_row]

    # Walk the ledger in decision order: each row was tried on top of the last
    # kept commit, so its delta is against that commit's metric.
    tip = baseline_row.metric if baseline_row else None
    best_row = baseline_row
    kept_changes: list[KeptChange] = []
    failed: list[FailedIdea] = []
    for row in experiments:
        delta = row.metric - tip if row.metric is not None and tip is not None else None
        proposal = view.proposals.get(row.exp)
        if row.status == ev.STATUS_KEEP:
            kept_changes.append(
                KeptChange(
                    exp=row.exp,
                    commit=row.commit,
                    description=row.description,
                    rationale=proposal.rationale if proposal and proposal.rationale else row.rationale,
                    metric=row.metric,
                    previous=tip,
                    delta=delta,
                    cost_usd=None if ledger.original_format else row.cost_usd,
                    rule=row.rule,
                    forced=row.forced,
                    diff=_read_diff(run_dir, row.exp, view),
                    gpu_usd=row.gpu_usd,
                )
            )
            tip = row.metric
            if best_row is None or Direction.parse(direction).better(row.metric, best_row.metric):
                best_row = row
        else:
            failed.append(
                FailedIdea(
                    exp=row.exp,
                    commit=row.commit,
                    status=row.status,
                    description=row.description,
                    metric=row.metric,
                    delta=delta,
                    reason=row.rule,
                    cost_usd=None if ledger.original_format else row.cost_usd,
                    gpu_usd=row.gpu_usd,
                )
            )

    count = {status: sum(1 for r in experiments if r.status == status) for status in FINAL_STATUSES}
    # RunView owns the improvement formula; hand it the ledger's two numbers.
    improvement_pct = RunView(
        direction=direction,
        baseline=baseline_row.metric if baseline_row else None,
        best=best_row.metric if best_row else None,
    ).improvement_pct

    timing = _timing(events)
    if timing.training_seconds is None and not ledger.original_format:
        timing.training_seconds = sum(r.seconds for r in rows)
    experiments_per_hour = training_share = None
    if timing.wall_seconds:
        experiments_per_hour = len(experiments) / (timing.wall_seconds / 3600)
        if timing.training_seconds is not None:
            training_share = timing.training_seconds / (timing.wall_seconds * timing.slots)

    spend_known = any(isinstance(e, (ev.Usage, ev.RunStopped)) for e in events)
    cost: float | None
    if spend_known:
        cost = view.cost_usd
    elif not ledger.original_format:
        # Only the ledger's per-experiment costs: proposals that failed before
        # becoming an experiment are missing, so this is a lower bound.
        cost = sum(r.cost_usd for r in rows)
        warnings.append("no spend events: total cost is the sum of results.tsv's cost_usd column")
    else:
        cost = None
    tokens = None
    if any(isinstance(e, ev.Usage) for e in events):
        tokens = {
            "input": view.input_tokens,
            "output": view.output_tokens,
            "cache_write": view.cache_write_tokens,
            "cache_read": view.cache_read_tokens,
        }

    noise_figures: dict[str, Any] = {}
    state = read_state(run_dir) or {}
    if "noise" in state and baseline_row is not None and best_row is not None:
        noise = NoiseModel.from_dict(state["noise"])
        noise_figures = night_summary(noise, baseline_row.commit, best_row.commit, direction)
        commit_of = {r.exp: r.commit for r in rows}
        previous = baseline_row.commit
        for change in kept_changes:
            row = next(r for r in rows if r.exp == change.exp)
            parent = commit_of.get(row.parent, previous) if row.parent is not None else previous
            change.solid = keep_is_solid(noise, change.commit, parent, direction)
            previous = change.commit
    spend = role_costs(events).as_dict()
    gpu = _gpu_figures(view, rows, events, warnings)
    total = None if cost is None else cost + (gpu["gpu_cost_usd"] or 0.0)
    if gpu["gpu_cost_usd"] is not None and cost is None:
        total = gpu["gpu_cost_usd"]

    def per(usd: float | None, count: int) -> float | None:
        return usd / count if usd is not None and count else None

    stopped = view.stopped
    return Report(
        run_dir=str(run_dir),
        source="ar-tui" if events else "results.tsv",
        original_format=ledger.original_format,
        tag=view.tag or run_dir.resolve().name,
        agent=view.agent,
        model=view.model,
        metric=metric_name,
        direction=direction,
        baseline=baseline_row.metric if baseline_row else None,
        baseline_commit=baseline_row.commit if baseline_row else "",
        best=best_row.metric if best_row else None,
        best_exp=best_row.exp if best_row else None,
        best_commit=best_row.commit if best_row else "",
        improvement_pct=improvement_pct,
        experiments=len(experiments),
        kept=len(kept_changes),
        discarded=count[ev.STATUS_DISCARD],
        crashed=count[ev.STATUS_CRASH],
        vetoed=count[ev.STATUS_VETO],
        wall_seconds=timing.wall_seconds,
        training_seconds=timing.training_seconds,
        slots=timing.slots,
        experiments_per_hour=experiments_per_hour,
        training_share=training_share,
        cost_usd=cost,
        cost_is_lower_bound=view.unknown_price,
        tokens=tokens,
        cost_per_experiment=cost / len(experiments) if cost is not None and experiments else None,
        cost_per_kept=cost / len(kept_changes) if cost is not None and kept_changes else None,
        stopped_reason=stopped.reason if stopped else "",
        improvement_ci_pct=noise_figures.get("improvement_ci_pct"),
        improvement_text=noise_figures.get("improvement_text", ""),
        noise_sd=noise_figures.get("noise_sd"),
        noise_dof=noise_figures.get("noise_dof", 0),
        noise_jitter_only=bool(noise_figures.get("noise_jitter_only", False)),
        cost_by_role=spend["cost_by_role"],
        cost_by_model=spend["cost_by_model"],
        rejected_before_training=spend["rejected_before_training"],
        sandbox=view.sandbox,
        token_cost_usd=cost,
        gpu_cost_usd=gpu["gpu_cost_usd"],
        total_cost_usd=total,
        gpu_usd_per_hour=gpu["gpu_usd_per_hour"],
        gpu_hours=gpu["gpu_hours"],
        gpu_cost_per_experiment=per(gpu["gpu_cost_usd"], len(experiments)),
        gpu_cost_per_kept=per(gpu["gpu_cost_usd"], len(kept_changes)),
        total_cost_per_experiment=per(total, len(experiments)),
        total_cost_per_kept=per(total, len(kept_changes)),
        budget_covers=view.budget_covers,
        budget_usd=view.budget_usd,
        lineage=_lineage(view, rows, best_row.exp if best_row else None),
        kept_changes=kept_changes,
        failed_ideas=failed,
        rows=rows,
        warnings=warnings,
        plateaus=[plateau_line(e) for e in events if isinstance(e, ev.Plateau)],
    )


def _gpu_figures(view: RunView, rows: list[LedgerRow], events: list[ev.Event],
                 warnings: list[str]) -> dict[str, Any]:
    """The night's GPU time and its price: the engine's totals from the
    events; with no events, the sum of the ledger's gpu_usd column."""
    figures: dict[str, Any] = {"gpu_cost_usd": None, "gpu_usd_per_hour": view.gpu_usd_per_hour, "gpu_hours": None}
    if any(isinstance(e, ev.ExperimentFinished) for e in events):
        figures["gpu_hours"] = view.gpu_seconds / 3600
    if view.gpu_priced:
        figures["gpu_cost_usd"] = view.gpu_cost_usd
    elif not events and any(r.gpu_usd is not None for r in rows):
        figures["gpu_cost_usd"] = sum(r.gpu_usd or 0.0 for r in rows)
        warnings.append("no events: GPU cost is the sum of results.tsv's gpu_usd column")
    return figures


def _lineage(view: RunView, rows: list[LedgerRow], best_exp: int | None) -> list[dict[str, Any]]:
    """The population as a tree, from what RunView knows (a ledger alone
    gives its parent column)."""
    known = view.rows
    if not known:
        known, last_kept = [], None
        for r in rows:
            # A ledger without parents (the original's, or an older ar-tui's):
            # each experiment was built on the last kept one, as greedy does.
            parent = r.parent if r.parent is not None or r.exp == 0 else last_kept
            known.append(ev.Decision(exp=r.exp, status=r.status, rule=r.rule, metric=r.metric, best_before=None,
                                     best_after=None, commit=r.commit, description=r.description, forced=r.forced,
                                     cost_usd=r.cost_usd, parent_exp=parent, gpu_usd=r.gpu_usd))
            if r.status == ev.STATUS_KEEP:
                last_kept = r.exp
    return [dataclasses.asdict(node) for node in lineage_nodes(known, best_exp)]


def report_as_dict(report: Report) -> dict[str, Any]:
    """The figures as plain JSON types, for `ar-tui report --json`."""
    figures = dataclasses.asdict(report)
    if report.original_format:
        # The reader fills the columns such a file lacks with zeros; unknown is not zero.
        original = {"exp", "commit", "metric", "memory_gb", "status", "description"}
        figures["rows"] = [{k: v for k, v in row.items() if k in original} for row in figures["rows"]]
    return figures
