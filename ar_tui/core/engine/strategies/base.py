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
from ar_tui.core.decisions import DEFAULT_CONFIDENCE, NO_MIN_EFFECT, MinEffect, Verdict, decide
from ar_tui.core.direction import Direction

if TYPE_CHECKING:
    from ar_tui.core.engine.parts import Candidate
    from ar_tui.core.engine.state import Node, ResearchState

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


def judge_against_best(state: "ResearchState", cand: "Candidate", judging: Judging) -> Verdict:
    """The candidate's runs against the best's (the mean of all its runs);
    the statistics and the policy live in ar_tui.core.decisions."""
    assert state.best_metric is not None
    best_runs = state.noise.runs(state.best_commit) or [state.best_metric]
    return decide(cand.runs, best_runs, state.noise, judging.direction, judging.confidence, judging.max_runs,
                  judging.min_effect, judging.metric_name,
                  max_best_runs=len(best_runs) if judging.best_runs_capped else None)


# ---------------------------------------------------------------------- shared by the population strategies

REMEASURE_AT = 2  # re-measure before a single-run node's 2nd child


def noise_unit(state: "ResearchState") -> float:
    """The unit gaps are measured in: the noise sd, else 1% of the baseline."""
    sd = state.noise.sd
    if sd:
        return sd
    reference = state.baseline_metric if state.baseline_metric else state.best_metric
    return abs(reference) * 0.01 if reference else 1.0


def gap_to_best(state: "ResearchState", node: "Node", direction: Direction) -> float:
    """How far a node is behind the best, in noise units (0 for the best, >0 worse)."""
    assert node.metric is not None and state.best_metric is not None
    return -direction.improvement(node.metric, state.best_metric) / noise_unit(state)


def measured_nodes(state: "ResearchState") -> list["Node"]:
    return [n for n in state.nodes.values() if n.metric is not None and n.status in (ev.STATUS_KEEP, ev.STATUS_DISCARD)]


def judge_in_population(state: "ResearchState", cand: "Candidate", judging: Judging) -> Verdict:
    """Population strategies never go stale: a node is judged against the global best."""
    assert cand.runs and state.best_metric is not None
    if cand.forced:
        return Verdict(KEEP, FORCED_KEEP_RULE, cand.mean)
    verdict = judge_against_best(state, cand, judging)
    if verdict.action == DISCARD:
        return Verdict(DISCARD, f"{verdict.rule} (kept in the population)", verdict.metric)
    return verdict


def maybe_remeasure(state: "ResearchState", node: "Node", base: Base) -> Base:
    if node.exp != 0 and len(node.runs) == 1 and node.children + 1 >= REMEASURE_AT:
        return Base(node.commit, node.exp, base.island, remeasure=node.exp)
    return base
