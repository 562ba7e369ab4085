"""The offline proposer: the default when there is no API key, and the
sampler half of `--agent hybrid`.

It finds the knobs of the editable files (`knobs.py`), asks one of two
searches for the next configuration, and writes it through the `Workspace`,
the same path as the Claude agent's text-editor tool calls:

- `classic` (the default): the hand-written coordinate steps and parabola
  fits (`classic.py`);
- `optuna`: Optuna's TPE, or CMA-ES started at the script's own values, over
  the knob space, its study kept in the run dir (`study.py`).

Which one runs is decided per target by what bench/offline_search.py
measured (docs/benchmarks/offline-search.md): `--offline-search`
when the user gives it, else the target's `[offline] search` in
autoresearch.toml, else `classic`. On the synthetic target classic won four
seeds of five; on the forecast example, through the real engine, Optuna's
TPE won four of five and classic none, so examples/forecast names `optuna`.
CPU nanochat, the bundled target, has not been measured, so it keeps classic.

Descriptions are machine-readable (`MATRIX_LR 0.04 -> 0.06`, several changes
joined by `; `, a per-device knob as `DEPTH 4|12 -> 5|13`): both searches
rebuild what they know from them.
"""

from __future__ import annotations

import asyncio

from ar_tui.agents.offline.classic import Search
from ar_tui.agents.offline.descriptions import describe, key, parse_description
from ar_tui.agents.offline.knobs import Knob, Move, Plan, edit_for, find_knobs, format_value, load_knobs
from ar_tui.core.workspace import EDITOR_TOOL_NAME
from ar_tui.core.config import TargetConfig
from ar_tui.core.errors import UserError
from ar_tui.core.events import AgentText, AgentToolCall
from ar_tui.core.proposer import Emit, Proposal, ProposalContext, ProposalFailed
from ar_tui.core.workspace import Workspace, WorkspaceError

SEARCHES = ("optuna", "classic")
DEFAULT_SEARCH = "classic"  # where no measurement says otherwise, see above
DEFAULT_SAMPLER = "tpe"


def _checked(search: str | None, sampler: str | None) -> None:
    from ar_tui.agents.offline.study import SAMPLERS

    if search is not None and search not in SEARCHES:
        raise UserError(f"unknown offline search {search!r}; choose one of: {', '.join(SEARCHES)}")
    if sampler is not None and sampler not in SAMPLERS:
        raise UserError(f"unknown sampler {sampler!r}; choose one of: {', '.join(SAMPLERS)}")


class OfflineProposer:
    """`search` and `sampler` as the user chose them; None (not chosen) is
    the target's `[offline]` table in autoresearch.toml, else the defaults."""

    name = "offline"
    model: str | None = None

    def __init__(self, seed: int = 0, search: str | None = None, sampler: str | None = None) -> None:
        _checked(search, sampler)
        self.seed = seed
        self.search = search
        self.sampler = sampler

    def search_for(self, target: TargetConfig) -> tuple[str, str]:
        """(search, sampler) for a run on `target`: the user's choice, else
        what the target's `[offline]` table names (a benchmark's winner
        there), else DEFAULT_SEARCH and DEFAULT_SAMPLER."""
        table = getattr(target, "offline", None) or {}
        search = self.search or table.get("search") or DEFAULT_SEARCH
        sampler = self.sampler or table.get("sampler") or DEFAULT_SAMPLER
        try:
            _checked(search, sampler)
        except UserError as exc:
            raise ProposalFailed(f"autoresearch.toml [offline]: {exc}") from None
        return search, sampler

    async def propose(self, ctx: ProposalContext, workspace: Workspace, emit: Emit) -> Proposal:
        knobs = load_knobs(workspace)
        if not knobs:
            raise ProposalFailed(
                f"no tunable constants in {', '.join(workspace.editable)}: the offline search needs "
                "module-level numeric assignments such as `LEARNING_RATE = 3e-4`"
            )
        # Rebuilding the search from a long history is pure computation (and
        # file I/O for the study): off the event loop, so the app stays live.
        plan = await asyncio.to_thread(self._plan, knobs, ctx)

        def say(text: str) -> None:
            emit(AgentText(exp=ctx.exp, text=text + "\n"))

        for line in plan.reasoning:
            say(line)
        for move in plan.moves:
            say(move.why + ".")
        changes = await self._apply(plan.moves, workspace, ctx.exp, emit)
        description = describe(changes)
        say(f"Proposal: {description}")
        rationale = " ".join(f"{m.why}." for m in plan.moves)
        return Proposal(description=description, rationale=rationale, proposer=self.name)

    def _plan(self, knobs: list[Knob], ctx: ProposalContext) -> Plan:
        adapted = self._adapted(knobs, ctx)
        if adapted is not None:
            return adapted
        search, sampler = self.search_for(ctx.target)
        if search == "classic":
            return Search(knobs, ctx, self.seed).plan()
        from ar_tui.agents.offline.study import OptunaSearch  # optuna is imported only when used

        return OptunaSearch(knobs, ctx, self.seed, sampler).plan()

    @staticmethod
    def _adapted(knobs: list[Knob], ctx: ProposalContext) -> Plan | None:
        """Re-apply an earlier proposal on a newer best: the same target
        values for the knobs it moved, where they still differ."""
        parsed = parse_description(ctx.adapt_description) if ctx.adapt_description else None
        if not parsed:
            return None
        by_name = {knob.name: knob for knob in knobs}
        moves = []
        for change in parsed:
            knob = by_name.get(change.name)
            if knob is None or key(knob.value) == key(change.new[0]):
                continue
            new = (
                change.new
                if len(change.new) == len(knob.parts)
                else (change.new[0],) + tuple(p.value for p in knob.parts[1:])
            )
            moves.append(Move(knob, new, "adapt", f"re-applying {change.text} on the new best"))
        if not moves:
            return None
        return Plan(
            moves,
            [f"Earlier proposal {ctx.adapt_description!r} no longer applies as written; re-applying its values."],
        )

    async def _apply(self, moves: list[Move], workspace: Workspace, exp: int, emit: Emit) -> list[tuple[str, str, str]]:
        originals = {path: workspace.read(path) for path in {m.knob.path for m in moves}}
        changes: list[tuple[str, str, str]] = []
        try:
            for move in moves:
                source = workspace.read(move.knob.path)
                bare = (
                    move.knob.name.split(":", 1)[-1]
                    if move.knob.name.startswith(f"{move.knob.path}:")
                    else move.knob.name
                )
                fresh = next((k for k in find_knobs(move.knob.path, source) if k.name == bare), None)
                if fresh is None:
                    raise ProposalFailed(f"{move.knob.name} is no longer a constant in {move.knob.path}")
                texts = [format_value(v, part.text, fresh.kind.integer) for v, part in zip(move.new, fresh.parts)]
                old, new = edit_for(source, fresh, texts)
                summary = f"str_replace {move.knob.path} ({move.knob.name})"  # the Claude agent's shape
                try:
                    result = workspace.str_replace(move.knob.path, old, new)
                except WorkspaceError as exc:
                    emit(AgentToolCall(exp=exp, name=EDITOR_TOOL_NAME, summary=summary, is_error=True, result=str(exc)))
                    raise ProposalFailed(f"editing {move.knob.name}: {exc}") from None
                emit(AgentToolCall(exp=exp, name=EDITOR_TOOL_NAME, summary=summary, result=result))
                changes.append((move.knob.name, fresh.text, "|".join(texts)))
            for path in originals:
                text = workspace.read(path)
                compile(text, path, "exec")
        except (ProposalFailed, SyntaxError) as exc:
            for path, text in originals.items():
                workspace.create(path, text)
            if isinstance(exc, SyntaxError):
                raise ProposalFailed(f"the edit left {exc.filename} unparseable: {exc.msg}") from None
            raise
        return changes
