"""What the agent has cost so far, updated while a response streams."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from ar_tui import formatting as fmt
from ar_tui.core import events as ev
from ar_tui.core.control import RunView

_NO_USAGE = ev.Usage(exp=None, model="", input_tokens=0, output_tokens=0, cache_write_5m_tokens=0,
                     cache_write_1h_tokens=0, cache_read_tokens=0, cost_usd=0.0, ts=0.0)


class CostMeter(Static):
    _shown: tuple | None = None

    def show(self, view: RunView) -> None:
        streaming = view.streaming_usage
        figures = (view.cost_usd, view.budget_usd, view.unknown_price, len(view.experiments), view.input_tokens,
                   view.output_tokens, view.cache_write_tokens, view.cache_read_tokens, view.cache_hit_share,
                   streaming.to_json() if streaming is not None else None)
        if figures == self._shown:
            return
        self._shown = figures
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        cost = view.live_cost_usd
        spent = fmt.dollars(cost) + (" + unpriced" if view.unknown_price else "")
        if view.budget_usd is not None:
            left = max(0.0, view.budget_usd - cost)
            share = cost / view.budget_usd if view.budget_usd else 1.0
            style = "bold red" if share >= 0.9 else ("yellow" if share >= 0.7 else "")
            grid.add_row("spent", Text(f"{spent} of {fmt.dollars(view.budget_usd)}, {fmt.dollars(left)} left", style=style))
        else:
            grid.add_row("spent", f"{spent} (no budget)")
        if streaming is not None:
            grid.add_row("", Text(f"● streaming: {fmt.dollars(streaming.cost_usd)} so far", style="italic"))
        grid.add_row("per exp", fmt.dollars(view.cost_per_experiment))
        live = streaming or _NO_USAGE
        grid.add_row("tokens", f"in {fmt.tokens(view.input_tokens + live.input_tokens)}  "
                               f"out {fmt.tokens(view.output_tokens + live.output_tokens)}")
        write = view.cache_write_tokens + live.cache_write_5m_tokens + live.cache_write_1h_tokens
        read = view.cache_read_tokens + live.cache_read_tokens
        grid.add_row("cache", f"write {fmt.tokens(write)}  read {fmt.tokens(read)}")
        grid.add_row("cache hit", f"{view.cache_hit_share * 100:.0f}%")
        self.update(grid, layout=False)  # fixed height (app.tcss)
