"""Search strategies by name: what `--strategy` chooses and a stored run
remembers.

A strategy is one module here; it registers a name and a factory. The
factory takes the run's settings as keywords (direction, debug, islands,
migrate_every ...) and ignores the ones it does not use.
"""

from __future__ import annotations

from typing import Callable

from ar_tui.core.engine.strategies.base import Base, Judging, Strategy, Verdict
from ar_tui.core.engine.strategies.greedy import GreedyStrategy
from ar_tui.core.engine.strategies.islands import IslandStrategy
from ar_tui.core.engine.strategies.tree import TreeStrategy
from ar_tui.core.errors import UserError

STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "greedy": lambda **_: GreedyStrategy(),
    "tree": TreeStrategy,
    "islands": IslandStrategy,
}


def make_strategy(name: str, **settings) -> Strategy:
    try:
        factory = STRATEGIES[name]
    except KeyError:
        raise UserError(f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}") from None
    return factory(**settings)


__all__ = ["Base", "GreedyStrategy", "IslandStrategy", "Judging", "STRATEGIES", "Strategy", "TreeStrategy", "Verdict",
           "make_strategy"]
