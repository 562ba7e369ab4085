"""A research team as one proposer: a planner, a pool of workers, a reviewer.

Cheaper models collaborate where one expensive model worked alone:

- The **planner** keeps the agenda in RUN_DIR/notes.md (ranked hypotheses,
  facts, a do-not-repeat list, "what works here", "how to work here"),
  writing it with the same text editor tool as the workers, in a workspace
  that holds only the notes. It runs at the start, every `plan_every`
  decided experiments and when the open hypotheses run low. It runs as a
  task of its own: a proposal waits for it while its server answers, and
  goes on with the current agenda while its server is down.
- A **worker** takes the best open hypothesis and implements it: the single
  agent's tool loop, with the notes in its system prompt. With several
  worker models, a UCB bandit on improvement per dollar picks which one.
- The **reviewer** sees the change before it trains. The harness's own
  checks come first (the edit applied, the Python parses, it is not an exact
  repeat); then the model calls `review`. `revise` sends the change back to
  its worker once; `reject` ends the proposal as `ProposalRejected`, which
  spends no training time and is written to the events and the notes.
  Rejections in a row mean the queue is bad: every REPLAN_AFTER_REJECTIONS
  of them the planner replaces it, and a streak that outlasts three re-plans
  stops the run with one line (`RejectedInRow`).

Every role's requests go through its own `ModelClient` (its API, its model,
its server: `role=[API:]MODEL[@URL]`) and one shared `Meter`, so
`--budget-usd` covers the whole team; each request's Usage event carries its
role and model, and the engine adds it to the experiment being proposed, so
a row's cost includes every role's share. A worker may instead be an agent
CLI (`worker=claude-code:MODEL`), one session of its own per proposal. Who
is on the team is parsed in `team_spec.py`.
"""

from __future__ import annotations

import ast
import asyncio
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ar_tui.agents import team_prompt
from ar_tui.agents.allocation import UCBBandit
from ar_tui.agents.llm import make_model_client, prompt, tools
from ar_tui.agents.llm.client import AgentConfigError, Call, Meter, ModelClient, ToolCall
from ar_tui.agents.llm.loop import ToolLoop, ToolOutcome, editor_kind, worker_loop
from ar_tui.agents.notes import NOTES_FILE, PROGRAM_PROPOSAL_FILE, TeamMemory
from ar_tui.agents.team_spec import RoleModel, TeamSpec, parse_team, team_from_table
from ar_tui.core import events as ev
from ar_tui.core.proposer import (
    Emit,
    Proposal,
    ProposalContext,
    ProposalFailed,
    ProposalRejected,
    ProposerStopped,
    ResultRow,
)
from ar_tui.core.workspace import Workspace

DEFAULT_PLAN_EVERY = 8
LOW_HYPOTHESES = 2  # fewer open hypotheses than this: plan again
PLANNER_TOOL_CALLS = 12
REVIEW_TOKENS = 1024
# Rejections in a row say the queue of hypotheses is bad, not that the night is
# over: after every REPLAN_AFTER_REJECTIONS of them the planner replaces the
# queue, and only a streak that outlasts three re-plans stops the run.
REPLAN_AFTER_REJECTIONS = 3
MAX_REJECTIONS_IN_ROW = 12


class RejectedInRow(ProposerStopped):
    """The reviewer turned down every proposal through several re-plans: the
    team is not converging on anything worth training. A planned stop, with
    its one line; resuming starts a new streak."""

    error = False
    whole_run = False  # under --agent hybrid the sampler goes on


@dataclass
class _Review:
    verdict: str
    reason: str
    by: str


class TeamProposer:
    name = "team"

    def __init__(
        self,
        spec: TeamSpec,
        *,
        program: str,
        run_dir: Path,
        api_key: str | None = None,  # the Anthropic roles' key; other APIs read their own variable
        base_url: str | None = None,
        plan_every: int = DEFAULT_PLAN_EVERY,
        web_search: bool = False,
        prices: dict | None = None,
        retry_base_s: float = 1.0,
        retry_cap_s: float = 60.0,
        max_tool_calls: int = 30,
        max_tokens: int = 8192,
        editor_tool: str | None = None,
    ) -> None:
        if plan_every < 1:
            raise AgentConfigError("--plan-every must be at least 1")
        self.spec = spec
        self.model = str(spec)
        self.program = program
        self.plan_every = plan_every
        self.web_search = web_search
        self.max_tool_calls = max_tool_calls
        self.max_tokens = max_tokens
        self._editor_tool = editor_tool
        self.memory = TeamMemory(run_dir)
        self.meter = Meter()
        self._runtimes: dict[str, Any] = {}  # the workers that are agent CLIs, by str(member)
        self._base_url = base_url
        # One client per (API, model, server): roles on the same one share its connections.
        self._clients: dict[tuple[str, str, str | None], ModelClient] = {}
        for member in [*spec.workers, *(m for m in (spec.planner, spec.reviewer) if m)]:
            if member.runtime is not None:
                from ar_tui.agents.cli import cli_runtime

                # --base-url is a Messages API server: Claude Code's, never Codex's.
                url = member.base_url or (base_url if member.runtime == "claude-code" else None)
                self._runtimes[str(member)] = cli_runtime(member.runtime, model=member.model, program=program,
                                                          base_url=url, role="worker")
                continue
            key = self._key(member)
            if key not in self._clients:
                # The Anthropic key never goes to another API's server.
                self._clients[key] = make_model_client(
                    key[0], model=member.model, api_key=api_key if key[0] == "anthropic" else None,
                    base_url=key[2], prices=prices, retry_base_s=retry_base_s, retry_cap_s=retry_cap_s)
        self._workers = {str(w): w for w in spec.workers}
        self._plan_task: asyncio.Task | None = None
        self._plan_call: Call | None = None
        self._anchor = prompt.FilesAnchor()

    def _key(self, member: RoleModel) -> tuple[str, str, str | None]:
        return member.api or "anthropic", member.model, member.base_url or self._base_url

    def client(self, member: RoleModel) -> ModelClient:
        return self._clients[self._key(member)]

    def _call(self, ctx: ProposalContext, role: str, emit: Emit) -> Call:
        return Call(exp=ctx.exp, role=role, emit=emit, meter=self.meter, gate=ctx.gate,
                    prices=dict(getattr(ctx.target, "prices", {})))

    # --- the proposal ------------------------------------------------------

    async def propose(self, ctx: ProposalContext, workspace: Workspace, emit: Emit) -> Proposal:
        self.meter.rebase(ctx.spent_usd, ctx.budget_usd)
        self.memory.ensure_notes()
        self._stop_if_rejections_persist()
        await self._plan_if_due(ctx, emit)
        member = self._pick_worker(ctx)
        hypothesis = self.memory.next_hypothesis()
        if member.runtime is not None:
            return await self._propose_with_runtime(ctx, workspace, emit, member, hypothesis)
        call = self._call(ctx, "worker", emit)
        client = self.client(member)
        editor = editor_kind(client, self._editor_tool)
        loop = worker_loop(client, call, ctx, workspace, self.program, editor=editor,
                           extra=[team_prompt.assignment_block(hypothesis)],
                           system=team_prompt.worker_system(self.program, ctx.target),
                           after_files=team_prompt.notes_block(self.memory.notes()), anchor=self._anchor,
                           max_tool_calls=self.max_tool_calls, max_tokens=self.max_tokens)
        before = tools.snapshot(workspace)
        review_call = self._call(ctx, "reviewer", emit) if self.spec.reviewer else None
        try:
            proposal = await loop.run()
            if review_call is not None:
                proposal = await self._review(ctx, workspace, emit, loop, before, proposal, review_call)
        except ProposalFailed:
            # Failed or rejected, the hypothesis was tried: it leaves the agenda. A stop
            # (budget, key) leaves it open for the resumed run.
            self.memory.assign(ctx.exp, str(member), hypothesis, float(call.cost))
            raise
        self.memory.end_rejection_streak()
        self.memory.assign(ctx.exp, str(member), hypothesis, float(call.cost))
        self._raise_if_planner_stopped(emit)
        proposal.cost_usd = float(call.cost + (review_call.cost if review_call else 0))
        proposal.proposer = f"{member.role}={member.model}"  # the ledger's proposer column: the role and its model
        return proposal

    async def _propose_with_runtime(self, ctx: ProposalContext, workspace: Workspace, emit: Emit,
                                    member: RoleModel, hypothesis: str) -> Proposal:
        """A worker that is an agent CLI: one session with the notes and its
        hypothesis. The reviewer judges the result once: a session is not
        resumed, so its `revise` counts as approval unless ar-tui's own checks
        failed (then the change is rejected)."""
        notes = team_prompt.notes_block(self.memory.notes())
        extra = "\n\n".join([*([notes["text"]] if notes else []),
                              team_prompt.assignment_block(hypothesis)["text"].replace(
                                  f"then call {tools.RUN_TOOL_NAME}", "then finish with the DESCRIPTION line")])
        before = tools.snapshot(workspace)
        cost = 0.0
        try:
            proposal = await self._runtimes[str(member)].propose(ctx, workspace, emit, extra=extra)
            cost = proposal.cost_usd
            if self.spec.reviewer is not None:
                call = self._call(ctx, "reviewer", emit)
                review = await self._verdict(ctx, workspace, before, proposal, call)
                cost += float(call.cost)
                if review.verdict == "revise":
                    review = _Review("reject" if review.by == "checks" else "approve",
                                     f"an agent CLI's session is not revised; {review.reason}", review.by)
                emit(ev.Review(exp=ctx.exp, verdict=review.verdict, reason=review.reason,
                               description=proposal.description, by=review.by))
                if review.verdict == "reject":
                    self.memory.record_rejection(ctx.exp, proposal.description, review.reason)
                    raise ProposalRejected(f"rejected by the reviewer before training: {review.reason}", cost)
        except ProposalFailed as exc:
            self.memory.assign(ctx.exp, str(member), hypothesis, exc.cost_usd or cost)
            raise
        self.memory.end_rejection_streak()
        self.memory.assign(ctx.exp, str(member), hypothesis, cost)
        self._raise_if_planner_stopped(emit)
        proposal.cost_usd = cost
        proposal.proposer = f"{member.role}={member.runtime}:{member.model}"
        return proposal

    async def aclose(self) -> None:
        """End a planner still waiting out its server's outage; call when the run is over."""
        task, self._plan_task = self._plan_task, None
        if task is None:
            return
        if not task.done():
            task.cancel()
        # Retrieved even when it already ended: a planner stopped with the run
        # (RunStopping) is over, not a failure to report.
        await asyncio.gather(task, return_exceptions=True)

    def _stop_if_rejections_persist(self) -> None:
        state = self.memory.state
        if state.rejected_in_row < MAX_REJECTIONS_IN_ROW:
            return
        rejected, replans = state.rejected_in_row, state.replans_in_row
        # Saved before the stop: a resumed run, after the user has looked, starts a new streak.
        self.memory.end_rejection_streak()
        self.memory.save()
        through = f" through {replans} re-plans of the agenda" if replans else ""
        raise RejectedInRow(f"the reviewer rejected {rejected} proposals in a row{through}; nothing it approved "
                            f"was left to train (read notes.md and the reviews, then resume)")

    # --- the planner -------------------------------------------------------

    def _replan_for_rejections(self) -> bool:
        state = self.memory.state
        return state.rejected_in_row >= REPLAN_AFTER_REJECTIONS * (state.replans_in_row + 1)

    def _plan_due(self, ctx: ProposalContext) -> bool:
        if self.spec.planner is None:
            return False
        if self._replan_for_rejections() or ctx.replan:  # ctx.replan: the night plateaued (--on-plateau explore)
            return True
        decided = _decided(ctx.history)
        planned_at = self.memory.state.planned_at
        if planned_at is None:
            return True
        if decided - planned_at >= self.plan_every:
            return True
        return len(self.memory.open_hypotheses()) < LOW_HYPOTHESES and decided > planned_at

    async def _plan_if_due(self, ctx: ProposalContext, emit: Emit) -> None:
        self._raise_if_planner_stopped(emit)
        if self._plan_task is None and self._plan_due(ctx):
            rejected = self.memory.state.rejected_in_row if self._replan_for_rejections() else 0
            if rejected:
                emit(ev.Notice(level="warning", message=f"the reviewer rejected {rejected} proposals in a row; "
                                                        f"the planner replaces the queue of hypotheses"))
            self._plan_call = self._call(ctx, "planner", emit)
            self._plan_task = asyncio.create_task(self._plan(ctx, self._plan_call, rejected), name="ar-tui-planner")
        if self._plan_task is None or self._plan_call is None:
            return
        # Wait for the planner unless its server is down: then the workers go on
        # with the agenda they have, and the planner's turn lands when it can.
        waiting = asyncio.ensure_future(self._plan_call.waiting.wait())
        try:
            await asyncio.wait({self._plan_task, waiting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
        self._raise_if_planner_stopped(emit)

    def _raise_if_planner_stopped(self, emit: Emit) -> None:
        task = self._plan_task
        if task is None or not task.done():
            return
        self._plan_task = None
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, ProposerStopped):
            raise exc
        if exc is not None:
            reason = exc.reason if isinstance(exc, ProposalFailed) else f"{type(exc).__name__}: {exc}"
            emit(ev.Notice(level="warning",
                           message=f"the planner failed ({reason}); the workers go on with the current agenda"))

    async def _plan(self, ctx: ProposalContext, call: Call, rejected_in_row: int = 0) -> None:
        planner = self.spec.planner
        assert planner is not None
        workspace = Workspace(self.memory.run_dir, [NOTES_FILE, PROGRAM_PROPOSAL_FILE], [])
        client = self.client(planner)
        loop = ToolLoop(
            client, call,
            system=team_prompt.planner_system(self.program, ctx.target, self.web_search),
            tools=tools.planner_tools(editor_kind(client, self._editor_tool), self.web_search),
            messages=[team_prompt.planner_message(ctx, self.memory.notes(), self.memory.state.rejected,
                                                  rejected_in_row)],
            workspace=workspace, finish_tool=None, max_tool_calls=PLANNER_TOOL_CALLS, max_tokens=self.max_tokens,
        )
        self.memory.begin_plan(_decided(ctx.history), bool(rejected_in_row))
        try:
            await loop.run()
        finally:
            self.memory.end_plan(_decided(ctx.history), bool(rejected_in_row))

    # --- the worker pool ---------------------------------------------------

    def _pick_worker(self, ctx: ProposalContext) -> RoleModel:
        if len(self._workers) == 1:
            return self.spec.workers[0]
        bandit = UCBBandit(list(self._workers))
        for exp, improvement in _improvements(ctx).items():
            assignment = self.memory.state.assignments.get(exp)
            if assignment is not None:
                bandit.reward(assignment.model, improvement, assignment.cost_usd, train_hours=0.0)
        return self._workers[bandit.choose()]

    # --- the reviewer ------------------------------------------------------

    async def _review(self, ctx: ProposalContext, workspace: Workspace, emit: Emit, loop: ToolLoop,
                      before: dict[str, str | None], proposal: Proposal, call: Call) -> Proposal:
        for round_ in (1, 2):
            review = await self._verdict(ctx, workspace, before, proposal, call)
            if review.verdict == "revise" and round_ == 2:
                if review.by != "checks":
                    # It had its one revision; the model's doubt no longer holds the run up.
                    review = _Review("approve", f"revised once; {review.reason}", review.by)
                else:
                    review = _Review("reject", f"still broken after one revision: {review.reason}", review.by)
            emit(ev.Review(exp=ctx.exp, verdict=review.verdict, reason=review.reason,
                           description=proposal.description, by=review.by))
            if review.verdict == "approve":
                return proposal
            if review.verdict == "reject":
                self.memory.record_rejection(ctx.exp, proposal.description, review.reason)
                raise ProposalRejected(f"rejected by the reviewer before training: {review.reason}",
                                       float(loop.call.cost + call.cost))
            loop.resume_with(f"The reviewer asked for a revision before training: {review.reason}\n"
                             f"Fix the change accordingly, then call {tools.RUN_TOOL_NAME} again.")
            proposal = await loop.run()
        raise AssertionError("unreachable: the second round approves or rejects")

    async def _verdict(self, ctx: ProposalContext, workspace: Workspace, before: dict[str, str | None],
                       proposal: Proposal, call: Call) -> _Review:
        after = tools.snapshot(workspace)
        diff = _diff(before, after)
        if not diff.strip():
            return _Review("revise", "the edit did not apply: the files are unchanged", "checks")
        broken = _syntax_errors(after, before)
        if broken:
            return _Review("revise", f"the file does not parse: {broken}", "checks")
        repeat = _exact_repeat(diff, ctx.history)
        if repeat is not None:
            return _Review("reject", f"exactly the change of exp {repeat.exp} ({repeat.description}, "
                                     f"{repeat.status})", "checks")
        reviewer = self.spec.reviewer
        assert reviewer is not None
        checks = ["the edit applied", "every changed Python file parses", "not an exact repeat"]
        loop = ToolLoop(
            self.client(reviewer), call,
            system=team_prompt.reviewer_system(ctx.target), tools=tools.reviewer_tools(),
            messages=[team_prompt.reviewer_message(ctx, self.memory.notes(), proposal.description,
                                                   proposal.rationale, diff, checks)],
            handler=_review_handler, finish_tool=tools.REVIEW_TOOL_NAME, max_tool_calls=3,
            max_tokens=REVIEW_TOKENS, tool_choice=tools.REVIEW_TOOL_NAME,
        )
        try:
            verdict, reason = await loop.run()
        except ProposalFailed as exc:
            # A reviewer that cannot answer must not hold the run up: the change trains.
            return _Review("approve", f"the reviewer gave no verdict ({exc.reason})", reviewer.model)
        return _Review(verdict, reason or "(no reason given)", reviewer.model)


def _review_handler(call: ToolCall, edit_failed: bool) -> ToolOutcome:
    verdict, reason, problem = tools.verdict_of(call.input)
    if problem is not None:
        return ToolOutcome(problem, True, "review: invalid")
    return ToolOutcome("recorded", False, f"review: {verdict}", done=(verdict, reason))


def _decided(history: list[ResultRow]) -> int:
    return sum(1 for r in history if r.exp != 0)


def _improvements(ctx: ProposalContext) -> dict[int, float]:
    """Each decided experiment's gain over the best before it (0 unless kept)."""
    gains: dict[int, float] = {}
    best: float | None = None
    for row in ctx.history:
        if row.exp != 0:
            gain = 0.0
            if row.status == "keep" and row.metric is not None and best is not None:
                gain = max(0.0, ctx.target.improvement(row.metric, best))
            gains[row.exp] = gain
        if row.status == "keep" and row.metric is not None:
            best = row.metric
    return gains


def _diff(before: dict[str, str | None], after: dict[str, str | None]) -> str:
    parts: list[str] = []
    for rel in sorted(set(before) | set(after)):
        old, new = before.get(rel) or "", after.get(rel) or ""
        if old != new:
            parts.extend(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"a/{rel}", f"b/{rel}"))
    return "".join(parts)


def _syntax_errors(after: dict[str, str | None], before: dict[str, str | None]) -> str:
    for rel, text in after.items():
        if rel.endswith(".py") and text is not None and text != before.get(rel):
            try:
                ast.parse(text, filename=rel)
            except SyntaxError as exc:
                return f"{rel} line {exc.lineno}: {exc.msg}"
    return ""


def _changed_lines(diff: str) -> list[str]:
    return [line for line in diff.splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---")) and line[1:].strip()]


def _exact_repeat(diff: str, history: list[ResultRow]) -> ResultRow | None:
    """A tried experiment whose change was exactly this one (same lines added and removed)."""
    mine = _changed_lines(diff)
    for row in reversed(history):
        if row.exp != 0 and row.diff and _changed_lines(row.diff) == mine:
            return row
    return None


def team_from_settings(settings: Any) -> TeamProposer:
    """The registry's team (`--agent team`, which `--team` implies): the
    `--team`, `--plan-every` and `--web-search` options win over
    autoresearch.toml's `[team]` table and its `plan_every` and `web_search`."""
    table: dict[str, Any] = {}
    if settings.target is not None:
        from ar_tui.core.config import ConfigError, load_target

        try:
            table = load_target(settings.target).team
        except ConfigError:
            pass  # the engine reports a bad autoresearch.toml in its own words
    extra = dict(settings.extra or {})
    text = extra.get("team")
    if not text and not table:
        raise AgentConfigError("--agent team needs --team planner=MODEL,worker=MODEL,reviewer=MODEL "
                               "or a [team] table in autoresearch.toml")
    spec = parse_team(text) if text else team_from_table(table)
    plan_every = extra.get("plan_every")
    if plan_every is None:
        plan_every = table.get("plan_every", DEFAULT_PLAN_EVERY)
    if isinstance(plan_every, bool) or not isinstance(plan_every, int):
        raise AgentConfigError(f"[team] plan_every must be a whole number, not {plan_every!r}")
    web_search = bool(extra.get("web_search") or table.get("web_search", False))
    if settings.run_dir is None or settings.program is None:
        raise AgentConfigError("a team needs a run dir for its notes and the program's instructions")
    return TeamProposer(spec, program=settings.program, run_dir=settings.run_dir, base_url=settings.base_url,
                        plan_every=plan_every, web_search=web_search)
