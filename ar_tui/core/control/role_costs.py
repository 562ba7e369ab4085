"""Who spent what: tokens and dollars by role and by model, and the proposals a
reviewer stopped before they trained, read from a run's events.

Pure and toolkit-free, for the report (`cost_by_role`, `cost_by_model` and
`rejected_before_training` in `ar-tui report --json`) and any viewer. A run
without a team has one role, `agent`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from ar_tui.core import events as ev


@dataclass
class RoleCosts:
    cost_by_role: dict[str, float] = field(default_factory=dict)
    cost_by_model: dict[str, float] = field(default_factory=dict)
    tokens_by_role: dict[str, dict[str, int]] = field(default_factory=dict)
    web_searches: int = 0
    rejected_before_training: int = 0

    def as_dict(self) -> dict:
        return {"cost_by_role": self.cost_by_role, "cost_by_model": self.cost_by_model,
                "tokens_by_role": self.tokens_by_role, "web_searches": self.web_searches,
                "rejected_before_training": self.rejected_before_training}


class RoleCostCounter:
    """Folds events in one at a time (the app's RunView, as they arrive);
    `figures()` gives the sums so far."""

    def __init__(self) -> None:
        self._by_role: dict[str, Decimal] = {}
        self._by_model: dict[str, Decimal] = {}
        self._figures = RoleCosts()

    def add(self, event: ev.Event) -> None:
        figures = self._figures
        if isinstance(event, ev.Review) and event.verdict == "reject":
            figures.rejected_before_training += 1
        if not isinstance(event, ev.Usage) or event.streaming:
            return
        tokens = figures.tokens_by_role.setdefault(event.role, {"input": 0, "output": 0, "cache_write": 0,
                                                                "cache_read": 0})
        tokens["input"] += event.input_tokens
        tokens["output"] += event.output_tokens
        tokens["cache_write"] += event.cache_write_5m_tokens + event.cache_write_1h_tokens
        tokens["cache_read"] += event.cache_read_tokens
        figures.web_searches += event.web_search_requests
        if event.cost_usd is not None:
            # Summed as decimals of the floats' shortest forms: exact to the events' precision.
            cost = Decimal(repr(event.cost_usd))
            self._by_role[event.role] = self._by_role.get(event.role, Decimal(0)) + cost
            self._by_model[event.model] = self._by_model.get(event.model, Decimal(0)) + cost

    def figures(self) -> RoleCosts:
        figures = self._figures
        return RoleCosts(cost_by_role={role: float(v) for role, v in sorted(self._by_role.items())},
                         cost_by_model={model: float(v) for model, v in sorted(self._by_model.items())},
                         tokens_by_role={role: dict(t) for role, t in figures.tokens_by_role.items()},
                         web_searches=figures.web_searches,
                         rejected_before_training=figures.rejected_before_training)


def role_costs(events: Iterable[ev.Event]) -> RoleCosts:
    counter = RoleCostCounter()
    for event in events:
        counter.add(event)
    return counter.figures()
