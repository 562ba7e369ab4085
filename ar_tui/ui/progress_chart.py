"""The night's progress as one picture: every experiment a point, the best so
far a step line, the baseline a rule across. The scale and the clipping come
from `ar_tui.chart_scale`, the same rules as the report's progress.png.

Each status has its own mark, so the chart reads without colour; an outlier
clipped to the edge keeps its status's place in the legend and gets an arrow
instead. The plot is rebuilt only when the decided experiments change.
"""

from __future__ import annotations

from typing import Any, Iterable

from rich.text import Text
from textual.containers import Vertical
from textual.widgets import Static
from textual_plotext import PlotextPlot

from ar_tui import chart_scale as cs
from ar_tui import formatting as fmt

# Marks without colour: filled for kept, hollow for discarded, a cross for a
# crash, a barred circle for a veto; arrows for values clipped to an edge.
MARKS = {cs.KEEP: "●", cs.DISCARD: "○", cs.CRASH: "✗", cs.VETO: "⊘"}
CLIPPED_MARKS = {cs.CLIPPED_HIGH: "▲", cs.CLIPPED_LOW: "▼"}
COLOURS = {cs.KEEP: "green+", cs.DISCARD: "gray", cs.CRASH: "red", cs.VETO: "orange"}
_SIGNIFICANT = 6  # y tick labels: enough digits to tell 0.9712 from 0.9718


class ProgressChart(Vertical):
    DEFAULT_CSS = """
    ProgressChart { height: 1fr; }
    ProgressChart > #chart-legend { height: auto; max-height: 2; color: $text-muted; }
    ProgressChart > PlotextPlot { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.legend = Static("", id="chart-legend", markup=False)
        self.plot = ChartPlot(id="chart-plot")
        self.data: cs.ChartData | None = None
        self._signature: tuple = ()

    def compose(self):
        yield self.legend
        yield self.plot

    def show(self, rows: Iterable[Any], baseline: float | None, direction: str) -> bool:
        """Redraw for these decided rows; returns False (and draws nothing)
        when they are what is already drawn."""
        rows = list(rows)
        signature = (direction, baseline, tuple((r.exp, r.status, r.metric) for r in rows))
        if signature == self._signature:
            return False
        self._signature = signature
        self.data = data = cs.chart_data(rows, baseline, direction)
        self.plot.data = data
        self.plot.refresh()
        self.legend.update(self._legend(data))
        return True

    def _legend(self, data: cs.ChartData) -> Text:
        legend = Text()
        seen = {p.status for p in data.points}
        for status in (cs.KEEP, cs.DISCARD, cs.CRASH, cs.VETO):
            if status in seen:
                legend.append(f"{MARKS[status]} {status} ")
        legend.append("┈ best ┄ baseline")
        clipped = data.clipped
        if clipped:
            # The values the scale leaves out, so that nothing is hidden.
            shown = ", ".join(f"{p.exp}: {fmt.metric(p.metric)}" for p in clipped[:3])
            more = f" +{len(clipped) - 3}" if len(clipped) > 3 else ""
            legend.append(f"  ▲▼ off scale {shown}{more}", style="bold")
        return legend


class ChartPlot(PlotextPlot):
    data: cs.ChartData | None = None

    def render(self):
        # The figure is built afresh for each render: plotext keeps state
        # between builds, and a figure first built at another size would
        # place its ticks differently. Renders happen on a decision or a
        # resize only, so this costs nothing in between.
        if self.data is not None:
            self._draw(self.data)
        return super().render()

    def _draw(self, data: cs.ChartData) -> None:
        plt = self.plt
        plt.clear_figure()
        x_high = max(data.x_high, 1)
        # Painted in order, later over earlier: the rules first, the points on top.
        if data.baseline is not None:
            plt.plot([0, x_high + 0.5], [data.baseline, data.baseline], marker="┄", color="gray")
        if data.best_steps:
            xs, ys = [], []
            for i, (exp, best) in enumerate(data.best_steps):
                following = data.best_steps[i + 1][0] if i + 1 < len(data.best_steps) else x_high + 0.5
                xs += [exp, following]
                ys += [best, best]
            plt.plot(xs, ys, marker="braille", color="cyan")
        for status, mark in MARKS.items():
            placed = [p for p in data.points if p.status == status and p.clipped not in CLIPPED_MARKS]
            if placed:
                plt.scatter([p.exp for p in placed], [p.y for p in placed], marker=mark, color=COLOURS[status])
        for side, mark in CLIPPED_MARKS.items():
            clipped = [p for p in data.points if p.clipped == side]
            if clipped:
                plt.scatter([p.exp for p in clipped], [p.y for p in clipped], marker=mark, color="white")
        plt.ylim(data.y_low, data.y_high)
        plt.xlim(-0.5, x_high + 0.5)
        step = max(1, round(x_high / 10))
        plt.xticks(list(range(0, x_high + 1, step)))
        # Two ticks on one row would leave plotext to pick which label shows:
        # at most one tick every other row of the plotting area (the frame,
        # the x ticks and the x label take four rows).
        count = max(2, min(5, (self.size.height - 4) // 2 + 1))
        ticks = [data.y_low + (data.y_high - data.y_low) * i / (count - 1) for i in range(count)]
        plt.yticks(ticks, [f"{t:.{_SIGNIFICANT}g}" for t in ticks])
        plt.xlabel("experiment")
