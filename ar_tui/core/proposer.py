"""The proposer protocol: what the engine asks of an agent, and what it gets back.

A proposer is handed a `ProposalContext` (what it may know) and a `Workspace`
(the only way it may touch files), edits the workspace and returns a
`Proposal`. It reports what it is doing through `emit`, never by holding UI
objects. The engine turns the workspace's edits into a diff and a commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable, Protocol

from ar_tui.core.events import Event
from ar_tui.core.evidence import RunEvidence
from ar_tui.core.money.pricing import TokenUsage  # re-exported: proposers report usage in it

if TYPE_CHECKING:
    from ar_tui.core.config import TargetConfig
    from ar_tui.core.workspace import Workspace


@dataclass
class ResultRow:
    """One decided experiment, as the proposer sees it."""

    exp: int
    commit: str
    metric: float | None
    status: str  # keep / discard / crash / veto
    description: str
    rationale: str = ""
    diff: str = ""  # the experiment's change against its parent
    cost_usd: float = 0.0
    parent: int | None = None  # the experiment it was built on (None for the baseline)
    proposer: str = ""  # who proposed it: "offline", "claude", a team role; "" in an older ledger
    seconds: float = 0.0  # training time it took
    evidence: RunEvidence | None = None  # how it trained, read from its log


@dataclass
class ProposalContext:
    exp: int  # the experiment number this proposal will get
    target: "TargetConfig"
    best_metric: float | None
    baseline_metric: float | None
    history: list[ResultRow]  # decided experiments, oldest first
    unseen: list[tuple[int, str]] = field(default_factory=list)  # (exp, description) still running
    last_failure_tail: str = ""  # tail of the last crash log
    noise_sd: float | None = None
    spent_usd: float = 0.0  # the run's spend before this proposal
    budget_usd: float | None = None  # no API request may start once spend reaches it
    # Await before every API request: it returns at once unless the user has
    # paused the run, in which case it waits for resume ("no agent call starts
    # while paused").
    gate: Callable[[], Awaitable[None]] | None = None
    # Set when an earlier proposal no longer applies on the new best: the agent
    # is asked to adapt it, with the conflict shown.
    adapt_description: str = ""
    adapt_diff: str = ""
    adapt_conflict: str = ""
    # Where in the population this proposal grows (tree and island search; for
    # greedy the parent is always the best): the parent's chain of changes from
    # the baseline with their results, the children already tried from that
    # parent (do not repeat them), and a compact summary of the population.
    parent_exp: int | None = None
    lineage: list[ResultRow] = field(default_factory=list)
    siblings: list[ResultRow] = field(default_factory=list)
    population: str = ""
    island: int | None = None
    # Set for a debug step: the crashed experiment to fix, with its log tail;
    # the workspace holds that experiment's code.
    debug_of: int | None = None
    debug_tail: str = ""
    # The run dir, where a proposer may keep its own durable state (the offline
    # search's study journal); None outside a run.
    run_dir: Path | None = None
    # The night has plateaued and --on-plateau explore asks for a wider
    # search: a proposer that plans (a team's planner) plans again now.
    replan: bool = False


@dataclass
class Proposal:
    description: str
    rationale: str = ""
    cost_usd: float = 0.0  # spent on this proposal (0 for the offline proposer)
    usage: TokenUsage = field(default_factory=TokenUsage)
    proposer: str = ""  # who proposed it, for the ledger; "" means the proposer's own name


class ProposalFailed(Exception):
    """This proposal produced nothing runnable; the loop records it and goes on."""

    def __init__(self, reason: str, cost_usd: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cost_usd = cost_usd


class ProposalRejected(ProposalFailed):
    """A reviewer turned the proposal down before it spent training time."""


class ProposerStopped(Exception):
    """The proposer cannot go on (bad key, spend limit, the run stopping): the
    loop stops cleanly, keeping all state so that the run can be resumed.
    `error` says whether the stop is a failure the user must look at."""

    error = True
    # False: what stopped is this proposer's own way of working (a team whose
    # reviewer turns everything down), not the run's key, budget or stop; a
    # proposer with other sides to ask (the hybrid) goes on with those.
    whole_run = True

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BudgetReached(ProposerStopped):
    """The run's --budget-usd is spent: a planned end, not a failure."""

    error = False


class RunStopping(ProposerStopped):
    """The run is stopping (a user's stop while a proposal waited at the gate)."""

    error = False


Emit = Callable[[Event], None]


class Proposer(Protocol):
    name: str  # "offline", "claude"
    model: str | None

    async def propose(self, ctx: ProposalContext, workspace: "Workspace", emit: Emit) -> Proposal:
        """Edit `workspace` and describe the change. Raises ProposalFailed or
        ProposerStopped. Must return only after every edit is on disk."""
        ...

    # Optional: `async def aclose(self) -> None`, which the engine awaits when
    # the run ends, for a proposer that holds tasks or connections of its own.
