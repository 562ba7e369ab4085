"""progress.png: every experiment a dot, the best so far a step line, the
baseline marked, outliers clipped to the edge and marked, x the experiment
number; the picture the original project's users share."""

from __future__ import annotations

import io

from ar_tui.core import events as ev
from ar_tui.core.direction import Direction
from ar_tui.report.build import Report

CHART_SIZE_IN = (14.0, 7.0)
CHART_DPI = 100  # 14 x 7 in at 100 dpi: a 1400 x 700 px PNG
MAX_LABEL_CHARS = 45
MAX_CHART_LABELS = 25

KEPT_COLOUR = "#2ecc71"
BEST_LINE_COLOUR = "#27ae60"
LABEL_COLOUR = "#1a7a3a"
DISCARD_COLOUR = "#bbbbbb"
CRASH_COLOUR = "#e74c3c"
VETO_COLOUR = "#e67e22"
BASELINE_COLOUR = "#2c3e50"
# The band above the best kept value and below the worst (usually the
# baseline), as fractions of the kept values' span; the worse side is wider,
# so that the ideas that failed narrowly are in view.
MARGIN_BETTER = 0.15
MARGIN_WORSE = 0.6


def y_range(report: Report) -> tuple[float, float]:
    """The y-axis limits: zoomed on the kept values (the best so far runs
    through all of them), as the original project's chart does, so that one
    diverged run cannot squash the night's progress into a flat line. Values
    outside are drawn on the edge and marked, never stretch the axis."""
    kept = [r.metric for r in report.rows if r.status == ev.STATUS_KEEP and r.metric is not None]
    reference = kept or [r.metric for r in report.rows if r.metric is not None]
    if not reference:
        return 0.0, 1.0
    low, high = min(reference), max(reference)
    span = (high - low) or max(abs(high) * 0.01, 1e-6)
    if Direction.parse(report.direction).lower_is_better:
        return low - MARGIN_BETTER * span, high + MARGIN_WORSE * span
    return low - MARGIN_WORSE * span, high + MARGIN_BETTER * span


def chart_labels(report: Report) -> dict[int, str]:
    """The kept experiments labelled on the chart, by experiment number.

    A night with dozens of keeps would bury the chart in text: the baseline and
    the changes that gained the most are labelled, the rest are dots."""
    direction = Direction.parse(report.direction)
    by_gain = sorted(report.kept_changes, key=lambda c: direction.improvement(c.delta or 0.0, 0.0), reverse=True)
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

    low_limit, high_limit = y_range(report)
    ax.set_ylim(low_limit, high_limit)

    # Crashes, vetoes without a metric and ideas off the scale are drawn at a
    # fixed height in axes coordinates, so they stay in view whatever the zoom.
    edge = ax.get_xaxis_transform()
    discarded = [r for r in scored if r.status != ev.STATUS_KEEP]
    inside = [r for r in discarded if low_limit <= r.metric <= high_limit]
    outside = [r for r in discarded if not low_limit <= r.metric <= high_limit]
    if inside:
        ax.scatter([r.exp for r in inside], [r.metric for r in inside], c=DISCARD_COLOUR, s=18, zorder=2, label="Discarded")
    # Off the scale: pinned to the edge they lie beyond, pointing that way,
    # with the value they measured.
    for beyond, height, marker, side, offset in ((lambda m: m > high_limit, 0.985, "^", "above", -10),
                                                 (lambda m: m < low_limit, 0.015, "v", "below", 4)):
        clipped = [r for r in outside if beyond(r.metric)]
        if clipped:
            ax.scatter([r.exp for r in clipped], [height] * len(clipped), transform=edge, c=DISCARD_COLOUR,
                       marker=marker, s=30, zorder=2, label=f"Discarded ({side} the range)")
        for row in clipped:
            ax.annotate(f"{row.metric:.4g}", (row.exp, height), xycoords=edge, textcoords="offset points",
                        xytext=(5, offset), fontsize=7, color="#777777")
    labels = chart_labels(report)
    title = f"{report.tag}: {report.experiments} experiments, {report.kept} kept improvements"
    if report.kept > MAX_CHART_LABELS - 1:
        title += f" (the {MAX_CHART_LABELS - 1} largest gains labelled)"
    if kept:
        xs, ys, best = [], [], None
        for row in kept:
            best = row.metric if best is None or Direction.parse(report.direction).better(row.metric, best) else best
            xs.append(row.exp)
            ys.append(best)
        last_exp = max(r.exp for r in rows)
        ax.step(xs + [last_exp], ys + [ys[-1]], where="post", color=BEST_LINE_COLOUR, linewidth=2, alpha=0.7, zorder=3, label="Best so far")
        ax.scatter(
            [r.exp for r in kept], [r.metric for r in kept], c=KEPT_COLOUR, s=60, zorder=4,
            edgecolors="black", linewidths=0.6, label="Kept",
        )
        baseline = kept[0]
        ax.axhline(baseline.metric, color=BASELINE_COLOUR, linestyle="--", linewidth=1, zorder=1)
        ax.scatter([baseline.exp], [baseline.metric], marker="*", c=BASELINE_COLOUR, s=220, zorder=5,
                   edgecolors="black", linewidths=0.6, label=f"Baseline ({baseline.metric:.6f})")
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
