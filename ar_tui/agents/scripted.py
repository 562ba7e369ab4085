"""A proposer that replays scripted edits: deterministic, for tests, benchmarks
and demos. It is a real implementation of the protocol: it edits through the
same `Workspace` as the agents and takes time to "think" when asked to."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from ar_tui.core import events as ev
from ar_tui.core.proposer import Emit, Proposal, ProposalContext, ProposalFailed
from ar_tui.core.workspace import Workspace, WorkspaceError


@dataclass
class ScriptStep:
    description: str
    old: str
    new: str
    path: str = "train.py"
    rationale: str = ""


class ScriptedProposer:
    name = "scripted"
    model = None

    def __init__(self, steps: list[ScriptStep], think_s: float = 0.0) -> None:
        self.steps = list(steps)
        self.think_s = think_s
        # The latest contexts it was given, for tests to inspect (bounded: a
        # benchmark of a thousand experiments must not measure this list).
        self.calls: deque[ProposalContext] = deque(maxlen=20)

    async def propose(self, ctx: ProposalContext, workspace: Workspace, emit: Emit) -> Proposal:
        self.calls.append(ctx)
        if ctx.gate is not None:
            await ctx.gate()
        if self.think_s:
            await asyncio.sleep(self.think_s)
        if ctx.adapt_diff:
            # Adapting after a conflict: replay the same intent on the new best.
            step = next((s for s in self._used if s.description == ctx.adapt_description), None)
            if step is None:
                raise ProposalFailed("cannot adapt an unknown step")
        else:
            if not self.steps:
                raise ProposalFailed("the script has no more steps")
            step = self.steps.pop(0)
            self._used.append(step)
        emit(ev.AgentText(exp=ctx.exp, text=f"trying: {step.description}\n"))
        try:
            if ctx.adapt_diff:
                text = workspace.read(step.path)
                key = step.new.split("=")[0]
                line = next((ln for ln in text.splitlines() if ln.startswith(key)), None)
                if line is None:
                    raise ProposalFailed("nothing to adapt")
                workspace.str_replace(step.path, line, step.new)
            else:
                workspace.str_replace(step.path, step.old, step.new)
        except WorkspaceError as exc:
            emit(ev.AgentToolCall(exp=ctx.exp, name="str_replace", summary=step.path, is_error=True, result=str(exc)))
            raise ProposalFailed(str(exc)) from None
        emit(ev.AgentToolCall(exp=ctx.exp, name="str_replace", summary=step.path, result="ok"))
        return Proposal(description=step.description, rationale=step.rationale)

    @property
    def _used(self) -> list[ScriptStep]:
        if not hasattr(self, "_used_steps"):
            self._used_steps: list[ScriptStep] = []
        return self._used_steps
