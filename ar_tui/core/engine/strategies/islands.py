"""Islands (MAP-Elites / OpenEvolve-like, without the feature map): K
sub-populations grow separately from the baseline, each greedily from its own
best; proposals go to the islands in turn, so with several slots every GPU
works on a different line. Every M decided experiments the best of each
island migrates to its neighbour (a ring). Migration is recomputed from the
decision order, so it needs no state of its own. The rules it shares with the
tree are in `tree`'s docstring.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ar_tui.core import events as ev
from ar_tui.core.config import RunOption, positive_int
from ar_tui.core.direction import Direction
from ar_tui.core.engine.strategies.base import Base, Judging, Verdict, judge_in_population, maybe_remeasure

if TYPE_CHECKING:
    from ar_tui.core.engine.parts import Candidate
    from ar_tui.core.engine.state import Node, ResearchState


MIGRATE_EVERY = 8
OPTIONS = (
    RunOption("islands", "islands for --strategy islands (default: one per slot, at least 2)", type=positive_int),
    RunOption("migrate_every", f"islands: decided experiments between migrations (default {MIGRATE_EVERY})",
              type=positive_int, default=MIGRATE_EVERY),
)


class IslandStrategy:
    name = "islands"

    def __init__(self, direction: str = "min", islands: int | None = 2, migrate_every: int = MIGRATE_EVERY,
                 slots: int = 1, **_) -> None:
        self.direction = Direction(direction)
        # Not given: one island per slot, so that every slot works on its own line.
        self.islands = max(1, int(islands or max(2, slots)))
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
        return maybe_remeasure(state, node, Base(node.commit, node.exp, island))

    def base_for_run(self, state: "ResearchState", cand: "Candidate") -> str:
        return cand.base_commit

    def decide(self, state: "ResearchState", cand: "Candidate", judging: Judging) -> Verdict:
        return judge_in_population(state, cand, judging)

    def live_nodes(self, state: "ResearchState", judging: Judging) -> set[int]:
        bests = (self._best(state, m) for m in self.members(state).values())
        return {n.exp for n in bests if n is not None}
