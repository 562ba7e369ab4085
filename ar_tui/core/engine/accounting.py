"""What the night has cost: tokens and dollars, in total and per experiment.

Only a proposer's final `Usage` of a request counts (a streaming one is a
provisional figure the viewers show on top). The running totals are written
into that event before it is emitted, so every viewer shows the engine's own
sums instead of adding them up again.
"""

from __future__ import annotations

from typing import Callable

from ar_tui.core import events as ev

TOKEN_KINDS = ("input", "output", "cache_write", "cache_read")


class Accounting:
    def __init__(self) -> None:
        self.spent_usd = 0.0
        self.tokens = dict.fromkeys(TOKEN_KINDS, 0)
        self.cost_by_exp: dict[int, float] = {}

    def restore(self, state: dict, events: list[ev.Event]) -> None:
        self.spent_usd = float(state.get("spent_usd", 0.0))
        self.tokens.update(state.get("tokens", {}))
        self.cost_by_exp = {int(k): v for k, v in state.get("cost_by_exp", {}).items()}
        for event in events:
            if isinstance(event, ev.Usage) and not event.streaming:
                self.spent_usd = max(self.spent_usd, event.total_cost_usd)

    def to_state(self) -> dict:
        return {"spent_usd": self.spent_usd, "tokens": self.tokens, "cost_by_exp": self.cost_by_exp}

    def cost_of(self, exp: int) -> float:
        return self.cost_by_exp.get(exp, 0.0)

    def budget_reached(self, budget_usd: float | None) -> bool:
        return budget_usd is not None and self.spent_usd >= budget_usd

    def count(self, exp: int, event: ev.Usage) -> None:
        """Add a request's final usage to experiment `exp` and fill the totals in."""
        self.tokens["input"] += event.input_tokens
        self.tokens["output"] += event.output_tokens
        self.tokens["cache_write"] += event.cache_write_5m_tokens + event.cache_write_1h_tokens
        self.tokens["cache_read"] += event.cache_read_tokens
        if event.cost_usd is not None:
            self.spent_usd += event.cost_usd
            self.cost_by_exp[exp] = self.cost_by_exp.get(exp, 0.0) + event.cost_usd
        input_side = self.tokens["input"] + self.tokens["cache_write"] + self.tokens["cache_read"]
        event.total_input_tokens = self.tokens["input"]
        event.total_output_tokens = self.tokens["output"]
        event.total_cache_write_tokens = self.tokens["cache_write"]
        event.total_cache_read_tokens = self.tokens["cache_read"]
        event.total_cost_usd = self.spent_usd
        event.cache_hit_share = self.tokens["cache_read"] / input_side if input_side else 0.0

    def agent_emit(self, exp: int, emit: Callable[[ev.Event], None]) -> Callable[[ev.Event], None]:
        """The `emit` a proposer gets for experiment `exp`: usage is counted on the way."""

        def counted(event: ev.Event) -> None:
            if isinstance(event, ev.Usage) and not event.streaming:
                self.count(exp, event)
            emit(event)

        return counted
