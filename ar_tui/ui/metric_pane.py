"""The metric across experiments: the progress chart over the results table."""

from __future__ import annotations

from textual.containers import Vertical
from textual.widgets import Static

from ar_tui import formatting as fmt
from ar_tui.core.control.view import RunView
from ar_tui.core.direction import Direction
from ar_tui.formatting import noise_label
from ar_tui.ui.progress_chart import ProgressChart
from ar_tui.ui.results_table import ResultsTable


class MetricPane(Vertical):
    # The summary: its figures (two lines when they wrap), then the noise behind the decisions.
    DEFAULT_CSS = """
    MetricPane > #metric-summary { height: 3; }
    MetricPane > ProgressChart { height: 3fr; min-height: 8; }
    MetricPane > ResultsTable { height: 2fr; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.summary = Static("no results yet", id="metric-summary", markup=False)
        self.chart = ProgressChart(id="metric-chart")
        self.table = ResultsTable(id="results")
        self._summary_shown = ""

    def compose(self):
        yield self.summary
        yield self.chart
        yield self.table

    def show(self, view: RunView) -> None:
        # The baseline is a row of its own (exp 0), as in results.tsv.
        rows = list(view.rows)
        self.chart.show(rows, view.baseline, view.direction)
        kept = view.kept
        summary = (
            f"{view.metric_name} ({Direction.parse(view.direction).words})  "
            f"baseline {fmt.metric(view.baseline)}  best {fmt.metric(view.best)}"
        )
        if view.best_exp is not None:
            summary += f" (exp {view.best_exp}, {fmt.percent(view.improvement_pct)})"
        summary += f"  ·  {len(view.experiments)} decided, {kept} kept"
        summary += "\n" + noise_label(view.noise_sd, view.noise_dof, view.noise_jitter_only, view.noise_band)
        if summary != self._summary_shown:
            self._summary_shown = summary
            self.summary.update(summary, layout=False)
        self.table.show_rows(rows, view.best_exp)
