"""Who gets the next experiment: a UCB bandit on improvement per unit of cost.

An experiment's cost is what it spent in dollars (the agent's tokens) plus
its training time priced per hour, so that an arm that improves the metric
cheaply in both is preferred: a Claude proposal costs tokens, a sampler
proposal costs nothing but the run. Each arm's reward is its improvement
divided by that cost; UCB1 picks the arm whose mean reward, scaled by the
best arm's, plus an exploration bonus is highest, and every arm is tried
once before any is preferred.

The interface is small on purpose (`choose()`, `reward(arm, improvement,
cost_usd, train_hours)`), so that the research team's worker pool and the
hybrid agent share one mechanism. The bandit keeps no state of its own that
the ledger cannot give back: rebuilt from the rows in order, it chooses what
it chose before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

DEFAULT_USD_PER_TRAIN_HOUR = 2.0  # about an hour of one rented GPU
DEFAULT_EXPLORATION = 1.0
_MIN_COST_USD = 1e-6  # an experiment that cost nothing still cost something


@dataclass
class ArmStats:
    pulls: int = 0
    total_reward: float = 0.0
    improvement: float = 0.0
    cost_usd: float = 0.0
    train_hours: float = 0.0

    @property
    def mean(self) -> float:
        return self.total_reward / self.pulls if self.pulls else 0.0


@dataclass
class UCBBandit:
    arms: Sequence[str]
    usd_per_train_hour: float = DEFAULT_USD_PER_TRAIN_HOUR
    exploration: float = DEFAULT_EXPLORATION
    stats: dict[str, ArmStats] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.arms:
            raise ValueError("a bandit needs at least one arm")
        self.arms = tuple(self.arms)
        self.stats = {arm: self.stats.get(arm, ArmStats()) for arm in self.arms}

    def cost(self, cost_usd: float, train_hours: float) -> float:
        return max(_MIN_COST_USD, cost_usd + train_hours * self.usd_per_train_hour)

    def reward(self, arm: str, improvement: float, cost_usd: float, train_hours: float) -> None:
        """One experiment's result for `arm`: how much it improved the best
        (0 when it did not), what it spent, and how long it trained."""
        stats = self.stats[arm]
        stats.pulls += 1
        stats.total_reward += max(0.0, improvement) / self.cost(cost_usd, train_hours)
        stats.improvement += max(0.0, improvement)
        stats.cost_usd += cost_usd
        stats.train_hours += train_hours

    def scores(self) -> dict[str, float]:
        """Each arm's UCB score (infinite for an arm not tried yet)."""
        total = sum(s.pulls for s in self.stats.values())
        scale = max((s.mean for s in self.stats.values()), default=0.0) or 1.0
        return {
            arm: math.inf if s.pulls == 0
            else s.mean / scale + self.exploration * math.sqrt(2.0 * math.log(max(total, 1)) / s.pulls)
            for arm, s in self.stats.items()
        }

    def choose(self, allowed: Sequence[str] | None = None) -> str:
        """The arm with the highest score among `allowed` (all by default);
        ties go to the earlier arm, so that a rebuilt bandit chooses the same."""
        scores = self.scores()
        candidates = [arm for arm in self.arms if allowed is None or arm in allowed]
        if not candidates:
            raise ValueError("no arm allowed")
        return max(candidates, key=lambda arm: (scores[arm], -self.arms.index(arm)))
