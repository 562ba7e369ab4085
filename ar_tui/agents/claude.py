"""The Claude agent: proposes experiments through the Anthropic Messages API.

One experiment is one short conversation: the agent is shown program.md, the
files and the results so far (see `prompt.py`), edits the editable files with
Anthropic's text editor tool through the engine's `Workspace`, and ends by
calling `run_experiment`. Responses are streamed, so text and tool calls
become engine events as they arrive.

Overnight, the API will fail. Rate limits, overloads, 5xx and dropped
connections are retried here without end (the SDK's own retries are off so
that every wait is visible as an `ApiWaiting` event), honouring `retry-after`.
Errors that waiting cannot fix (a bad request, a bad key, a spend limit) stop
the run with one line and leave the state to resume from.

Money is counted per request from the final usage of the stream, priced with
`ar_tui.core.pricing`; no request starts once the run's budget is spent.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import anthropic
import httpx2

from ar_tui.agents import prompt
from ar_tui.core import events as ev
from ar_tui.core.config import ConfigError
from ar_tui.core.pricing import PriceError, exact_cost, parse_price_overrides
from ar_tui.core.proposer import (
    Emit,
    Proposal,
    ProposalContext,
    ProposalFailed,
    ProposerStopped,
    TokenUsage,
)
from ar_tui.core.workspace import Workspace, WorkspaceError

# Errors the API reports inside a 200 stream (an SSE `error` event) that no
# later attempt can get past; any other (overloaded_error, api_error, a proxy's
# unreadable error) is an outage to wait out.
FATAL_STREAM_ERRORS = {"invalid_request_error", "authentication_error", "permission_error", "not_found_error",
                       "request_too_large", "billing_error"}
RETRYABLE_STATUS = {408, 409, 429}
MAX_RETRY_AFTER_S = 3600.0
VIEW_CHARS = 60_000  # a larger view result is cut: the files are in the opening message already
RESULT_LINE_CHARS = 200
MAX_DESCRIPTION_CHARS = 200
# End-of-turn replies without a tool call before the proposal is given up.
MAX_REMINDERS = 1
# pause_turn replies in a row before the proposal is given up.
MAX_PAUSES = 5


@dataclass
class _ToolCall:
    id: str
    name: str
    input: Any
    input_error: str | None = None  # the input was not valid JSON

    def param(self) -> dict[str, Any]:
        payload = self.input if isinstance(self.input, dict) else {}
        return {"type": "tool_use", "id": self.id, "name": self.name, "input": payload}


@dataclass
class _Response:
    content: list[dict[str, Any]]  # as content-block params, to send back as the assistant turn
    tool_calls: list[_ToolCall]
    stop_reason: str | None
    usage: TokenUsage


class AgentConfigError(ConfigError, ValueError):
    """Bad agent settings (model, key, prices): one line for the user. A
    ValueError too, so a caller that reports bad values reports this."""


class _StreamIncomplete(Exception):
    """The stream ended without `message_stop`."""


class _AttemptFailed(Exception):
    """One request failed; carries whatever usage the stream reported before it
    failed, because the tokens it had processed may be billed."""

    def __init__(self, cause: BaseException, usage: TokenUsage | None) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.usage = usage


@dataclass
class _Verdict:
    retry: bool
    reason: str  # one line
    retry_after: float | None = None


@dataclass
class _Run:
    """The state of one proposal (proposals may run concurrently)."""

    ctx: ProposalContext
    workspace: Workspace
    emit: Emit
    before: dict[str, str | None]
    prices: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)
    cost: Decimal = Decimal(0)
    usage: TokenUsage = field(default_factory=TokenUsage)
    tool_calls: int = 0
    reminders: int = 0
    pauses: int = 0

    @property
    def exp(self) -> int:
        return self.ctx.exp


class ClaudeAgent:
    name = "claude"

    def __init__(
        self,
        *,
        model: str,
        program: str,
        api_key: str | None = None,
        base_url: str | None = None,
        max_tool_calls: int = 30,
        max_tokens: int = 8192,
        prices: dict | None = None,
        retry_base_s: float = 1.0,
        retry_cap_s: float = 60.0,
        editor_tool: str | None = None,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise AgentConfigError("--model must name a model, e.g. claude-sonnet-4-5")
        if max_tool_calls < 1 or max_tokens < 1:
            raise AgentConfigError("max_tool_calls and max_tokens must be at least 1")
        self.model = model.strip()
        self.program = program
        self.max_tool_calls = max_tool_calls
        self.max_tokens = max_tokens
        self.retry_base_s = retry_base_s
        self.retry_cap_s = retry_cap_s
        try:
            self.prices = parse_price_overrides(prices)
        except PriceError as exc:
            raise AgentConfigError(str(exc)) from None
        # max_retries=0: the loop below retries, so that waits are visible.
        try:
            self._client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0)
        except anthropic.CredentialsError as exc:
            raise AgentConfigError(f"Anthropic credentials: {_one_line(str(exc))}") from None
        if self._client.api_key is None and self._client.auth_token is None and self._client.credentials is None:
            raise AgentConfigError(
                "no Anthropic API key: set ANTHROPIC_API_KEY (a local server accepts any value)"
            )
        self._secrets = [s for s in (self._client.api_key, self._client.auth_token) if s]
        # Claude models get Anthropic's built-in text editor tool; other models
        # behind a Messages API server (Ollama, llama.cpp, vLLM) know only
        # tools with a schema. AR_TUI_EDITOR_TOOL overrides the guess.
        editor_tool = editor_tool or os.environ.get("AR_TUI_EDITOR_TOOL") or (
            "builtin" if _is_claude_model(self.model) else "custom"
        )
        if editor_tool not in ("builtin", "custom"):
            raise AgentConfigError(f"editor tool must be builtin or custom, not {editor_tool!r}")
        self.editor_tool = editor_tool
        self._warned_no_price = False

    @property
    def base_url(self) -> str:
        return str(self._client.base_url)

    # --- the proposal ------------------------------------------------------

    async def propose(self, ctx: ProposalContext, workspace: Workspace, emit: Emit) -> Proposal:
        # Prices from the constructor (the command line) win over the target's [prices].
        run = _Run(ctx, workspace, emit, before=_snapshot(workspace),
                   prices={**getattr(ctx.target, "prices", {}), **self.prices})
        run.messages.append(prompt.opening_message(ctx, workspace))
        system = prompt.system_blocks(self.program, ctx.target)
        tools = prompt.tools(self.editor_tool)
        while True:
            response = await self._request(run, system, tools)
            if response.content:
                run.messages.append({"role": "assistant", "content": response.content})
            stop = response.stop_reason
            if stop == "refusal":
                raise ProposalFailed("the model refused to propose a change", float(run.cost))
            if stop == "model_context_window_exceeded":
                raise ProposalFailed("the conversation outgrew the model's context window", float(run.cost))
            if stop == "pause_turn":
                # The API paused a long turn; sending it back lets the model continue it.
                run.pauses += 1
                if run.pauses > MAX_PAUSES:
                    raise ProposalFailed(f"the model paused its turn {MAX_PAUSES} times in a row", float(run.cost))
                continue
            run.pauses = 0
            if not response.tool_calls:
                self._remind(run, cut_off=stop == "max_tokens")
                continue
            results, proposal = self._run_tools(run, response.tool_calls)
            if proposal is not None:
                return proposal
            if run.tool_calls >= self.max_tool_calls:
                raise ProposalFailed(
                    f"used the cap of {self.max_tool_calls} tool calls without calling {prompt.RUN_TOOL_NAME}",
                    float(run.cost),
                )
            if stop == "max_tokens":
                results.append({"type": "text", "text": "Your reply hit the output limit and was cut off; keep replies short."})
            _add_user_content(run.messages, results)

    def _remind(self, run: _Run, *, cut_off: bool) -> None:
        if run.reminders >= MAX_REMINDERS:
            raise ProposalFailed(
                f"the model ended its turn without calling {prompt.RUN_TOOL_NAME}", float(run.cost)
            )
        run.reminders += 1
        note = "Your reply hit the output limit and was cut off. " if cut_off else ""
        _add_user_content(run.messages, [{
            "type": "text",
            "text": f"{note}Make your change with {prompt.EDITOR_TOOL_NAME} now, briefly, "
                    f"then call {prompt.RUN_TOOL_NAME}. This experiment ends without a result otherwise.",
        }])

    # --- tools ---------------------------------------------------------------

    def _run_tools(self, run: _Run, calls: list[_ToolCall]) -> tuple[list[dict[str, Any]], Proposal | None]:
        results: list[dict[str, Any]] = []
        proposal: Proposal | None = None
        edit_failed = False
        for call in calls:
            if proposal is not None:
                # Edits after the submission would not be part of what was described.
                self._tool_result(run, results, call, "ignored: it came after run_experiment", True, "ignored")
                continue
            if run.tool_calls >= self.max_tool_calls:
                self._tool_result(run, results, call, f"not run: the cap of {self.max_tool_calls} tool calls is used up",
                                  True, "cap reached")
                continue
            run.tool_calls += 1
            if call.input_error is not None:
                self._tool_result(run, results, call, call.input_error, True, "invalid input")
                edit_failed = True
            elif not isinstance(call.input, dict):
                self._tool_result(run, results, call, "input must be a JSON object", True, "invalid input")
                edit_failed = True
            elif call.name == prompt.EDITOR_TOOL_NAME:
                summary = _edit_summary(call.input)
                try:
                    output, line = _edit(run.workspace, call.input)
                except WorkspaceError as exc:
                    edit_failed = True
                    self._tool_result(run, results, call, str(exc), True, summary)
                except (OSError, ValueError) as exc:
                    # A path the file system rejects (a NUL byte) or a full disk: the
                    # model is told, the loop goes on.
                    edit_failed = True
                    self._tool_result(run, results, call, f"the edit failed: {exc}", True, summary)
                else:
                    self._tool_result(run, results, call, output, False, summary, line)
            elif call.name == prompt.RUN_TOOL_NAME:
                description, rationale, problem = _submission(call.input)
                if problem is None and edit_failed:
                    problem = "not submitted: an edit in this reply failed; fix it first, then call run_experiment again"
                if problem is None and _snapshot(run.workspace) == run.before:
                    problem = "not submitted: the editable files are unchanged; make a change first"
                summary = f"run_experiment: {description or '(no description)'}"
                if problem is not None:
                    self._tool_result(run, results, call, problem, True, summary)
                else:
                    self._tool_result(run, results, call, "submitted", False, summary)
                    proposal = Proposal(description=description, rationale=rationale,
                                        cost_usd=float(run.cost), usage=run.usage)
            else:
                self._tool_result(
                    run, results, call,
                    f"unknown tool {call.name!r}; the tools are {prompt.EDITOR_TOOL_NAME} and {prompt.RUN_TOOL_NAME}",
                    True, f"unknown tool {call.name}",
                )
        return results, proposal

    def _tool_result(self, run: _Run, results: list[dict[str, Any]], call: _ToolCall, output: str,
                     is_error: bool, summary: str, line: str | None = None) -> None:
        output = self._redact(output)
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call.id, "content": output}
        if is_error:
            block["is_error"] = True
        results.append(block)
        shown = line if line is not None else output
        run.emit(ev.AgentToolCall(
            exp=run.exp,
            name=call.name,
            summary=_one_line(self._redact(summary)),
            is_error=is_error,
            result=_one_line(self._redact(shown)),
        ))

    # --- requests ----------------------------------------------------------

    async def _request(self, run: _Run, system: list[dict[str, Any]], tools: list[dict[str, Any]]) -> _Response:
        """One model turn, retried through any outage that waiting can fix."""
        attempt = 0
        waiting_since: float | None = None
        while True:
            await self._before_request(run)
            params = {
                "model": self.model,
                "max_tokens": self.max_tokens,
                "system": system,
                "tools": tools,
                "messages": prompt.with_turn_breakpoint(run.messages),
            }
            try:
                response = await self._stream(run, params)
            except _AttemptFailed as failed:
                if failed.usage is not None:
                    self._account(run, failed.usage)
                verdict = self._classify(failed.cause)
                if not verdict.retry:
                    raise ProposerStopped(verdict.reason) from None
                attempt += 1
                now = time.monotonic()
                if waiting_since is None:
                    waiting_since = now
                    run.emit(ev.StateChanged(state=ev.STATE_WAITING_API, exp=run.exp, detail=verdict.reason))
                # Never sooner than the API asks, nor than the backoff: a server that keeps
                # saying "retry-after: 0" must not be hammered in a tight loop.
                delay = max(verdict.retry_after or 0.0, self._backoff(attempt))
                run.emit(ev.ApiWaiting(exp=run.exp, reason=verdict.reason, retry_in_s=delay,
                                       attempt=attempt, waited_s=now - waiting_since))
                await asyncio.sleep(delay)
                continue
            if waiting_since is not None:
                run.emit(ev.StateChanged(state=ev.STATE_PROPOSING, exp=run.exp, detail="the API answered again"))
            self._account(run, response.usage)
            return response

    async def _before_request(self, run: _Run) -> None:
        if run.ctx.gate is not None:
            await run.ctx.gate()
        budget = run.ctx.budget_usd
        if budget is not None:
            spent = Decimal(str(run.ctx.spent_usd)) + run.cost
            if spent >= Decimal(str(budget)):
                raise ProposerStopped(
                    f"budget reached: ${spent:.4f} spent of --budget-usd {budget:g}; no further API request started"
                )

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.retry_cap_s, self.retry_base_s * 2 ** min(attempt - 1, 30))
        # Half fixed, half random: many clients recovering at once do not retry in step.
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    async def _stream(self, run: _Run, params: dict[str, Any]) -> _Response:
        blocks: dict[int, dict[str, Any]] = {}
        json_parts: dict[int, list[str]] = {}
        usage: TokenUsage | None = None
        stop_reason: str | None = None
        finished = False
        try:
            stream = await self._client.messages.create(**params, stream=True)
            try:
                async for event in stream:
                    kind = event.type
                    if kind == "message_start":
                        usage = _usage_from(event.message.usage)
                        self._emit_usage(run, usage, streaming=True)
                    elif kind == "content_block_start":
                        block = event.content_block
                        if block.type == "tool_use":
                            # Anthropic streams the input as JSON deltas after an empty `input`;
                            # some compatible servers send it whole here instead.
                            blocks[event.index] = {"type": "tool_use", "id": block.id, "name": block.name,
                                                   "input": getattr(block, "input", None)}
                            json_parts[event.index] = []
                        elif block.type == "text":
                            blocks[event.index] = {"type": "text", "text": block.text or ""}
                        # Other blocks (a local model's `thinking`) are not sent back: no
                        # thinking was asked for, and a partial block would be refused.
                    elif kind == "content_block_delta":
                        delta = event.delta
                        if delta.type == "text_delta" and event.index in blocks:
                            blocks[event.index]["text"] += delta.text
                            if delta.text:
                                run.emit(ev.AgentText(exp=run.exp, text=delta.text))
                        elif delta.type == "input_json_delta" and event.index in json_parts:
                            json_parts[event.index].append(delta.partial_json)
                    elif kind == "message_delta":
                        stop_reason = event.delta.stop_reason
                        usage = _merge_final_usage(usage, event.usage)
                    elif kind == "message_stop":
                        finished = True
            finally:
                await stream.close()
            if not finished:
                raise _StreamIncomplete("the response stream ended before message_stop")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise _AttemptFailed(exc, usage) from exc

        content: list[dict[str, Any]] = []
        calls: list[_ToolCall] = []
        for index in sorted(blocks):
            block = blocks[index]
            if block["type"] == "tool_use":
                call = _parse_tool_call(block, "".join(json_parts.get(index, [])))
                calls.append(call)
                content.append(call.param())
            elif block["text"]:
                content.append(block)
        return _Response(content, calls, stop_reason, usage or TokenUsage())

    def _classify(self, exc: BaseException) -> _Verdict:
        if isinstance(exc, anthropic.APIStatusError):
            status = exc.status_code
            kind = exc.type or ""
            code = exc.error_code or ""
            detail = self._redact(_one_line(exc.api_message or str(exc.body or exc.message)))
            label = f"{status} {kind}".strip() if status != 200 else kind or "error"
            if status == 402 or "spend_limit" in code or kind == "billing_error":
                return _Verdict(False, f"spend limit reached ({label}): {detail}; raise the limit, then resume")
            if status == 200:
                # An error event inside an accepted stream.
                if kind in FATAL_STREAM_ERRORS:
                    return _Verdict(False, f"API error during the response ({label}): {detail}")
                return _Verdict(True, f"{kind or 'an error'} during the response")
            if status in RETRYABLE_STATUS or status >= 500:
                return _Verdict(True, f"{label}: {detail}", _retry_after(exc.response.headers))
            if status == 401:
                return _Verdict(False, f"the API rejected the key ({label}): {detail}; fix ANTHROPIC_API_KEY, then resume")
            if status == 403:
                return _Verdict(False, f"the key may not use this model ({label}): {detail}")
            return _Verdict(False, f"the API refused the request ({label}): {detail}")
        if isinstance(exc, anthropic.APITimeoutError):
            return _Verdict(True, "the request timed out")
        if isinstance(exc, (anthropic.APIConnectionError, httpx2.TransportError)):
            return _Verdict(True, f"connection error: {self._redact(_one_line(str(exc) or type(exc).__name__))}")
        if isinstance(exc, _StreamIncomplete):
            return _Verdict(True, str(exc))
        if isinstance(exc, anthropic.CredentialsError):
            return _Verdict(False, f"Anthropic credentials: {self._redact(_one_line(str(exc)))}")
        if isinstance(exc, anthropic.APIResponseValidationError):
            return _Verdict(True, "the API sent a response that could not be read")
        # Anything else is a bug or a broken server, not an outage: stop, say what.
        return _Verdict(False, f"unexpected error talking to the API: {type(exc).__name__}: "
                               f"{self._redact(_one_line(str(exc)))}")

    # --- money -------------------------------------------------------------

    def _account(self, run: _Run, usage: TokenUsage) -> None:
        cost = exact_cost(self.model, usage, run.prices)
        if cost is not None:
            run.cost += cost
        run.usage.add(usage)
        self._emit_usage(run, usage, streaming=False, cost=cost)

    def _emit_usage(self, run: _Run, usage: TokenUsage, *, streaming: bool, cost: Decimal | None = None) -> None:
        if streaming:
            cost = exact_cost(self.model, usage, run.prices)
        elif cost is None and not self._warned_no_price:
            self._warned_no_price = True
            run.emit(ev.Notice(
                level="warning",
                message=f"no price known for model {self.model}: showing tokens only, and --budget-usd "
                        f"cannot be enforced; add its prices under [prices] in autoresearch.toml",
            ))
        run.emit(ev.Usage(
            exp=run.exp,
            model=self.model,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_write_5m_tokens=usage.cache_write_5m_tokens,
            cache_write_1h_tokens=usage.cache_write_1h_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cost_usd=None if cost is None else float(cost),
            streaming=streaming,
        ))

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text


# --- helpers -------------------------------------------------------------------


def _is_claude_model(model: str) -> bool:
    return "claude" in model.lower()


def _snapshot(workspace: Workspace) -> dict[str, str | None]:
    state: dict[str, str | None] = {}
    for rel in workspace.editable:
        try:
            state[rel] = workspace.read(rel)
        except WorkspaceError:
            state[rel] = None
    return state


def _add_user_content(messages: list[dict[str, Any]], blocks: list[dict[str, Any]]) -> None:
    """Append to the last user message if there is one at the end (the API
    wants roles to alternate), else start a new one."""
    if messages and messages[-1]["role"] == "user":
        messages[-1] = {**messages[-1], "content": [*messages[-1]["content"], *blocks]}
    else:
        messages.append({"role": "user", "content": blocks})


def _parse_tool_call(block: dict[str, Any], raw: str) -> _ToolCall:
    call = _ToolCall(id=block["id"], name=block["name"], input={})
    if not raw.strip():
        # No JSON deltas: the input came whole with the block, or the tool has no arguments.
        call.input = block.get("input") if block.get("input") is not None else {}
        return call
    try:
        call.input = json.loads(raw)
    except ValueError as exc:
        call.input_error = f"the tool input is not valid JSON ({exc.msg} at character {exc.pos}); nothing was done"
    return call


def _usage_from(api_usage: Any) -> TokenUsage:
    """The usage in `message_start`: input-side counts are final, output is a placeholder."""
    total_write = getattr(api_usage, "cache_creation_input_tokens", None) or 0
    split = getattr(api_usage, "cache_creation", None)
    write_1h = _split_value(split, "ephemeral_1h_input_tokens")
    write_5m = _split_value(split, "ephemeral_5m_input_tokens")
    if split is None:
        # No TTL split reported: the API's default TTL is five minutes.
        write_5m, write_1h = total_write, 0
    elif write_5m + write_1h != total_write:
        write_5m = max(0, total_write - write_1h)
    return TokenUsage(
        input_tokens=getattr(api_usage, "input_tokens", None) or 0,
        output_tokens=getattr(api_usage, "output_tokens", None) or 0,
        cache_write_5m_tokens=write_5m,
        cache_write_1h_tokens=write_1h,
        cache_read_tokens=getattr(api_usage, "cache_read_input_tokens", None) or 0,
    )


def _split_value(split: Any, name: str) -> int:
    if split is None:
        return 0
    value = split.get(name) if isinstance(split, dict) else getattr(split, name, None)
    return int(value or 0)


def _merge_final_usage(start: TokenUsage | None, delta_usage: Any) -> TokenUsage:
    """`message_delta` usage is cumulative: its counts replace those of
    `message_start`, never add to them; a count it omits keeps the start's value."""
    merged = TokenUsage() if start is None else TokenUsage(**vars(start))
    merged.output_tokens = getattr(delta_usage, "output_tokens", None) or 0
    if getattr(delta_usage, "input_tokens", None) is not None:
        merged.input_tokens = delta_usage.input_tokens
    if getattr(delta_usage, "cache_read_input_tokens", None) is not None:
        merged.cache_read_tokens = delta_usage.cache_read_input_tokens
    total_write = getattr(delta_usage, "cache_creation_input_tokens", None)
    if total_write is not None and total_write != merged.cache_write_5m_tokens + merged.cache_write_1h_tokens:
        split = getattr(delta_usage, "cache_creation", None)
        if split is not None:
            merged.cache_write_1h_tokens = _split_value(split, "ephemeral_1h_input_tokens")
        merged.cache_write_5m_tokens = max(0, total_write - merged.cache_write_1h_tokens)
    return merged


def _retry_after(headers: Any) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (seconds or an HTTP date)."""
    if headers is None:
        return None
    try:
        value = float(headers.get("retry-after-ms"))
        return min(max(value / 1000, 0.0), MAX_RETRY_AFTER_S)
    except (TypeError, ValueError):
        pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            seconds = parsedate_to_datetime(raw).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _one_line(text: str, limit: int = RESULT_LINE_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _edit_summary(params: dict[str, Any]) -> str:
    command = params.get("command", "?")
    path = params.get("path", "?")
    summary = f"{command} {path}"
    if command == "view" and params.get("view_range") is not None:
        summary += f" {params['view_range']}"
    if command == "insert" and params.get("insert_line") is not None:
        summary += f" after line {params['insert_line']}"
    return summary


def _require(params: dict[str, Any], command: str, key: str) -> Any:
    if key not in params:
        raise WorkspaceError(f"{command} needs `{key}`")
    return params[key]


def _edit(workspace: Workspace, params: dict[str, Any]) -> tuple[str, str]:
    """Run one text-editor command; returns (tool result, one-line event result).
    The event line never carries file contents."""
    command = params.get("command")
    path = params.get("path")
    if not isinstance(path, str):
        raise WorkspaceError("`path` must be a string naming an editable file")
    if command == "view":
        view_range = params.get("view_range")
        output = workspace.view(path, view_range)
        lines = output.count("\n") + 1
        if len(output) > VIEW_CHARS:
            output = output[:VIEW_CHARS] + "\n… (cut; use view_range to see the rest)"
        return output, f"viewed {lines} lines"
    if command == "str_replace":
        old = _require(params, command, "old_str")
        # The tool's schema makes new_str optional: missing means delete old_str.
        new = params.get("new_str", "")
        result = workspace.str_replace(path, old, new)
        return result, result
    if command == "create":
        result = workspace.create(path, _require(params, command, "file_text"))
        return result, result
    if command == "insert":
        line = _require(params, command, "insert_line")
        # text_editor_20250728 calls it insert_text; older versions and some
        # local models send new_str.
        if "insert_text" in params:
            text = params["insert_text"]
        elif "new_str" in params:
            text = params["new_str"]
        else:
            raise WorkspaceError("insert needs `insert_text`")
        result = workspace.insert(path, line, text)
        return result, result
    if command == "undo_edit":
        raise WorkspaceError("undo_edit is not available; use str_replace to change the text back")
    raise WorkspaceError(f"unknown command {command!r}; use view, str_replace, create or insert")


def _submission(params: dict[str, Any]) -> tuple[str, str, str | None]:
    """(description, rationale, problem) from run_experiment's input."""
    description = params.get("description")
    rationale = params.get("rationale", "")
    if not isinstance(description, str) or not description.strip():
        return "", "", "run_experiment needs a non-empty `description` string"
    if rationale is None:
        rationale = ""
    if not isinstance(rationale, str):
        return description, "", "`rationale` must be a string"
    description = " ".join(description.split())
    if len(description) > MAX_DESCRIPTION_CHARS:
        description = description[: MAX_DESCRIPTION_CHARS - 1] + "…"
    return description, " ".join(rationale.split()), None
