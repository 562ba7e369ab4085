"""Judging: what the strategy is told when it decides, the noise band the
viewers show, and the sequential design's boundaries, solved ahead of the
decisions that look them up.

The statistics themselves are pure functions in `ar_tui.core.decisions`;
this part applies them to the opened run.
"""

from __future__ import annotations

import asyncio

from ar_tui.core import events as ev
from ar_tui.core.decisions import keep_quantile
from ar_tui.core.engine.opening import Run
from ar_tui.core.engine.parts import Candidate
from ar_tui.core.engine.strategies.base import Judging, Verdict


class Judge:
    def __init__(self, run: Run) -> None:
        self.run = run
        # Bests whose re-measure failed: not asked for again.
        self.remeasure_failed: set[str] = set()

    @property
    def judging(self) -> Judging:
        run = self.run
        return Judging(direction=run.target.direction, metric_name=run.target.metric,
                       max_runs=run.options.max_runs, confidence=run.options.confidence,
                       min_effect=run.target.min_effect,
                       best_runs_capped=run.state.best_commit in self.remeasure_failed)

    def band_looks(self, *best_runs: int) -> list[tuple[int, int, int]]:
        """The (dof, look, best runs) the noise band needs for a best of each
        of `best_runs` runs (the current best's when none is given)."""
        noise = self.run.state.noise
        if noise.sd is None:
            return []
        counts = best_runs or (len(noise.runs(self.run.state.best_commit)),)
        return [(noise.dof, 1, max(1, count)) for count in counts]

    async def solve_design_ahead(self, looks: list[tuple[int, int, int]]) -> None:
        """Solve the sequential design's boundaries for these (dof, look, best
        runs) in a thread: each is a numerical solve (0.1 to 0.5 s, and scipy's
        import the first time) that would otherwise stall the event loop, and
        the app with it. The decision or the band then finds them cached (one
        not foreseen is solved where it is needed, as before)."""
        judging = self.judging

        def solve() -> None:
            for dof, look, best_runs in looks:
                keep_quantile(judging.confidence, judging.max_runs, dof, look=look, best_runs=best_runs)

        if looks:
            await asyncio.to_thread(solve)

    async def solve_ahead_for(self, cand: Candidate) -> None:
        """The boundaries that judging this candidate against the best, and
        the noise band after it (with this best, or with the candidate as the
        new one), will look up: solved in a thread (see `solve_design_ahead`)."""
        noise = self.run.state.noise
        best_runs = max(1, len(noise.runs(self.run.state.best_commit)))
        sd, dof = noise.estimate_without(list(cand.runs))
        looks = [(dof, len(cand.runs), best_runs)] if sd is not None else []
        await self.solve_design_ahead(looks + self.band_looks(best_runs, len(cand.runs)))

    def emit_noise(self) -> None:
        noise, opts = self.run.state.noise, self.run.options
        band = noise.band(len(noise.runs(self.run.state.best_commit)), opts.confidence, opts.max_runs)
        self.run.emit(ev.NoiseEstimate(sd=noise.sd, samples=noise.samples, band=band, dof=noise.dof,
                                       jitter_only=noise.jitter_only, confidence=opts.confidence))

    def verdict(self, cand: Candidate) -> Verdict:
        """What the strategy makes of a finished, measured candidate."""
        return self.run.strategy.decide(self.run.state, cand, self.judging)
