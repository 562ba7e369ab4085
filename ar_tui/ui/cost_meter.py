"""What the night has cost so far: tokens (updated while a response streams),
GPU time at --gpu-usd-per-hour, and their sum; per experiment, per kept
improvement, and split by role and by model."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from ar_tui import formatting as fmt
from ar_tui.core import events as ev
from ar_tui.core.control.view import RunView

_NO_USAGE = ev.Usage(exp=None, model="", input_tokens=0, output_tokens=0, cache_write_5m_tokens=0,
                     cache_write_1h_tokens=0, cache_read_tokens=0, cost_usd=0.0, ts=0.0)


def _split(costs: dict[str, float], strip: str = "") -> str:
    return "  ".join(f"{name.removeprefix(strip)} {fmt.dollars(usd)}" for name, usd in costs.items())


def _gpu_time(seconds: float) -> str:
    return f"{seconds / 3600:.2f} GPU-h" if seconds >= 36 else f"{seconds:.0f} GPU-s"


class CostMeter(Static):
    _shown: tuple | None = None

    def show(self, view: RunView) -> None:
        streaming = view.streaming_usage
        spend = view.role_costs.figures()
        figures = (view.cost_usd, view.budget_usd, view.unknown_price, len(view.experiments), view.kept,
                   view.input_tokens, view.output_tokens, view.cache_write_tokens, view.cache_read_tokens,
                   view.cache_hit_share, streaming.to_json() if streaming is not None else None,
                   view.gpu_usd_per_hour, view.budget_covers, view.gpu_seconds, view.gpu_cost_usd,
                   tuple(spend.cost_by_role.items()), tuple(spend.cost_by_model.items()))
        if figures == self._shown:
            return
        self._shown = figures
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        unpriced = " + unpriced" if view.unknown_price else ""
        if view.budget_usd is not None:
            spent = view.budget_spent_usd
            left = max(0.0, view.budget_usd - spent)
            share = spent / view.budget_usd if view.budget_usd else 1.0
            style = "bold red" if share >= 0.9 else ("yellow" if share >= 0.7 else "")
            covers = "tokens and GPU" if view.budget_covers == "all" else "tokens"
            grid.add_row("budget", Text(f"{fmt.dollars(spent)}{unpriced} of {fmt.dollars(view.budget_usd)} "
                                        f"({covers}), {fmt.dollars(left)} left", style=style))
        tokens_usd = view.live_cost_usd
        if view.gpu_priced:
            grid.add_row("spent", f"{fmt.dollars(view.total_cost_usd)}{unpriced} = tokens {fmt.dollars(tokens_usd)}"
                                  f" + GPU {fmt.dollars(view.gpu_cost_usd)}")
        else:
            grid.add_row("spent", f"tokens {fmt.dollars(tokens_usd)}{unpriced}"
                                  + ("" if view.budget_usd is not None else " (no budget)"))
        if streaming is not None:
            grid.add_row("", Text(f"● streaming: {fmt.dollars(streaming.cost_usd)} so far", style="italic"))
        grid.add_row("GPU", f"{_gpu_time(view.gpu_seconds)} at {fmt.dollars(view.gpu_usd_per_hour)}/h"
                     if view.gpu_priced else f"{_gpu_time(view.gpu_seconds)}, not priced (--gpu-usd-per-hour)")
        for label, per in (("per exp", view.per_experiment), ("per keep", view.per_kept)):
            total = per(view.total_cost_usd)
            parts = f" (tokens {fmt.dollars(per(tokens_usd))}, GPU {fmt.dollars(per(view.gpu_cost_usd))})" \
                if view.gpu_priced and total is not None else ""
            grid.add_row(label, fmt.dollars(total) + parts)
        if len(spend.cost_by_role) > 1:
            grid.add_row("by role", _split(spend.cost_by_role))
        if spend.cost_by_model:
            grid.add_row("by model", _split(spend.cost_by_model, strip="claude-"))
        live = streaming or _NO_USAGE
        grid.add_row("tokens", f"in {fmt.tokens(view.input_tokens + live.input_tokens)}  "
                               f"out {fmt.tokens(view.output_tokens + live.output_tokens)}")
        write = view.cache_write_tokens + live.cache_write_5m_tokens + live.cache_write_1h_tokens
        read = view.cache_read_tokens + live.cache_read_tokens
        grid.add_row("cache", f"write {fmt.tokens(write)}  read {fmt.tokens(read)}  "
                              f"hit {view.cache_hit_share * 100:.0f}%")
        self.update(grid, layout=False)  # fixed height (app.tcss)
