"""Search strategies by name: what `--strategy` chooses and a stored run
remembers.

A strategy is one module here; its line in `STRATEGIES` gives its factory,
a few words for `--strategy`'s help, and the options it takes (its module
declares them): the command line offers those as flags and the run stores
them. The factory gets the run's settings as keywords (direction, debug,
slots, and its options' values as given) and ignores the ones it does not use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ar_tui.core.config import RunOption
from ar_tui.core.engine.strategies import islands
from ar_tui.core.engine.strategies.base import Base, Judging, Strategy, Verdict
from ar_tui.core.engine.strategies.greedy import GreedyStrategy
from ar_tui.core.engine.strategies.islands import IslandStrategy
from ar_tui.core.engine.strategies.tree import TreeStrategy
from ar_tui.core.errors import UserError

# What a run searches with when --strategy is not given: tree beat greedy on
# both real targets (docs/benchmarks/search-strategies.md: forecast 60 x 5
# seeds, CPU nanochat 30 x 3 seeds). The engine's own default stays
# greedy, the plain rules its tests pin.
DEFAULT_STRATEGY = "tree"


@dataclass(frozen=True)
class StrategyEntry:
    factory: Callable[..., Strategy]
    help: str  # a few words for --strategy's help
    options: tuple[RunOption, ...] = ()


STRATEGIES: dict[str, StrategyEntry] = {
    "greedy": StrategyEntry(lambda **_: GreedyStrategy(), "one greedy lineage"),
    "tree": StrategyEntry(TreeStrategy, "a tree of experiments (the default, measured best)"),
    "islands": StrategyEntry(IslandStrategy, "islands that trade their best", islands.OPTIONS),
}


def strategy_options() -> tuple[RunOption, ...]:
    """`--strategy` itself, then every option a strategy declares."""
    choose = RunOption("strategy", "search: " + "; ".join(f"{name}: {entry.help}" for name, entry in STRATEGIES.items()),
                       choices=tuple(STRATEGIES), default=DEFAULT_STRATEGY)
    return (choose, *(option for entry in STRATEGIES.values() for option in entry.options))


def settings_for(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """The values of `given` (a run's stored options) that strategy `name` declares."""
    entry = STRATEGIES.get(name)
    return {o.name: given[o.name] for o in (entry.options if entry else ()) if o.name in given}


def make_strategy(name: str, **settings) -> Strategy:
    try:
        entry = STRATEGIES[name]
    except KeyError:
        raise UserError(f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}") from None
    return entry.factory(**settings)


__all__ = ["Base", "DEFAULT_STRATEGY", "GreedyStrategy", "IslandStrategy", "Judging", "STRATEGIES", "Strategy",
           "StrategyEntry", "TreeStrategy", "Verdict", "make_strategy", "settings_for", "strategy_options"]
