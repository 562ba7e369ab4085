"""Greedy: one lineage, the original's rules, lifted out of the engine unchanged."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ar_tui.core.decisions import mean
from ar_tui.core.direction import Direction
from ar_tui.core.engine.strategies.base import (
    DISCARD,
    FORCED_KEEP_RULE,
    KEEP,
    REAPPLY,
    Base,
    Judging,
    Verdict,
    judge_against_best,
)

if TYPE_CHECKING:
    from ar_tui.core.engine.parts import Candidate
    from ar_tui.core.engine.state import ResearchState


class GreedyStrategy:
    """One lineage: every proposal starts from the best, and a run is kept
    only when it beats the best. A candidate whose parent is no longer the
    best (another was kept while it ran) is never kept against that stale
    baseline: if it beat its own parent it is re-applied on the new best and
    run again, so two simultaneous winners are not both kept blindly."""

    name = "greedy"

    def base_for_proposal(self, state: "ResearchState") -> Base:
        return Base(state.best_commit, state.best_exp)

    def base_for_run(self, state: "ResearchState", cand: "Candidate") -> str:
        return state.best_commit

    def decide(self, state: "ResearchState", cand: "Candidate", judging: Judging) -> Verdict:
        assert cand.runs and state.best_metric is not None
        stale = cand.parent != state.best_commit
        if cand.forced:
            return Verdict(KEEP, FORCED_KEEP_RULE, cand.mean, rebase=stale)
        if stale:
            # Against its own parent: worth carrying to the new best only if it beat it.
            parent_runs = state.noise.runs(cand.parent or "") or [state.metric_of.get(cand.parent or "",
                                                                                     state.best_metric)]
            parent = mean(parent_runs)
            if Direction.parse(judging.direction).improvement(cand.mean, parent) <= 0:
                return Verdict(DISCARD, f"{judging.metric_name} {cand.mean:.6f} not better than {parent:.6f} "
                                        f"(against its own parent; a newer best exists)", cand.mean)
            return Verdict(REAPPLY, f"{judging.metric_name} {cand.mean:.6f} beat its parent, but a newer best "
                                    f"was kept while it ran: re-applying it on the new best and running again",
                           cand.mean)
        return judge_against_best(state, cand, judging)

    def live_nodes(self, state: "ResearchState", judging: Judging) -> set[int]:
        return set()  # the branch itself holds the one node greedy builds on
