"""Noticing that a night has stopped finding gains, and acting on it.

A plateau is N decided experiments in a row without a keep by the rule
(a forced keep is a person's call, not a finding). N comes from the night's
own numbers:

- the noise: a gain has to clear the noise band to be kept, so when the band
  is wide next to the gains this night has been finding, a real gain is
  often missed and a longer dry spell means less. N starts at
  BASE_WINDOW and scales with band / typical kept gain (clamped to
  MIN_WINDOW .. MAX_WINDOW);
- the budget: a plateau noticed after the budget is gone is no use, so N is
  at most half the experiments left (by --max-experiments, --hours at the
  night's pace, or --budget-usd at its spend per experiment).

The line that announces it says both. What is done is `--on-plateau`:
`explore` widens the search (the strategy's exploration up, a team's planner
re-plans), `combine` tries the near-misses together (`combine.py`), `stop`
ends the night with the budget left. After acting, the count starts again.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ar_tui.core import events as ev
from ar_tui.core.direction import Direction
from ar_tui.core.engine.combine import near_misses
from ar_tui.core.records.ledger import LedgerRow

if TYPE_CHECKING:
    from ar_tui.core.engine.scheduler import Scheduler

BASE_WINDOW = 8
MIN_WINDOW = 3
MAX_WINDOW = 24
EXPLORE_FACTOR = 2.0  # how much `explore` raises a strategy's exploration


@dataclass(frozen=True)
class Window:
    n: int
    why: str


def kept_gains(rows: list[LedgerRow], direction: Direction) -> list[float]:
    """The gain of each keep by the rule over the best before it."""
    gains: list[float] = []
    best = None
    for row in rows:
        if row.status != ev.STATUS_KEEP or row.metric is None:
            continue
        if best is not None and not row.forced:
            gains.append(direction.improvement(row.metric, best))
        best = row.metric
    return [g for g in gains if g > 0]


def since_keep(rows: list[LedgerRow], after: int = 0) -> int:
    """Decided experiments since the last keep by the rule, counting only
    those decided after the first `after` decided experiments."""
    decided = [r for r in rows if r.exp not in (0, None) and r.status != ev.STATUS_VETO]
    count = 0
    for index, row in enumerate(decided):
        kept_by_rule = row.status == ev.STATUS_KEEP and not row.forced
        if kept_by_rule or index < after:
            count = 0
        else:
            count += 1
    return count


def window(band: float | None, gains: list[float], remaining: tuple[int, str] | None) -> Window:
    """N, and how it was derived, in words."""
    if band is None or band <= 0:
        noise_n, noise_why = BASE_WINDOW, f"no noise band yet: {BASE_WINDOW}"
    else:
        typical = sum(gains) / len(gains) if gains else band
        raw = BASE_WINDOW * band / typical
        noise_n = min(MAX_WINDOW, max(MIN_WINDOW, math.ceil(raw)))
        source = f"the night's typical kept gain {typical:.6f}" if gains else "no kept gain yet"
        bound = (f", at least {MIN_WINDOW}" if math.ceil(raw) < MIN_WINDOW
                 else f", at most {MAX_WINDOW}" if math.ceil(raw) > MAX_WINDOW else "")
        noise_why = (f"noise band {band:.6f} against {source}: {BASE_WINDOW} x {band:.6f} / {typical:.6f} "
                     f"= {raw:.1f}{bound}: {noise_n}")
    n, why = noise_n, noise_why
    if remaining is not None:
        left, by = remaining
        budget_n = max(MIN_WINDOW, left // 2)
        if budget_n < n:
            n = budget_n
            why += f"; capped at half of the {left} experiment(s) left by {by}: {n}"
        else:
            why += f"; {left} experiment(s) left by {by}"
    return Window(n, why)


class PlateauWatch:
    """Owned by the scheduler: checks after each decision, acts once per plateau."""

    def __init__(self, scheduler: "Scheduler") -> None:
        self.scheduler = scheduler
        # Decided experiments when the last plateau was acted on (a resumed run's from its events).
        self.acted_at = scheduler.run.plateau_acted_at
        self.replan = False  # the next proposal's context asks a team to re-plan
        self.combine_asked = 0  # combinations the plateau asked for, not yet proposed

    def remaining(self) -> tuple[int, str] | None:
        run = self.scheduler.run
        opts, rows = run.options, run.ledger.rows
        decided = sum(1 for r in rows if r.exp not in (0, None))
        left: list[tuple[int, str]] = []
        if opts.max_experiments is not None:
            left.append((max(0, opts.max_experiments - decided), "--max-experiments"))
        if opts.hours and decided:
            elapsed = time.time() - run.started_at
            pace = elapsed / decided
            left.append((max(0, int((opts.hours * 3600 - elapsed) / pace)), "--hours at the night's pace"))
        spent = run.accounting.budget_spent_usd
        if opts.budget_usd is not None and spent > 0 and decided:
            left.append((max(0, int((opts.budget_usd - spent) / (spent / decided))), "--budget-usd"))
        return min(left) if left else None

    def current_window(self) -> Window:
        run, noise = self.scheduler.run, self.scheduler.state.noise
        band = noise.band(len(noise.runs(run.state.best_commit)), run.options.confidence, run.options.max_runs)
        direction = Direction.parse(run.target.direction)
        return window(band, kept_gains(run.ledger.rows, direction), self.remaining())

    async def after_decision(self) -> None:
        run = self.scheduler.run
        if run.steering.stopping:
            return
        rows = run.ledger.rows
        decided = sum(1 for r in rows if r.exp not in (0, None) and r.status != ev.STATUS_VETO)
        dry = since_keep(rows, self.acted_at)
        win = self.current_window()
        if dry < win.n:
            return
        self.acted_at = decided
        action = run.options.on_plateau or ""
        done = await self._act(action)
        run.emit(ev.Plateau(window=win.n, decided=decided, why=win.why, action=action, done=done))
        if action == "stop":
            run.stop(f"plateau: no keep in the last {win.n} decided experiments ({win.why}); "
                        "stopping with the budget left")

    async def _act(self, action: str) -> str:
        run = self.scheduler.run
        if action == "stop":
            return "stopping the night; the budget left is kept"
        if action == "combine":
            near = near_misses(run)
            if len(near) < 2:
                return f"{len(near)} near-miss(es) within the noise band of the best: nothing to combine"
            self.combine_asked += 1
            self.scheduler.notify()
            return f"trying {len(near)} near-misses together: " + ", ".join(f"exp {n.exp}" for n in near)
        if action == "explore":
            said: list[str] = []
            widen = getattr(run.strategy, "explore", None)
            if widen is not None:
                said.append(widen(EXPLORE_FACTOR))
            self.replan = True
            said.append("the next proposal asks the proposer to re-plan (a team's planner plans again)")
            return "; ".join(said)
        return "noticed only (set --on-plateau explore, combine or stop to act on it)"
