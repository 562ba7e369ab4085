"""The chart's rules, shared by the app's chart and the report's progress.png:
a diverged run is clipped to the edge and flagged instead of setting the
scale, the best so far only improves, and crashes sit at the worse edge."""

from __future__ import annotations

from dataclasses import dataclass

from ar_tui import chart_scale as cs


@dataclass
class Row:
    exp: int
    status: str
    metric: float | None


NIGHT = [Row(0, "keep", 0.998380), Row(1, "keep", 0.982052), Row(2, "keep", 0.976052),
         Row(3, "discard", 1.311256), Row(4, "discard", 0.976952), Row(5, "discard", 0.979911),
         Row(6, "keep", 0.974013), Row(7, "crash", None), Row(8, "keep", 0.971877)]


def test_one_diverged_run_is_clipped_to_the_top_edge_and_flagged() -> None:
    data = cs.chart_data(NIGHT, baseline=0.998380, direction="min")
    # The range is set by the real gains, with a little headroom, not by 1.31.
    assert data.y_high < 1.01 and data.y_low > 0.96
    outlier = next(p for p in data.points if p.exp == 3)
    assert outlier.clipped == cs.CLIPPED_HIGH and outlier.y == data.y_high and outlier.metric == 1.311256
    assert [p.exp for p in data.clipped] == [3]
    # Every other measured point is drawn where it was measured.
    assert all(p.y == p.metric for p in data.points if p.metric is not None and p.exp != 3)


def test_a_crash_is_drawn_at_the_worse_edge_for_either_direction() -> None:
    low = cs.chart_data(NIGHT, baseline=0.998380, direction="min")
    assert next(p for p in low.points if p.exp == 7).y == low.y_high
    rising = [Row(0, "keep", 0.5), Row(1, "crash", None), Row(2, "keep", 0.6)]
    high = cs.chart_data(rising, baseline=0.5, direction="max")
    crash = next(p for p in high.points if p.exp == 1)
    assert crash.clipped == cs.NO_METRIC and crash.y == high.y_low


def test_the_best_so_far_steps_down_only_on_kept_improvements() -> None:
    steps = cs.best_so_far(NIGHT, "min", 0.998380)
    assert steps == [(0, 0.998380), (1, 0.982052), (2, 0.976052), (3, 0.976052), (4, 0.976052),
                     (5, 0.976052), (6, 0.974013), (7, 0.974013), (8, 0.971877)]
    # A forced keep that is worse stays a point; the line stays at the best.
    forced = [*NIGHT, Row(9, "keep", 0.99)]
    assert cs.best_so_far(forced, "min", 0.998380)[-1] == (9, 0.971877)


def test_the_baseline_and_the_best_line_are_always_in_range() -> None:
    # An outlier on the good side must not drag the range either, but the
    # best line (which it is not part of: it was discarded) stays visible.
    rows = [Row(0, "keep", 1.0), Row(1, "keep", 0.99), Row(2, "discard", 0.995), Row(3, "discard", 0.2),
            Row(4, "discard", 0.993), Row(5, "discard", 0.994)]
    data = cs.chart_data(rows, baseline=1.0, direction="min")
    assert data.y_low < 0.99 < 1.0 < data.y_high
    assert next(p for p in data.points if p.exp == 3).clipped == cs.CLIPPED_LOW


def test_few_points_are_never_called_outliers() -> None:
    rows = [Row(0, "keep", 1.0), Row(1, "discard", 5.0)]
    data = cs.chart_data(rows, baseline=1.0, direction="min")
    assert data.clipped == [] and data.y_high > 5.0


def test_a_flat_night_still_gets_a_range() -> None:
    data = cs.chart_data([Row(0, "keep", 1.0), Row(1, "discard", 1.0)], baseline=1.0)
    assert data.y_low < 1.0 < data.y_high


def test_the_gain_series_rises_with_each_improvement_and_ignores_the_outlier() -> None:
    gains = cs.gain_series(NIGHT, 0.998380, "min")
    assert gains == sorted(gains) and gains[0] == 0.0
    assert abs(gains[-1] - (0.998380 - 0.971877)) < 1e-12
    assert cs.gain_series([Row(0, "keep", 2.0), Row(1, "keep", 3.0)], 2.0, "max") == [0.0, 1.0]
