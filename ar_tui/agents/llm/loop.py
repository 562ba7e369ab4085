"""The tool loop: one role's conversation with its model.

A `ToolLoop` sends the turns through any `ModelClient`, runs the text editor
against its `Workspace`, hands every other tool call to the role's handler,
and ends when the handler says so (a worker's `run_experiment`, a reviewer's
`review`) or, for a role that just edits (the planner), when the model ends
its turn. `worker_loop` builds the conversation that implements one change
and submits it: the single agent's, and a team worker's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from ar_tui.agents.llm import prompt, tools
from ar_tui.agents.llm.client import (
    CONTEXT_EXCEEDED,
    MAX_TOKENS,
    PAUSE_TURN,
    REFUSAL,
    AgentConfigError,
    Call,
    ModelClient,
    ToolCall,
    Turn,
    one_line,
)
from ar_tui.core import events as ev
from ar_tui.core.proposer import Proposal, ProposalContext, ProposalFailed
from ar_tui.core.workspace import EDITOR_TOOL_NAME, Workspace, WorkspaceError

# End-of-turn replies without the finishing tool call before the conversation is given up.
MAX_REMINDERS = 1
# pause_turn replies in a row before the conversation is given up.
MAX_PAUSES = 5


@dataclass
class ToolOutcome:
    output: str  # the tool result the model reads
    is_error: bool
    summary: str  # one line for the event: command and path, never contents
    line: str | None = None  # the event's result line, when it differs from `output`
    done: Any = None  # not None: the conversation's result


# A role's handler for its own tools: (call, an edit in this reply failed) -> outcome.
Handler = Callable[[ToolCall, bool], ToolOutcome]


class ToolLoop:
    def __init__(
        self,
        client: ModelClient,
        call: Call,
        *,
        system: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        messages: list[dict[str, Any]],
        workspace: Workspace | None = None,
        handler: Handler | None = None,
        finish_tool: str | None = None,  # None: the conversation ends with the model's turn
        max_tool_calls: int = 30,
        max_tokens: int = 8192,
        tool_choice: str | None = None,  # a tool the model must call
    ) -> None:
        self.client = client
        self.call = call
        self.system = system
        self.tools = tools
        self.messages = messages
        self.workspace = workspace
        self.handler = handler
        self.finish_tool = finish_tool
        self.max_tool_calls = max_tool_calls
        self.max_tokens = max_tokens
        self.tool_choice = tool_choice
        self.tool_calls = 0
        self.reminders = 0
        self.pauses = 0
        self.pending: list[dict[str, Any]] = []  # results of the finishing reply, not yet sent

    def fail(self, reason: str) -> ProposalFailed:
        return ProposalFailed(reason, float(self.call.cost))

    def resume_with(self, text: str) -> None:
        """Continue a finished conversation: the finishing reply's results, then `text`."""
        add_user_content(self.messages, [*self.pending, {"type": "text", "text": text}])
        self.pending = []
        self.reminders = 0

    async def run(self) -> Any:
        """The finishing tool's result, or None when the model ended its turn
        and no finishing tool is needed."""
        # The client-side tools; a server tool (web search) runs on the API's side.
        names = [t["name"] for t in self.tools if t.get("type") != tools.WEB_SEARCH_TOOL["type"]]
        while True:
            response = await self.client.send(self.call, Turn(
                system=self.system, tools=self.tools, messages=prompt.with_turn_breakpoint(self.messages),
                max_tokens=self.max_tokens, tool_choice=self.tool_choice))
            if response.content:
                self.messages.append({"role": "assistant", "content": response.content})
            stop = response.stop_reason
            if stop == REFUSAL:
                raise self.fail("the model refused to answer")
            if stop == CONTEXT_EXCEEDED:
                raise self.fail("the conversation outgrew the model's context window")
            if stop == PAUSE_TURN:
                # The API paused a long turn; sending it back lets the model continue it.
                self.pauses += 1
                if self.pauses > MAX_PAUSES:
                    raise self.fail(f"the model paused its turn {MAX_PAUSES} times in a row")
                continue
            self.pauses = 0
            if not response.tool_calls:
                if self.finish_tool is None and stop != MAX_TOKENS:
                    return None
                self._remind(cut_off=stop == MAX_TOKENS)
                continue
            results, done = self._run_tools(response.tool_calls, names)
            if done is not None:
                self.pending = results
                return done
            if self.tool_calls >= self.max_tool_calls:
                if self.finish_tool is None:
                    return None
                raise self.fail(f"used the cap of {self.max_tool_calls} tool calls without calling {self.finish_tool}")
            if stop == MAX_TOKENS:
                results.append({"type": "text", "text": "Your reply hit the output limit and was cut off; keep replies short."})
            add_user_content(self.messages, results)

    def _remind(self, *, cut_off: bool) -> None:
        if self.reminders >= MAX_REMINDERS:
            if self.finish_tool is None:
                raise self.fail("the model's reply was cut off twice")
            raise self.fail(f"the model ended its turn without calling {self.finish_tool}")
        self.reminders += 1
        note = "Your reply hit the output limit and was cut off. " if cut_off else ""
        if self.finish_tool == tools.RUN_TOOL_NAME:
            ask = f"Make your change with {EDITOR_TOOL_NAME} now, briefly, then call {tools.RUN_TOOL_NAME}. " \
                  "This experiment ends without a result otherwise."
        elif self.finish_tool is not None:
            ask = f"Call {self.finish_tool} now."
        else:
            ask = "Finish briefly."
        add_user_content(self.messages, [{"type": "text", "text": f"{note}{ask}"}])

    def _run_tools(self, calls: list[ToolCall], names: list[str]) -> tuple[list[dict[str, Any]], Any]:
        results: list[dict[str, Any]] = []
        done: Any = None
        edit_failed = False
        for call in calls:
            if done is not None:
                # Edits after the submission would not be part of what was described.
                self._result(results, call, ToolOutcome(f"ignored: it came after {self.finish_tool}", True, "ignored"))
                continue
            if self.tool_calls >= self.max_tool_calls:
                self._result(results, call, ToolOutcome(
                    f"not run: the cap of {self.max_tool_calls} tool calls is used up", True, "cap reached"))
                continue
            self.tool_calls += 1
            if call.input_error is not None:
                outcome = ToolOutcome(call.input_error, True, "invalid input")
                edit_failed = True
            elif not isinstance(call.input, dict):
                outcome = ToolOutcome("input must be a JSON object", True, "invalid input")
                edit_failed = True
            elif call.name == EDITOR_TOOL_NAME and self.workspace is not None:
                outcome = self._edit(call.input)
                edit_failed = edit_failed or outcome.is_error
            elif self.handler is not None and call.name in names:
                outcome = self.handler(call, edit_failed)
            else:
                outcome = ToolOutcome(f"unknown tool {call.name!r}; the tools are {' and '.join(names)}", True,
                                      f"unknown tool {call.name}")
            self._result(results, call, outcome)
            done = outcome.done
        return results, done

    def _edit(self, params: dict[str, Any]) -> ToolOutcome:
        assert self.workspace is not None
        summary = tools.edit_summary(params)
        try:
            output, line = tools.edit(self.workspace, params)
        except WorkspaceError as exc:
            return ToolOutcome(str(exc), True, summary)
        except (OSError, ValueError) as exc:
            # A path the file system rejects (a NUL byte) or a full disk: the
            # model is told, the loop goes on.
            return ToolOutcome(f"the edit failed: {exc}", True, summary)
        return ToolOutcome(output, False, summary, line)

    def _result(self, results: list[dict[str, Any]], call: ToolCall, outcome: ToolOutcome) -> None:
        redact = self.client.redact
        output = redact(outcome.output)
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call.id, "content": output}
        if outcome.is_error:
            block["is_error"] = True
        results.append(block)
        shown = outcome.line if outcome.line is not None else output
        self.call.emit(ev.AgentToolCall(
            exp=self.call.exp,
            name=call.name,
            summary=one_line(redact(outcome.summary)),
            is_error=outcome.is_error,
            result=one_line(redact(shown)),
            role=self.call.role,
        ))


def submission_handler(workspace: Workspace, before: dict[str, str | None], call: Call) -> Handler:
    """A worker's `run_experiment`: refused while an edit of the same reply
    failed or nothing changed; otherwise the conversation's Proposal."""

    def handle(tool_call: ToolCall, edit_failed: bool) -> ToolOutcome:
        description, rationale, problem = tools.submission(tool_call.input)
        if problem is None and edit_failed:
            problem = "not submitted: an edit in this reply failed; fix it first, then call run_experiment again"
        if problem is None and tools.snapshot(workspace) == before:
            problem = "not submitted: the editable files are unchanged; make a change first"
        summary = f"run_experiment: {description or '(no description)'}"
        if problem is not None:
            return ToolOutcome(problem, True, summary)
        return ToolOutcome("submitted", False, summary,
                           done=Proposal(description=description, rationale=rationale,
                                         cost_usd=float(call.cost), usage=call.usage))

    return handle


def editor_kind(client: ModelClient, editor_tool: str | None = None) -> str:
    """Claude models on the Anthropic API get its built-in text editor tool;
    other models (behind a Messages API server such as Ollama, llama.cpp or
    vLLM, or any other API) know only tools with a schema.
    AR_TUI_EDITOR_TOOL overrides the guess."""
    guess = "builtin" if client.api == "anthropic" and "claude" in client.model.lower() else "custom"
    kind = editor_tool or os.environ.get("AR_TUI_EDITOR_TOOL") or guess
    if kind not in ("builtin", "custom"):
        raise AgentConfigError(f"editor tool must be builtin or custom, not {kind!r}")
    return kind


def worker_loop(client: ModelClient, call: Call, ctx: ProposalContext, workspace: Workspace, program: str, *,
                editor: str, extra: list[dict[str, Any]] | None = None,
                system: list[dict[str, Any]] | None = None, anchor: prompt.FilesAnchor | None = None,
                after_files: dict[str, Any] | None = None,
                max_tool_calls: int = 30, max_tokens: int = 8192) -> ToolLoop:
    """The conversation that implements one change and submits it; `extra`
    blocks (a team worker's assignment) follow the situation, `system`
    replaces program.md's blocks (a team worker's carry its role), and
    `after_files` (a team worker's notes, with a breakpoint of its own) sits
    between the files and the situation."""
    opening = prompt.opening_message(ctx, workspace, anchor, after_files)
    if extra:
        opening["content"] = [*opening["content"], *extra]
    before = tools.snapshot(workspace)
    worker_tools = tools.worker_tools(editor)
    if after_files is not None and after_files.get("cache_control"):
        # The API allows four breakpoints: system, files, notes and the turn's.
        # The tools' own is the one to spare, since the system prompt after
        # them is as fixed as they are and its breakpoint caches both.
        worker_tools = [{k: v for k, v in t.items() if k != "cache_control"} for t in worker_tools]
    return ToolLoop(client, call, system=system or prompt.system_blocks(program, ctx.target),
                    tools=worker_tools, messages=[opening], workspace=workspace,
                    handler=submission_handler(workspace, before, call), finish_tool=tools.RUN_TOOL_NAME,
                    max_tool_calls=max_tool_calls, max_tokens=max_tokens)


def add_user_content(messages: list[dict[str, Any]], blocks: list[dict[str, Any]]) -> None:
    """Append to the last user message if there is one at the end (the API
    wants roles to alternate), else start a new one."""
    if messages and messages[-1]["role"] == "user":
        messages[-1] = {**messages[-1], "content": [*messages[-1]["content"], *blocks]}
    else:
        messages.append({"role": "user", "content": blocks})
