"""The metric across experiments: a sparkline over the results table."""

from __future__ import annotations

from textual.containers import Vertical
from textual.widgets import Sparkline, Static

from ar_tui import formatting as fmt
from ar_tui.core import events as ev
from ar_tui.core.control import RunView
from ar_tui.ui.results_table import ResultsTable


class MetricPane(Vertical):
    DEFAULT_CSS = """
    MetricPane > #metric-summary { height: 2; }
    MetricPane > Sparkline { height: 3; }
    MetricPane > ResultsTable { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.summary = Static("no results yet", id="metric-summary", markup=False)
        self.sparkline = Sparkline([], id="metric-sparkline")
        self.table = ResultsTable(id="results")
        self._summary_shown = ""

    def compose(self):
        yield self.summary
        yield self.sparkline
        yield self.table

    def show(self, view: RunView) -> None:
        # The baseline is a row of its own (exp 0), as in results.tsv.
        rows = list(view.rows)
        values = [r.metric for r in rows if r.metric is not None and r.status != ev.STATUS_CRASH]
        # Reassign rather than mutate: Sparkline only redraws on a new list.
        self.sparkline.data = values
        kept = view.kept
        summary = (
            f"{view.metric_name} ({'lower' if view.direction == 'min' else 'higher'} is better)  "
            f"baseline {fmt.metric(view.baseline)}  best {fmt.metric(view.best)}"
        )
        if view.best_exp is not None:
            summary += f" (exp {view.best_exp}, {fmt.percent(view.improvement_pct)})"
        summary += f"  ·  {len(view.experiments)} decided, {kept} kept"
        if summary != self._summary_shown:
            self._summary_shown = summary
            self.summary.update(summary, layout=False)
        self.table.show_rows(rows, view.best_exp)
