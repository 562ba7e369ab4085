"""Which model gets the next piece of work: a UCB bandit on improvement per dollar.

ShinkaEvolve allocates proposals among LLMs with UCB: each model is an arm,
its reward what its proposals gained. Here the reward of an arm is the
improvement its experiments bought per dollar they cost (the ratio of the
sums, so one lucky cheap run does not dominate), scaled by the best arm's so
that rewards lie in [0, 1] whatever the metric's units, plus the usual
exploration bonus `c * sqrt(2 ln N / n)`. An arm never tried is tried first,
in the order given.

Pure state rebuilt from the outcomes it is fed, so resume and determinism come
free; shared by the team's worker pool and any proposer that allocates work
among models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# An unpriced (local) model costs nothing; its dollars are floored so that
# improvement per dollar stays finite and such a model is not infinitely good.
MIN_COST_USD = 1e-4


@dataclass
class ArmStats:
    pulls: int = 0
    improvement: float = 0.0  # summed, never negative
    cost_usd: float = 0.0

    @property
    def value(self) -> float:
        return self.improvement / max(self.cost_usd, MIN_COST_USD * self.pulls, MIN_COST_USD)


class UCBAllocator:
    def __init__(self, arms: list[str], exploration: float = 1.0) -> None:
        if not arms:
            raise ValueError("the allocator needs at least one arm")
        self.arms = list(dict.fromkeys(arms))
        self.exploration = exploration
        self.stats = {arm: ArmStats() for arm in self.arms}

    def record(self, arm: str, improvement: float, cost_usd: float) -> None:
        """One finished piece of work: what it gained (0 when it did not
        improve) and what it cost. Unknown arms (a model dropped from the pool
        on resume) are ignored."""
        stats = self.stats.get(arm)
        if stats is None:
            return
        stats.pulls += 1
        stats.improvement += max(0.0, improvement)
        stats.cost_usd += max(0.0, cost_usd)

    def scores(self) -> dict[str, float]:
        total = sum(s.pulls for s in self.stats.values())
        best = max((s.value for s in self.stats.values()), default=0.0)
        scores: dict[str, float] = {}
        for arm, stats in self.stats.items():
            if stats.pulls == 0:
                scores[arm] = math.inf
                continue
            mean = stats.value / best if best > 0 else 0.0
            scores[arm] = mean + self.exploration * math.sqrt(2 * math.log(total) / stats.pulls)
        return scores

    def pick(self) -> str:
        scores = self.scores()
        # max() keeps the first of equal scores: the order given breaks ties.
        return max(self.arms, key=lambda arm: scores[arm])
