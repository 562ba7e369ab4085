"""The rules of the progress chart, shared by the app's chart and the morning
report's progress.png so that both draw the same picture: every experiment a
point, the best so far a step line, and a y-range that one diverged run cannot
flatten.

Toolkit-free on purpose (no textual, rich or matplotlib): whoever draws takes
a `ChartData` and only places marks.

The y-range is robust: a value further than `FENCE_IQR` interquartile ranges
outside the middle half of the metrics (Tukey's far-out fence) is an outlier.
Outliers are clipped to the edge of the range and flagged, so they still show,
as a mark at the edge, without squeezing every real gain into one row. The
baseline and the best-so-far line are always inside the range.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from ar_tui.core.direction import Direction

KEEP, DISCARD, CRASH, VETO = "keep", "discard", "crash", "veto"

# Tukey's "far out" fence: a diverged run is far out; ordinary noise is not.
FENCE_IQR = 3.0
# Quartiles of fewer values say little: below this nothing is called an outlier.
MIN_VALUES_FOR_FENCE = 5
# Headroom above and below the data, as a share of its span.
PAD_SHARE = 0.06

CLIPPED_HIGH = "high"
CLIPPED_LOW = "low"
NO_METRIC = "none"  # crashed or vetoed before a metric: drawn at the worse edge


@dataclass(frozen=True)
class ChartPoint:
    exp: int
    status: str
    metric: float | None  # the measured value, None for a crash
    y: float  # where it is drawn: the metric, or the edge it was clipped to
    clipped: str | None = None  # CLIPPED_HIGH, CLIPPED_LOW, NO_METRIC or None


@dataclass(frozen=True)
class ChartData:
    points: list[ChartPoint]
    best_steps: list[tuple[int, float]]  # (exp, best so far once exp was decided)
    baseline: float | None
    y_low: float
    y_high: float
    direction: str  # "min" or "max"

    @property
    def x_high(self) -> int:
        return max((p.exp for p in self.points), default=0)

    @property
    def best(self) -> float | None:
        return self.best_steps[-1][1] if self.best_steps else None

    @property
    def clipped(self) -> list[ChartPoint]:
        return [p for p in self.points if p.clipped in (CLIPPED_HIGH, CLIPPED_LOW)]




def best_so_far(rows: Iterable[Any], direction: str = "min", baseline: float | None = None) -> list[tuple[int, float]]:
    """The running best of the kept experiments, one step per decided row in
    experiment order: `(exp, best)`. Rows need `exp`, `status` and `metric`.
    A forced keep that is worse does not lower the line: the line is the best
    measured, not the current commit."""
    best = baseline
    steps: list[tuple[int, float]] = []
    for row in sorted(rows, key=lambda r: r.exp):
        if row.status == KEEP and row.metric is not None and (best is None or Direction.parse(direction).better(row.metric, best)):
            best = row.metric
        if best is not None:
            steps.append((row.exp, best))
    return steps


def robust_range(values: Sequence[float], always: Sequence[float] = ()) -> tuple[float, float]:
    """A y-range over `values` that leaves out far-out values and always
    covers `always` (the baseline and the best-so-far line)."""
    values = [v for v in values if v is not None]
    always = [v for v in always if v is not None]
    inside = list(values)
    if len(values) >= MIN_VALUES_FOR_FENCE:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
        spread = q3 - q1
        low_fence, high_fence = q1 - FENCE_IQR * spread, q3 + FENCE_IQR * spread
        inside = [v for v in values if low_fence <= v <= high_fence]
    span_values = inside + always
    if not span_values:
        return 0.0, 1.0
    low, high = min(span_values), max(span_values)
    span = high - low
    # A flat line still needs a range: a sliver around it, scaled to its size.
    pad = span * PAD_SHARE if span > 0 else max(abs(high) * 1e-3, 1e-9)
    return low - pad, high + pad


def chart_data(rows: Iterable[Any], baseline: float | None, direction: str = "min") -> ChartData:
    """Everything a progress chart draws. `rows` are decided experiments with
    `exp`, `status` and `metric` (RunView rows, results.tsv rows); the
    baseline may be among them as experiment 0."""
    rows = sorted(rows, key=lambda r: r.exp)
    steps = best_so_far(rows, direction, baseline)
    measured = [r.metric for r in rows if r.metric is not None]
    low, high = robust_range(measured, [*(b for _, b in steps), *([baseline] if baseline is not None else [])])
    worse_edge = high if Direction.parse(direction).lower_is_better else low
    points = []
    for row in rows:
        if row.metric is None:
            points.append(ChartPoint(row.exp, row.status, None, worse_edge, NO_METRIC))
        elif row.metric > high:
            points.append(ChartPoint(row.exp, row.status, row.metric, high, CLIPPED_HIGH))
        elif row.metric < low:
            points.append(ChartPoint(row.exp, row.status, row.metric, low, CLIPPED_LOW))
        else:
            points.append(ChartPoint(row.exp, row.status, row.metric, row.metric))
    return ChartData(points, steps, baseline, low, high, direction)


def gain_series(rows: Iterable[Any], baseline: float | None, direction: str = "min") -> list[float]:
    """The best so far as a gain over the baseline, one value per decided
    experiment: it only ever rises, with every real improvement, whatever a
    diverged run measured. What a sparkline draws."""
    steps = best_so_far(rows, direction, baseline)
    if not steps:
        return []
    start = baseline if baseline is not None else steps[0][1]
    return [Direction.parse(direction).improvement(best, start) for _, best in steps]
