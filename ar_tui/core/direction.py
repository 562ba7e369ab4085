"""Which way is better: the one place that knows what "min" and "max" mean."""

from __future__ import annotations

from enum import Enum
from typing import Iterable


class Direction(str, Enum):
    """A metric's direction. A `str` enum, so `"min"` in old files and configs
    compares and serialises as before."""

    MIN = "min"
    MAX = "max"

    @classmethod
    def parse(cls, value: "str | Direction") -> "Direction":
        return cls(value)

    def better(self, a: float, b: float) -> bool:
        """True when `a` is strictly better than `b`."""
        return a < b if self is Direction.MIN else a > b

    def improvement(self, new: float, old: float) -> float:
        """How much better `new` is than `old`; positive when better."""
        return old - new if self is Direction.MIN else new - old

    @property
    def lower_is_better(self) -> bool:
        return self is Direction.MIN

    def loss(self, value: float) -> float:
        """The metric as a loss: smaller is better, whichever way the metric goes."""
        return value if self is Direction.MIN else -value

    def sign(self) -> float:
        """+1 when larger is better, -1 when smaller is: `sign * metric` is a score to maximise."""
        return 1.0 if self is Direction.MAX else -1.0

    def best(self, values: Iterable[float]) -> float | None:
        values = list(values)
        if not values:
            return None
        return min(values) if self is Direction.MIN else max(values)

    @property
    def comparative(self) -> str:
        """"lower" or "higher": which way is better, in a word."""
        return "lower" if self is Direction.MIN else "higher"

    @property
    def words(self) -> str:
        return f"{self.comparative} is better"
