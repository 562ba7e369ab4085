"""The morning report: what a night of experiments found, what it cost, and the chart.

Every figure comes from the ledger (`results.tsv`), the record of what was
decided. `events.jsonl`, when there is one, adds what the ledger has no room
for: the metric's direction, rationales, run times, tokens and spend. A
results.tsv written by karpathy/autoresearch itself (five columns, no events)
gives a report too, with the figures it cannot know shown as unknown rather
than guessed.

`build_report` reads, `write_report` writes `progress.png` and `report.md`
into the run dir, `report_as_dict` is what `ar-tui report --json` prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ar_tui.core import events as ev
from ar_tui.core.control import RunView
from ar_tui.core.ledger import LedgerError, LedgerRow, read_events, read_results

LEDGER_NAME = "results.tsv"
EVENTS_NAME = "events.jsonl"
DIFFS_DIR = "diffs"
CHART_NAME = "progress.png"
REPORT_NAME = "report.md"

CHART_SIZE_IN = (14.0, 7.0)
CHART_DPI = 100  # 14 x 7 in at 100 dpi: a 1400 x 700 px PNG

FINAL_STATUSES = (ev.STATUS_KEEP, ev.STATUS_DISCARD, ev.STATUS_CRASH, ev.STATUS_VETO)
# A report.md that inlines every diff of a long night would be unreadable; the
# full diffs stay in diffs/<exp>.diff.
MAX_DIFF_LINES = 120
MAX_FAILED_IDEAS_SHOWN = 30
MAX_LABEL_CHARS = 45
MAX_CHART_LABELS = 25


class ReportError(Exception):
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


@dataclass
class FailedIdea:
    exp: int
    commit: str
    status: str  # discard / crash / veto
    description: str
    metric: float | None
    delta: float | None  # against the kept commit it was built on
    reason: str  # the deciding rule, when the ledger has one


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
    kept_changes: list[KeptChange] = field(default_factory=list)
    failed_ideas: list[FailedIdea] = field(default_factory=list)
    rows: list[LedgerRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def better_word(self) -> str:
        return "lower" if self.direction == "min" else "higher"


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
        raise ReportError(f"{path}: no {LEDGER_NAME} here; is this a run dir?")
    if not path.read_bytes().strip():
        raise ReportError(f"{path} is empty: no experiment has finished yet")
    try:
        metric_name, rows, torn = read_results(path)
    except LedgerError as exc:
        raise ReportError(str(exc)) from None
    warnings = []
    if torn:
        warnings.append(
            f"{LEDGER_NAME} has a half-written row, left out; the report uses the {len(rows)} complete rows"
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


def _better(a: float, b: float, direction: str) -> bool:
    return a < b if direction == "min" else a > b


def _read_diff(run_dir: Path, exp: int, view: RunView) -> str:
    path = run_dir / DIFFS_DIR / f"{exp}.diff"
    if path.is_file():
        return path.read_text(encoding="utf-8", errors="replace")
    proposal = view.proposals.get(exp)
    return proposal.diff if proposal else ""


def build_report(run_dir: Path) -> Report:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: no such run dir")
    ledger = read_ledger(run_dir / LEDGER_NAME)
    metric_name, rows, warnings = ledger.metric, ledger.rows, ledger.warnings
    events = list(read_events(run_dir / EVENTS_NAME))

    view = RunView(metric_name=metric_name)
    for event in events:
        view.apply(event)
    direction = view.direction if view.direction in ("min", "max") else "min"

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
                )
            )
            tip = row.metric
            if best_row is None or _better(row.metric, best_row.metric, direction):
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
        kept_changes=kept_changes,
        failed_ideas=failed,
        rows=rows,
        warnings=warnings,
    )


def report_as_dict(report: Report) -> dict[str, Any]:
    """The figures as plain JSON types, for `ar-tui report --json`."""
    figures = dataclasses.asdict(report)
    if report.original_format:
        # The reader fills the columns such a file lacks with zeros; unknown is not zero.
        original = {"exp", "commit", "metric", "memory_gb", "status", "description"}
        figures["rows"] = [{k: v for k, v in row.items() if k in original} for row in figures["rows"]]
    return figures


# ---------------------------------------------------------------- report.md


def fmt_metric(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6f}"


def fmt_delta(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.6f}"


def fmt_usd(value: float | None) -> str:
    return "n/a" if value is None else f"${value:.4f}"


def fmt_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}%"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    minutes = int(round(seconds / 60))
    return f"{minutes // 60}h {minutes % 60:02d}m"


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks inside the text."""
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def summary_table(report: Report) -> list[tuple[str, str]]:
    """The summary figures as (label, value) pairs, formatted as report.md shows them."""
    what = f"{report.metric} ({report.better_word} is better)"
    best = fmt_metric(report.best)
    if report.best_exp is not None:
        best += f" (exp {report.best_exp}, {report.best_commit})"
    if report.wall_seconds is None:
        pace = share = "n/a (no events.jsonl)"
    else:
        pace = "n/a" if report.experiments_per_hour is None else f"{report.experiments_per_hour:.1f}"
        share = "n/a" if report.training_share is None else f"{100 * report.training_share:.1f}%"
        if report.training_seconds is not None:
            share += f" ({fmt_duration(report.training_seconds)} training in {fmt_duration(report.wall_seconds)}"
            share += f" on {report.slots} slots)" if report.slots > 1 else ")"
    if report.cost_usd is None:
        cost = "n/a (no cost recorded)"
    else:
        cost = fmt_usd(report.cost_usd) + (" (at least; a model had no known price)" if report.cost_is_lower_bound else "")
    tokens = "n/a"
    if report.tokens is not None:
        tokens = ", ".join(f"{kind.replace('_', ' ')} {count:,}" for kind, count in report.tokens.items())
    return [
        ("Metric", what),
        ("Baseline", fmt_metric(report.baseline)),
        ("Best", best),
        ("Improvement", fmt_pct(report.improvement_pct)),
        ("Experiments run", f"{report.experiments} (after the baseline)"),
        ("Kept", str(report.kept)),
        ("Discarded", str(report.discarded)),
        ("Crashed", str(report.crashed)),
        ("Vetoed", str(report.vetoed)),
        ("Wall time", fmt_duration(report.wall_seconds)),
        ("Experiments per hour", pace),
        ("Share of wall time training", share),
        ("Total cost", cost),
        ("Tokens", tokens),
        ("Cost per experiment", fmt_usd(report.cost_per_experiment)),
        ("Cost per kept improvement", fmt_usd(report.cost_per_kept)),
    ]


def render_markdown(
    report: Report, narrative: str | None = None, *, chart: bool = True, max_diff_lines: int = MAX_DIFF_LINES
) -> str:
    out: list[str] = [f"# Morning report: {report.tag}", ""]
    who = report.agent + (f" ({report.model})" if report.model else "")
    source = "ar-tui run" if report.source == "ar-tui" else "results.tsv only (no events.jsonl)"
    out.append(f"Run dir `{report.run_dir}` · {source}" + (f" · agent {who}" if who else ""))
    if report.stopped_reason:
        out.append(f"Stopped: {_one_line(report.stopped_reason)}")
    out.append("")
    for warning in report.warnings:
        out.append(f"> Note: {warning}")
    if report.warnings:
        out.append("")
    if narrative:
        out += [
            "## What happened",
            "",
            "_Written by the model from the figures below; the figures themselves come from the ledger._",
            "",
            narrative.strip(),
            "",
        ]
    if chart:
        out += [f"![progress]({CHART_NAME})", ""]
    out += ["## Figures", "", "| | |", "|---|---|"]
    out += [f"| {label} | {value} |" for label, value in summary_table(report)]
    out.append("")

    out += ["## Kept changes", ""]
    if not report.kept_changes:
        out += ["Nothing beat the baseline.", ""]
    for number, change in enumerate(report.kept_changes, 1):
        out.append(f"### {number}. exp {change.exp} · `{change.commit}` · {_one_line(change.description)}")
        out.append("")
        out.append(
            f"- {report.metric} {fmt_metric(change.metric)}, {fmt_delta(change.delta)} "
            f"from {fmt_metric(change.previous)}"
        )
        if change.cost_usd is not None:
            out.append(f"- cost {fmt_usd(change.cost_usd)}")
        if change.rule or change.forced:
            out.append(f"- kept by: {_one_line(change.rule) or 'a person'}" + (" (forced)" if change.forced else ""))
        out.append("")
        if change.rationale:
            out += [f"Rationale: {change.rationale.strip()}", ""]
        if change.diff:
            lines = change.diff.rstrip("\n").split("\n")
            shown = "\n".join(lines[:max_diff_lines])
            fence = _fence(shown)
            out += [f"{fence}diff", shown, fence]
            if len(lines) > max_diff_lines:
                out.append(f"({len(lines) - max_diff_lines} more lines in {DIFFS_DIR}/{change.exp}.diff)")
            out.append("")

    out += ["## Ideas that failed", ""]
    if not report.failed_ideas:
        out += ["None.", ""]
    else:
        # A bare original ledger records no reasons: leave out an empty column.
        reasons = any(idea.reason for idea in report.failed_ideas)
        header = ["exp", "status", report.metric, "delta", "description"] + (["why"] if reasons else [])
        out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for idea in report.failed_ideas[:MAX_FAILED_IDEAS_SHOWN]:
            cells = [str(idea.exp), idea.status, fmt_metric(idea.metric), fmt_delta(idea.delta), _one_line(idea.description)]
            if reasons:
                cells.append(_one_line(idea.reason))
            out.append("| " + " | ".join(cells) + " |")
        hidden = len(report.failed_ideas) - MAX_FAILED_IDEAS_SHOWN
        if hidden > 0:
            out.append(f"\n…and {hidden} more in {LEDGER_NAME}.")
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------- progress.png

KEPT_COLOUR = "#2ecc71"
BEST_LINE_COLOUR = "#27ae60"
LABEL_COLOUR = "#1a7a3a"
DISCARD_COLOUR = "#bbbbbb"
CRASH_COLOUR = "#e74c3c"
VETO_COLOUR = "#e67e22"


def chart_labels(report: Report) -> dict[int, str]:
    """The kept experiments labelled on the chart, by experiment number.

    A night with dozens of keeps would bury the chart in text: the baseline and
    the changes that gained the most are labelled, the rest are dots."""
    sign = -1.0 if report.direction == "min" else 1.0
    by_gain = sorted(report.kept_changes, key=lambda c: sign * (c.delta or 0.0), reverse=True)
    baseline = [r for r in report.rows if r.status == ev.STATUS_KEEP][:1]
    labels = {}
    for item in [*baseline, *by_gain[: MAX_CHART_LABELS - 1]]:
        text = item.description.strip() or item.commit
        labels[item.exp] = text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "…"
    return labels


def render_chart(report: Report) -> bytes:
    """The original project's progress chart, as PNG bytes."""
    # Imported here so that commands that never draw (status, attach) start fast;
    # Figure without pyplot needs no display and keeps no global state.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=CHART_SIZE_IN, dpi=CHART_DPI)
    ax = fig.add_subplot()
    rows = report.rows
    kept = [r for r in rows if r.status == ev.STATUS_KEEP and r.metric is not None]
    scored = [r for r in rows if r.metric is not None]

    # Zoom on the interesting band, as the original does: from the best kept
    # value to a little worse than the worst kept one (usually the baseline).
    # Ideas far worse than that are pinned to the edge rather than squashing it.
    reference = [r.metric for r in kept] or [r.metric for r in scored]
    if reference:
        low, high = min(reference), max(reference)
        span = (high - low) or max(abs(high) * 0.01, 1e-6)
        low_limit, high_limit = low - 0.15 * span, high + 0.15 * span
        if report.direction == "min":
            high_limit = high + 0.6 * span
        else:
            low_limit = low - 0.6 * span
    else:
        low_limit, high_limit = 0.0, 1.0
    ax.set_ylim(low_limit, high_limit)

    # Crashes, vetoes without a metric and ideas off the scale are drawn at a
    # fixed height in axes coordinates, so they stay in view whatever the zoom.
    edge = ax.get_xaxis_transform()
    discarded = [r for r in scored if r.status != ev.STATUS_KEEP]
    inside = [r for r in discarded if low_limit <= r.metric <= high_limit]
    outside = [r for r in discarded if not low_limit <= r.metric <= high_limit]
    if inside:
        ax.scatter([r.exp for r in inside], [r.metric for r in inside], c=DISCARD_COLOUR, s=18, zorder=2, label="Discarded")
    if outside:
        worse_is_up = report.direction == "min"
        ax.scatter(
            [r.exp for r in outside],
            [0.985 if worse_is_up else 0.015] * len(outside),
            transform=edge,
            c=DISCARD_COLOUR,
            marker="^" if worse_is_up else "v",
            s=30,
            zorder=2,
            label="Discarded (off the scale)",
        )
    labels = chart_labels(report)
    title = f"{report.tag}: {report.experiments} experiments, {report.kept} kept improvements"
    if report.kept > MAX_CHART_LABELS - 1:
        title += f" (the {MAX_CHART_LABELS - 1} largest gains labelled)"
    if kept:
        xs, ys, best = [], [], None
        for row in kept:
            best = row.metric if best is None or _better(row.metric, best, report.direction) else best
            xs.append(row.exp)
            ys.append(best)
        last_exp = max(r.exp for r in rows)
        ax.step(xs + [last_exp], ys + [ys[-1]], where="post", color=BEST_LINE_COLOUR, linewidth=2, alpha=0.7, zorder=3, label="Best so far")
        ax.scatter(
            [r.exp for r in kept], [r.metric for r in kept], c=KEPT_COLOUR, s=60, zorder=4,
            edgecolors="black", linewidths=0.6, label="Kept",
        )
        for row in kept:
            if row.exp not in labels:
                continue
            ax.annotate(
                labels[row.exp], (row.exp, row.metric), textcoords="offset points", xytext=(6, 6),
                fontsize=8, color=LABEL_COLOUR, rotation=30, ha="left", va="bottom",
            )

    crashes = [r for r in rows if r.status == ev.STATUS_CRASH]
    if crashes:
        ax.scatter([r.exp for r in crashes], [0.95] * len(crashes), transform=edge, marker="x", c=CRASH_COLOUR, s=50, zorder=5, label="Crashed")
    vetoes = [r for r in rows if r.status == ev.STATUS_VETO and r.metric is None]
    if vetoes:
        ax.scatter([r.exp for r in vetoes], [0.91] * len(vetoes), transform=edge, marker="v", c=VETO_COLOUR, s=40, zorder=5, label="Vetoed")

    first_exp = min(r.exp for r in rows)
    last_exp = max(r.exp for r in rows)
    ax.set_xlim(first_exp - 0.5, last_exp + 0.5 + 0.08 * max(last_exp - first_exp, 1))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Experiment #")
    ax.set_ylabel(f"{report.metric} ({report.better_word} is better)")
    ax.set_title(title)
    ax.grid(True, alpha=0.2)
    ax.legend(loc="best", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=CHART_DPI)
    return buffer.getvalue()


# ---------------------------------------------------------------- writing


def _write_atomically(path: Path, data: bytes) -> None:
    # A reader (or a crash mid-write) never sees half a report, and the engine
    # writing at the end of a run and a user's `ar-tui report` cannot mix files.
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide the report from a colleague
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise ReportError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise


def write_report(run_dir: Path, narrative: str | None = None) -> list[Path]:
    """Write progress.png and report.md into the run dir; returns their paths."""
    run_dir = Path(run_dir)
    report = build_report(run_dir)
    chart = run_dir / CHART_NAME
    markdown = run_dir / REPORT_NAME
    _write_atomically(chart, render_chart(report))
    _write_atomically(markdown, render_markdown(report, narrative).encode("utf-8"))
    return [chart, markdown]
