"""Decided experiments, one row each; statuses and the best-so-far stand out
by mark and weight as well as colour."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from ar_tui import formatting as fmt
from ar_tui.core import events as ev

STATUS_STYLES = {
    ev.STATUS_KEEP: "bold green",
    ev.STATUS_DISCARD: "dim",
    ev.STATUS_CRASH: "bold red",
    ev.STATUS_VETO: "yellow strike",
}


class ResultsTable(DataTable):
    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="none", zebra_stripes=False)
        self._shown: list[tuple] = []

    def on_mount(self) -> None:
        self.add_column(" ", key="best")
        self.add_column("exp", key="exp")
        self.add_column("parent", key="parent")
        self.add_column("isl", key="island")
        self.add_column("commit", key="commit")
        self.add_column("metric", key="metric")
        self.add_column("status", key="status")
        self.add_column("cost", key="cost")
        self.add_column("description", key="description")

    def show_rows(self, rows: list[ev.Decision], best_exp: int | None) -> None:
        signature = [(r.exp, r.status, r.metric, r.forced, r.exp == best_exp, r.parent_exp, r.island) for r in rows]
        if signature == self._shown:
            return
        following = self.scroll_y >= self.max_scroll_y
        self._shown = signature
        self.clear()
        for row in rows:
            style = STATUS_STYLES.get(row.status, "")
            is_best = row.exp == best_exp and row.status == ev.STATUS_KEEP
            status = f"{fmt.STATUS_MARKS.get(row.status, '?')} {row.status}" + (" (forced)" if row.forced else "")
            self.add_row(
                Text("★" if is_best else "", style="bold"),
                Text(str(row.exp), style="bold" if is_best else ""),
                "-" if row.parent_exp is None else str(row.parent_exp),
                "-" if row.island is None else str(row.island),
                row.commit[:7],
                Text(fmt.metric(row.metric), style="bold underline" if is_best else style),
                Text(status, style=style),
                fmt.dollars(row.cost_usd) if row.cost_usd else "-",
                Text(row.description, style=style),
                key=str(row.exp),
            )
        if following and rows:
            self.call_after_refresh(self.scroll_end, animate=False)
