"""Search beyond one greedy lineage: a tree of experiments, and islands that
trade their best.

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

Islands (MAP-Elites / OpenEvolve-like, without the feature map): K
sub-populations grow separately from the baseline, each greedily from its own
best; proposals go to the islands in turn, so with several slots every GPU
works on a different line. Every M decided experiments the best of each
island migrates to its neighbour (a ring). Migration is recomputed from the
decision order, so it needs no state of its own.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

from ar_tui.core import events as ev
from ar_tui.core.direction import Direction
from ar_tui.core.engine.strategy import (
    DISCARD,
    FORCED_KEEP_RULE,
    KEEP,
    Base,
    GreedyStrategy,
    Judging,
    Strategy,
    Verdict,
    judge_against_best,
)

if TYPE_CHECKING:
    from ar_tui.core.engine.parts import Candidate
    from ar_tui.core.engine.state import Node, ResearchState

EXPLORATION = 1.5
# A node more than this many noise units worse than the best is never chosen
# (its bound cannot reach the best's in any run of realistic length): pruned.
PRUNE_UNITS = 8.0
REMEASURE_AT = 2  # re-measure before a single-run node's 2nd child


def _scale(state: "ResearchState") -> float:
    """The unit gaps are measured in: the noise sd, else 1% of the baseline."""
    sd = state.noise.sd
    if sd:
        return sd
    reference = state.baseline_metric if state.baseline_metric else state.best_metric
    return abs(reference) * 0.01 if reference else 1.0


def _gap(state: "ResearchState", node: "Node", direction: Direction) -> float:
    """How far a node is behind the best, in noise units (0 for the best, >0 worse)."""
    assert node.metric is not None and state.best_metric is not None
    return -direction.improvement(node.metric, state.best_metric) / _scale(state)


def _measured(state: "ResearchState") -> list["Node"]:
    return [n for n in state.nodes.values() if n.metric is not None and n.status in (ev.STATUS_KEEP, ev.STATUS_DISCARD)]


def _judge_against_best(state: "ResearchState", cand: "Candidate", judging: Judging) -> Verdict:
    """Population strategies never go stale: a node is judged against the global best."""
    assert cand.runs and state.best_metric is not None
    if cand.forced:
        return Verdict(KEEP, FORCED_KEEP_RULE, cand.mean)
    verdict = judge_against_best(state, cand, judging)
    if verdict.action == DISCARD:
        return Verdict(DISCARD, f"{verdict.rule} (kept in the population)", verdict.metric)
    return verdict


def _maybe_remeasure(state: "ResearchState", node: "Node", base: Base) -> Base:
    if node.exp != 0 and len(node.runs) == 1 and node.children + 1 >= REMEASURE_AT:
        return Base(node.commit, node.exp, base.island, remeasure=node.exp)
    return base


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
        nodes = [n for n in _measured(state) if n.exp not in state.remeasuring]
        if not nodes or state.best_metric is None:
            return Base(state.best_commit, state.best_exp)
        total = sum(n.children for n in nodes)

        def bound(node: "Node") -> tuple[float, int]:
            bonus = self.exploration * math.sqrt(math.log(total + 1) / (node.children + 1)) if total else 0.0
            # Ties go to the newer node: the search moves on.
            return -_gap(state, node, self.direction) + bonus, node.exp

        node = max(nodes, key=bound)
        return _maybe_remeasure(state, node, Base(node.commit, node.exp))

    def base_for_run(self, state: "ResearchState", cand: "Candidate") -> str:
        return cand.base_commit

    def explore(self, factor: float) -> str:
        """A plateau's `explore`: nodes other than the best get chosen more often."""
        before = self.exploration
        self.exploration *= factor
        return f"tree exploration {before:g} -> {self.exploration:g}"

    def decide(self, state: "ResearchState", cand: "Candidate", judging: Judging) -> Verdict:
        return _judge_against_best(state, cand, judging)

    def live_nodes(self, state: "ResearchState", judging: Judging) -> set[int]:
        if state.best_metric is None:
            return set()
        return {n.exp for n in _measured(state) if _gap(state, n, self.direction) <= PRUNE_UNITS}


class IslandStrategy:
    name = "islands"

    def __init__(self, direction: str = "min", islands: int = 2, migrate_every: int = 8, **_) -> None:
        self.direction = Direction(direction)
        self.islands = max(1, int(islands))
        self.migrate_every = max(1, int(migrate_every))

    def explore(self, factor: float) -> str:
        """A plateau's `explore`: the islands trade their best more often."""
        before = self.migrate_every
        self.migrate_every = max(1, int(self.migrate_every / factor))
        return f"islands migrate every {self.migrate_every} decided experiments (was {before})"

    def island_for(self, exp: int) -> int:
        return (exp - 1) % self.islands

    def members(self, state: "ResearchState") -> dict[int, set[int]]:
        """Island -> node numbers, migrants included, replayed in decision order."""
        members: dict[int, set[int]] = {i: {0} if 0 in state.nodes else set() for i in range(self.islands)}
        decided = 0
        for row in state.history:
            node = state.nodes.get(row.exp)
            if row.exp == 0 or node is None:
                continue
            if node.island is not None and node.island in members:
                members[node.island].add(node.exp)
            decided += 1
            if decided % self.migrate_every == 0 and self.islands > 1:
                bests = {i: self._best(state, m) for i, m in members.items()}
                for i, best in bests.items():
                    if best is not None:
                        members[(i + 1) % self.islands].add(best.exp)
        return members

    def _best(self, state: "ResearchState", exps: set[int]) -> "Node | None":
        nodes = [state.nodes[e] for e in exps if e in state.nodes and state.nodes[e].metric is not None
                 and state.nodes[e].status in (ev.STATUS_KEEP, ev.STATUS_DISCARD)]
        if not nodes:
            return None
        sign = self.direction.sign()
        return max(nodes, key=lambda n: (sign * (n.metric or 0.0), -n.exp))

    def base_for_proposal(self, state: "ResearchState") -> Base:
        island = self.island_for(state.next_exp)
        members = self.members(state).get(island, set()) - state.remeasuring
        node = self._best(state, members)
        if node is None:
            return Base(state.best_commit, state.best_exp, island)
        return _maybe_remeasure(state, node, Base(node.commit, node.exp, island))

    def base_for_run(self, state: "ResearchState", cand: "Candidate") -> str:
        return cand.base_commit

    def decide(self, state: "ResearchState", cand: "Candidate", judging: Judging) -> Verdict:
        return _judge_against_best(state, cand, judging)

    def live_nodes(self, state: "ResearchState", judging: Judging) -> set[int]:
        bests = (self._best(state, m) for m in self.members(state).values())
        return {n.exp for n in bests if n is not None}


STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "greedy": lambda **_: GreedyStrategy(),
    "tree": TreeStrategy,
    "islands": IslandStrategy,
}
