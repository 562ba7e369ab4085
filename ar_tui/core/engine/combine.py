"""Near-miss combination: a proposal source any strategy can ask for.

A near-miss is a discarded experiment whose estimate sits within the noise
band of the best: it may have a real gain too small to show on its own, and
two such gains together may clear the band. The source takes the near-misses
never combined before (closest to the best first, at most MAX_COMBINED),
applies each one's change (its commit against its parent) on the best, and
offers what applied as one proposal; the proposer column says `combine`.

The engine asks for a combination when a plateau's `--on-plateau combine`
says so; a strategy asks by having `wants_combination(state) -> bool`.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from ar_tui.core import events as ev
from ar_tui.core.direction import Direction
from ar_tui.core.engine.opening import Run
from ar_tui.core.proposer import Emit, Proposal, ProposalContext, ProposalFailed
from ar_tui.core.records.git import GIT_ERRORS, GitRepo
from ar_tui.core.records.ledger import LedgerRow
from ar_tui.core.workspace import Workspace

COMBINE = "combine"
MAX_COMBINED = 3
_EXP = re.compile(r"\bexp (\d+)\b")


def already_combined(rows: list[LedgerRow], descriptions: list[str]) -> set[int]:
    """Experiments that went into a combination already (decided or in flight)."""
    found: set[int] = set()
    texts = [r.description for r in rows if r.proposer == COMBINE] + descriptions
    for text in texts:
        found.update(int(n) for n in _EXP.findall(text))
    return found


def pick_near_misses(nodes: list, best_metric: float | None, band: float | None, direction: Direction,
                     combined: set[int]) -> list:
    """Discarded nodes within `band` of the best, never combined, closest first."""
    if best_metric is None or band is None:
        return []
    near = [n for n in nodes if n.status == ev.STATUS_DISCARD and n.metric is not None and n.exp not in combined
            and n.exp != 0 and direction.improvement(n.metric, best_metric) > -band]
    near.sort(key=lambda n: -direction.improvement(n.metric, best_metric))
    return near[:MAX_COMBINED]


def near_misses(run: Run) -> list:
    """The opened run's discarded nodes within the noise band of the best, never combined."""
    state, opts = run.state, run.options
    noise = state.noise
    band = noise.band(len(noise.runs(state.best_commit)), opts.confidence, opts.max_runs)
    combined = already_combined(run.ledger.rows, [c.description for c in state.in_flight.values()])
    return pick_near_misses(list(state.nodes.values()), state.best_metric, band,
                            Direction.parse(run.target.direction), combined)


class CombineSource:
    """A proposer that applies near-misses' changes together on the best."""

    name = COMBINE
    model = None

    def __init__(self, git: GitRepo, worktree: Path, picks: list) -> None:
        self.git, self.worktree, self.picks = git, worktree, picks

    async def propose(self, ctx: ProposalContext, workspace: Workspace, emit: Emit) -> Proposal:
        applied: list = []
        for node in self.picks:
            try:
                _, diff = await asyncio.to_thread(self.git.change_of, node.commit)
            except GIT_ERRORS:
                continue
            # A plain apply checks first and leaves the worktree as it was when it fails.
            if await asyncio.to_thread(self.git.apply, self.worktree, diff) is None:
                applied.append(node)
        if len(applied) < 2:
            raise ProposalFailed(f"fewer than two near-misses apply together on the best "
                                 f"(tried {', '.join(f'exp {n.exp}' for n in self.picks)})")
        emit(ev.AgentText(exp=ctx.exp, text=f"combining near-misses {', '.join(f'exp {n.exp}' for n in applied)}\n"))
        description = "combine " + " + ".join(f"exp {n.exp} ({n.description})" for n in applied)
        rationale = ("each was within the noise band of the best on its own and discarded; "
                     "small real gains may add up to one that clears the band")
        return Proposal(description=description, rationale=rationale, proposer=COMBINE)
