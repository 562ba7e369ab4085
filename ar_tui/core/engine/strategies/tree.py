"""Search beyond one greedy lineage: a tree of experiments (and, in
`islands`, islands that trade their best).

Both keep every evaluated experiment as a node and answer the strategy's
questions from the research state alone, so they are rebuilt on resume from
the same history and unit-tested without git.

Shared rules:
- `keep` still means "became the new best": a node is kept only when the
  evidence says it beats the global best (the same noise-aware judge as
  greedy), so the branch tip is the best node at every moment. Every other
  evaluated node is a `discard` in results.tsv, yet stays in the population
  and may become a parent.
- No false elites: a node about to be chosen as a parent for the k-th time
  on a single run is re-measured first (with a new seed), so one lucky run
  cannot seed a whole subtree.

Tree (AIDE-like): the parent is the node with the highest upper confidence
bound: its gap to the best, in noise standard deviations (or in 1% steps of
the baseline while the noise is unknown), plus an exploration bonus that
shrinks with the children already tried from it. Near-misses get explored;
a node far worse than the best never is. A crashed node is handed back once
to a proposer that can debug (AIDE's debug step).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ar_tui.core import events as ev
from ar_tui.core.direction import Direction
from ar_tui.core.engine.strategies.base import (
    Base,
    Judging,
    Verdict,
    gap_to_best,
    judge_in_population,
    maybe_remeasure,
    measured_nodes,
)

if TYPE_CHECKING:
    from ar_tui.core.engine.parts import Candidate
    from ar_tui.core.engine.state import Node, ResearchState

EXPLORATION = 1.5
# A node more than this many noise units worse than the best is never chosen
# (its bound cannot reach the best's in any run of realistic length): pruned.
PRUNE_UNITS = 8.0


class TreeStrategy:
    name = "tree"

    def __init__(self, direction: str = "min", debug: bool = False, exploration: float = EXPLORATION, **_) -> None:
        self.direction = Direction(direction)
        self.debug = debug
        self.exploration = exploration

    def base_for_proposal(self, state: "ResearchState") -> Base:
        if self.debug:
            crashed = [n for n in state.nodes.values()
                       if n.status == ev.STATUS_CRASH and not n.debugged and n.exp in state.tails
                       and n.exp not in state.remeasuring]
            if crashed:
                node = max(crashed, key=lambda n: n.exp)
                return Base(node.commit, node.exp, debug_of=node.exp)
        nodes = [n for n in measured_nodes(state) if n.exp not in state.remeasuring]
        if not nodes or state.best_metric is None:
            return Base(state.best_commit, state.best_exp)
        total = sum(n.children for n in nodes)

        def bound(node: "Node") -> tuple[float, int]:
            bonus = self.exploration * math.sqrt(math.log(total + 1) / (node.children + 1)) if total else 0.0
            # Ties go to the newer node: the search moves on.
            return -gap_to_best(state, node, self.direction) + bonus, node.exp

        node = max(nodes, key=bound)
        return maybe_remeasure(state, node, Base(node.commit, node.exp))

    def base_for_run(self, state: "ResearchState", cand: "Candidate") -> str:
        return cand.base_commit

    def explore(self, factor: float) -> str:
        """A plateau's `explore`: nodes other than the best get chosen more often."""
        before = self.exploration
        self.exploration *= factor
        return f"tree exploration {before:g} -> {self.exploration:g}"

    def decide(self, state: "ResearchState", cand: "Candidate", judging: Judging) -> Verdict:
        return judge_in_population(state, cand, judging)

    def live_nodes(self, state: "ResearchState", judging: Judging) -> set[int]:
        if state.best_metric is None:
            return set()
        return {n.exp for n in measured_nodes(state) if gap_to_best(state, n, self.direction) <= PRUNE_UNITS}
