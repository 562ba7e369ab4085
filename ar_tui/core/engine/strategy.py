"""The search strategy: which node the next experiment builds on, and what a
finished run means.

The engine asks a strategy three questions and does the git and queue work
itself:

- `base_for_proposal`: the commit the next proposal starts from;
- `base_for_run`: the commit a candidate's change must sit on when it runs
  (a candidate built on anything else is re-applied there first);
- `decide`: what a finished, measured run means: keep it as the new best,
  discard it, run it again as it is, or re-apply it on a newer base and run
  it again.

A strategy reads the research state and changes nothing: it is pure, so it is
unit-tested in milliseconds without git or processes, and rebuilt on resume
from the same history. Greedy is the original's rules, lifted out of the
engine unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ar_tui.core import events as ev
from ar_tui.core.direction import Direction
from ar_tui.core.decisions import (
    DEFAULT_CONFIDENCE,
    NO_MIN_EFFECT,
    MinEffect,
    decide,
    mean,
)

if TYPE_CHECKING:
    from ar_tui.core.engine.parts import Candidate
    from ar_tui.core.engine.state import ResearchState

KEEP = ev.STATUS_KEEP
DISCARD = ev.STATUS_DISCARD
REAPPLY = "reapply"  # built on a base that is no longer current: rebuild on the new one, run again

@dataclass(frozen=True)
class Base:
    """Where the next proposal grows: a node's commit, and what else to do."""

    commit: str
    exp: int | None  # the node's experiment number (None before the baseline is decided)
    island: int | None = None
    debug_of: int | None = None  # a crashed node handed back to be fixed; `commit` is its code
    # Run this node again first (it is about to seed more of the population on
    # one lucky run); the strategy is asked again afterwards.
    remeasure: int | None = None


@dataclass(frozen=True)
class Verdict:
    action: str  # KEEP, DISCARD, RERUN, REMEASURE_BEST (run the best again, then ask again) or REAPPLY
    rule: str
    metric: float | None = None
    # A forced keep built on a stale parent: re-apply it on the best first;
    # when that conflicts it is discarded with `rebase_failed_rule`.
    rebase: bool = False


@dataclass(frozen=True)
class Judging:
    """What a strategy needs from the run's settings to decide."""

    direction: str
    metric_name: str
    max_runs: int
    confidence: float = DEFAULT_CONFIDENCE
    min_effect: MinEffect = NO_MIN_EFFECT
    # Re-measures of the best are capped at its current runs (one failed).
    best_runs_capped: bool = False


class Strategy(Protocol):
    name: str

    def base_for_proposal(self, state: "ResearchState") -> Base: ...

    def base_for_run(self, state: "ResearchState", cand: "Candidate") -> str: ...

    def decide(self, state: "ResearchState", cand: "Candidate", judging: Judging) -> Verdict: ...

    def live_nodes(self, state: "ResearchState", judging: Judging) -> set[int]:
        """Nodes that may still be chosen as parents: the engine keeps a git ref for each."""
        ...


FORCED_KEEP_RULE = "forced keep by the user"
REBASE_FAILED_RULE = "forced keep, but the change conflicts with a newer best"


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


def judge_against_best(state: "ResearchState", cand: "Candidate", judging: Judging) -> Verdict:
    """The candidate's runs against the best's (the mean of all its runs);
    the statistics and the policy live in ar_tui.core.decisions."""
    assert state.best_metric is not None
    best_runs = state.noise.runs(state.best_commit) or [state.best_metric]
    decision = decide(cand.runs, best_runs, state.noise, judging.direction, judging.confidence,
                      judging.max_runs, judging.min_effect, judging.metric_name,
                      max_best_runs=len(best_runs) if judging.best_runs_capped else None)
    return Verdict(decision.action, decision.rule, decision.metric)


def make_strategy(name: str, **settings) -> Strategy:
    from ar_tui.core.engine.population import STRATEGIES

    try:
        factory = STRATEGIES[name]
    except KeyError:
        from ar_tui.core.errors import UserError

        raise UserError(f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}") from None
    return factory(**settings)
