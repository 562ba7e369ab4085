"""`--agent hybrid`: an LLM for structure, a sampler for the knobs.

Claude (or the team) proposes structural changes: architecture, optimiser,
the shape of the schedule. Between them the offline search tunes the numeric
knobs of the current best (the engine hands every proposer the best's files).
Which of the two gets the next experiment is a UCB bandit's choice on
improvement per dollar and per training hour (`allocation.py`), rebuilt from
the ledger's `proposer` column at every proposal, so a resumed run allocates
as this one would.

Claude is told what the sampler found: the sampler's experiments reach it
marked `[knob sampler]` in the history it is shown, kept values included. The
sampler is re-based when Claude's kept change alters the knob set or the code
around it: the Optuna search starts a new study from the current best (see
`offline/study.py`), and says so in the agent pane.
"""

from __future__ import annotations

import math
from dataclasses import replace

from ar_tui.agents.allocation import DEFAULT_EXPLORATION, DEFAULT_USD_PER_TRAIN_HOUR, UCBBandit
from ar_tui.agents.offline import OfflineProposer, parse_description
from ar_tui.core.direction import Direction
from ar_tui.core.events import AgentText, Notice
from ar_tui.core.proposer import Emit, Proposal, ProposalContext, ProposalFailed, Proposer, ProposerStopped, ResultRow
from ar_tui.core.workspace import Workspace

SAMPLER = "sampler"
STRUCTURE = "structure"
SAMPLER_MARK = "[knob sampler] "


class HybridProposer:
    name = "hybrid"

    def __init__(self, structural: Proposer, sampler: OfflineProposer | None = None, *,
                 usd_per_train_hour: float = DEFAULT_USD_PER_TRAIN_HOUR,
                 exploration: float = DEFAULT_EXPLORATION) -> None:
        self.structural = structural
        self.sampler = sampler or OfflineProposer()
        self.model = getattr(structural, "model", None)
        self.usd_per_train_hour = usd_per_train_hour
        self.exploration = exploration
        # Why the structural side stopped proposing for good in this process
        # (its own stop, not the run's); "" while it proposes. A resumed run
        # asks it again, as that side's own resume would.
        self.structure_stopped = ""

    def arm_of(self, row: ResultRow) -> str | None:
        """Which side proposed a row; None for the baseline, a person's or an
        older ledger's row (no proposer recorded)."""
        if row.exp == 0 or not row.proposer or row.proposer == self.name:
            return None
        return SAMPLER if row.proposer == self.sampler.name else STRUCTURE

    def bandit(self, ctx: ProposalContext) -> UCBBandit:
        """The bandit as the ledger leaves it: every decided experiment of
        either side, rewarded with how much it improved the best."""
        bandit = UCBBandit((SAMPLER, STRUCTURE), usd_per_train_hour=self.usd_per_train_hour,
                           exploration=self.exploration)
        direction = Direction.parse(ctx.target.direction)
        best: float | None = None
        for row in ctx.history:
            loss = direction.loss(row.metric) if row.metric is not None and math.isfinite(row.metric) else None
            arm = self.arm_of(row)
            if arm is not None:
                improved = row.status == "keep" and loss is not None and best is not None
                bandit.reward(arm, best - loss if improved else 0.0, row.cost_usd, row.seconds / 3600.0)
            if row.status == "keep" and loss is not None:
                best = loss
        return bandit

    def told(self, ctx: ProposalContext) -> ProposalContext:
        """The context Claude sees: the sampler's experiments marked as its own."""
        history = [
            replace(row, description=SAMPLER_MARK + row.description) if self.arm_of(row) == SAMPLER else row
            for row in ctx.history
        ]
        return replace(ctx, history=history)

    async def propose(self, ctx: ProposalContext, workspace: Workspace, emit: Emit) -> Proposal:
        def say(text: str) -> None:
            emit(AgentText(exp=ctx.exp, text=text + "\n"))

        if ctx.adapt_description:
            # An earlier proposal re-applied on a newer best goes back to whoever wrote it.
            arm = SAMPLER if parse_description(ctx.adapt_description) else STRUCTURE
        elif self.structure_stopped:
            arm = SAMPLER
            say(f"Hybrid: experiment {ctx.exp} goes to the knob sampler ({self.structural.name} has stopped: "
                f"{self.structure_stopped}).")
        else:
            bandit = self.bandit(ctx)
            arm = bandit.choose()
            say(f"Hybrid: experiment {ctx.exp} goes to the {self._side(arm)} ({self._summary(bandit)}).")
        if arm == SAMPLER:
            try:
                return await self._sampled(ctx, workspace, emit)
            except ProposalFailed as exc:
                if self.structure_stopped:
                    raise
                say(f"The knob sampler has nothing to propose ({exc.reason}); asking {self.structural.name}.")
        try:
            proposal = await self.structural.propose(self.told(ctx), workspace, emit)
        except ProposerStopped as exc:
            if exc.whole_run:
                raise
            self.structure_stopped = exc.reason
            emit(Notice(level="warning", message=f"{self.structural.name} stopped proposing ({exc.reason}); "
                                                 f"the knob sampler goes on alone"))
            return await self._sampled(ctx, workspace, emit)
        proposal.proposer = proposal.proposer or self.structural.name
        return proposal

    async def _sampled(self, ctx: ProposalContext, workspace: Workspace, emit: Emit) -> Proposal:
        proposal = await self.sampler.propose(ctx, workspace, emit)
        proposal.proposer = self.sampler.name
        return proposal

    async def aclose(self) -> None:
        for side in (self.structural, self.sampler):
            close = getattr(side, "aclose", None)
            if close is not None:
                await close()

    def _side(self, arm: str) -> str:
        return "knob sampler" if arm == SAMPLER else f"{self.structural.name} (structure)"

    def _summary(self, bandit: UCBBandit) -> str:
        parts = []
        for arm, score in bandit.scores().items():
            s = bandit.stats[arm]
            shown = "untried" if math.isinf(score) else f"score {score:.3g}"
            parts.append(f"{self._side(arm)}: {s.pulls} runs, improved {s.improvement:.4g}, "
                         f"${s.cost_usd:.2f}, {s.train_hours * 60:.1f} train-min, {shown}")
        return "; ".join(parts)
