"""One Messages-API client: streaming, retries, error classification and money.

Every role of a run (the single agent, or a team's planner, workers and
reviewer) talks to its model through a `MessagesClient`: one per model and
server, shared by the roles that use the same pair. A request is made on
behalf of a `Call`, which says whose it is (the experiment, the role), where
its events go, and which `Meter` counts its dollars against the budget.

Overnight, the API will fail. Rate limits, overloads, 5xx and dropped
connections are retried here without end (the SDK's own retries are off so
that every wait is visible as an `ApiWaiting` event), honouring `retry-after`,
with jittered exponential backoff. Errors that waiting cannot fix (a bad
request, a bad key, a spend limit) raise `ProposerStopped` with one line.

Money is counted per request from the final usage of the stream, priced with
`ar_tui.core.money.pricing`, web searches at their own price; no request starts once
the meter's budget is spent.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Awaitable, Callable

import anthropic
import httpx2

from ar_tui.core import events as ev
from ar_tui.core.config import ConfigError
from ar_tui.core.money.pricing import WEB_SEARCH_USD, PriceError, exact_cost, parse_price_overrides
from ar_tui.core.proposer import BudgetReached, Emit, ProposerStopped, TokenUsage

# Errors the API reports inside a 200 stream (an SSE `error` event) that no
# later attempt can get past; any other (overloaded_error, api_error, a proxy's
# unreadable error) is an outage to wait out.
FATAL_STREAM_ERRORS = {"invalid_request_error", "authentication_error", "permission_error", "not_found_error",
                       "request_too_large", "billing_error"}
RETRYABLE_STATUS = {408, 409, 429}
MAX_RETRY_AFTER_S = 3600.0
RESULT_LINE_CHARS = 200
# Blocks of the server-side tools that go back to the API as they came.
SERVER_TOOL_BLOCKS = {"server_tool_use", "web_search_tool_result"}


class AgentConfigError(ConfigError, ValueError):
    """Bad agent settings (model, key, prices): one line for the user. A
    ValueError too, so a caller that reports bad values reports this."""


@dataclass
class ToolCall:
    id: str
    name: str
    input: Any
    input_error: str | None = None  # the input was not valid JSON

    def param(self) -> dict[str, Any]:
        payload = self.input if isinstance(self.input, dict) else {}
        return {"type": "tool_use", "id": self.id, "name": self.name, "input": payload}


@dataclass
class Response:
    content: list[dict[str, Any]]  # as content-block params, to send back as the assistant turn
    tool_calls: list[ToolCall]  # client-side tools only; server tools ran on the server
    stop_reason: str | None
    usage: TokenUsage
    web_searches: int = 0


class Meter:
    """Dollars against a budget, shared by every request that the budget
    covers (one proposal's, or a whole team's). `before` is the run's spend as
    the engine last reported it; `since` what was spent after that."""

    def __init__(self, spent_usd: float = 0.0, budget_usd: float | None = None) -> None:
        self.before = Decimal(str(spent_usd))
        self.since = Decimal(0)
        self.budget_usd = budget_usd

    def rebase(self, spent_usd: float, budget_usd: float | None) -> None:
        """A new proposal's context: its spend already includes what this meter counted."""
        self.before, self.since, self.budget_usd = Decimal(str(spent_usd)), Decimal(0), budget_usd

    def check(self) -> None:
        if self.budget_usd is None:
            return
        spent = self.before + self.since
        if spent >= Decimal(str(self.budget_usd)):
            raise BudgetReached(
                f"budget reached: ${spent:.4f} spent of --budget-usd {self.budget_usd:g}; no further API request started"
            )


@dataclass
class Call:
    """Whose requests these are: one role's part of one experiment."""

    exp: int
    role: str
    emit: Emit
    meter: Meter
    gate: Callable[[], Awaitable[None]] | None = None
    prices: dict[str, Any] = field(default_factory=dict)
    cost: Decimal = Decimal(0)  # this call's own spend
    usage: TokenUsage = field(default_factory=TokenUsage)
    # Set while the call waits out an outage, so that others need not wait on it.
    waiting: asyncio.Event = field(default_factory=asyncio.Event)


class StreamIncomplete(Exception):
    """The stream ended without `message_stop`."""


class _AttemptFailed(Exception):
    """One request failed; carries whatever usage the stream reported before it
    failed, because the tokens it had processed may be billed."""

    def __init__(self, cause: BaseException, usage: TokenUsage | None) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.usage = usage


@dataclass
class Verdict:
    retry: bool
    reason: str  # one line
    retry_after: float | None = None


class MessagesClient:
    def __init__(
        self,
        *,
        model: str,
        api_key: str | None = None,
        base_url: str | None = None,
        prices: dict | None = None,
        retry_base_s: float = 1.0,
        retry_cap_s: float = 60.0,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise AgentConfigError("--model must name a model, e.g. claude-sonnet-4-5")
        self.model = model.strip()
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
            raise AgentConfigError(f"Anthropic credentials: {one_line(str(exc))}") from None
        if self._client.api_key is None and self._client.auth_token is None and self._client.credentials is None:
            raise AgentConfigError(
                "no Anthropic API key: set ANTHROPIC_API_KEY (a local server accepts any value)"
            )
        self._secrets = [s for s in (self._client.api_key, self._client.auth_token) if s]
        self._warned_no_price = False

    @property
    def base_url(self) -> str:
        return str(self._client.base_url)

    # --- requests ----------------------------------------------------------

    async def create(self, call: Call, **params: Any) -> Response:
        """One response, however many attempts it takes; `params` are the
        Messages API's (system, tools, messages, max_tokens, tool_choice)."""
        attempt = 0
        waiting_since: float | None = None
        while True:
            await self._before_request(call)
            try:
                response = await self._stream(call, {"model": self.model, **params})
            except _AttemptFailed as failed:
                if failed.usage is not None:
                    self._account(call, failed.usage, 0)
                verdict = self.classify(failed.cause)
                if not verdict.retry:
                    raise ProposerStopped(verdict.reason) from None
                attempt += 1
                now = time.monotonic()
                if waiting_since is None:
                    waiting_since = now
                    call.waiting.set()
                    call.emit(ev.StateChanged(state=ev.STATE_WAITING_API, exp=call.exp, detail=verdict.reason))
                # Never sooner than the API asks, nor than the backoff: a server that keeps
                # saying "retry-after: 0" must not be hammered in a tight loop.
                delay = max(verdict.retry_after or 0.0, self._backoff(attempt))
                call.emit(ev.ApiWaiting(exp=call.exp, reason=verdict.reason, retry_in_s=delay,
                                        attempt=attempt, waited_s=now - waiting_since, role=call.role))
                await asyncio.sleep(delay)
                continue
            if waiting_since is not None:
                call.waiting.clear()
                call.emit(ev.StateChanged(state=ev.STATE_PROPOSING, exp=call.exp, detail="the API answered again"))
            self._account(call, response.usage, response.web_searches)
            return response

    async def _before_request(self, call: Call) -> None:
        if call.gate is not None:
            await call.gate()
        call.meter.check()

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.retry_cap_s, self.retry_base_s * 2 ** min(attempt - 1, 30))
        # Half fixed, half random: many clients recovering at once do not retry in step.
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    async def _stream(self, call: Call, params: dict[str, Any]) -> Response:
        blocks: dict[int, dict[str, Any]] = {}
        json_parts: dict[int, list[str]] = {}
        usage: TokenUsage | None = None
        searches = 0
        stop_reason: str | None = None
        finished = False
        try:
            stream = await self._client.messages.create(**params, stream=True)
            try:
                async for event in stream:
                    kind = event.type
                    if kind == "message_start":
                        usage = usage_from(event.message.usage)
                        self._emit_usage(call, usage, 0, streaming=True)
                    elif kind == "content_block_start":
                        block = event.content_block
                        if block.type in ("tool_use", "server_tool_use"):
                            # Anthropic streams the input as JSON deltas after an empty `input`;
                            # some compatible servers send it whole here instead.
                            blocks[event.index] = {"type": block.type, "id": block.id, "name": block.name,
                                                   "input": getattr(block, "input", None)}
                            json_parts[event.index] = []
                            if block.type == "server_tool_use":
                                call.emit(ev.AgentToolCall(exp=call.exp, name=block.name, summary="(on the server)",
                                                           role=call.role))
                        elif block.type == "text":
                            blocks[event.index] = {"type": "text", "text": block.text or ""}
                        elif block.type in SERVER_TOOL_BLOCKS:
                            # A server tool's result arrives whole; it goes back as it came.
                            blocks[event.index] = block.to_dict()
                        # Other blocks (a local model's `thinking`) are not sent back: no
                        # thinking was asked for, and a partial block would be refused.
                    elif kind == "content_block_delta":
                        delta = event.delta
                        if delta.type == "text_delta" and event.index in blocks:
                            blocks[event.index]["text"] += delta.text
                            if delta.text:
                                call.emit(ev.AgentText(exp=call.exp, text=delta.text, role=call.role))
                        elif delta.type == "input_json_delta" and event.index in json_parts:
                            json_parts[event.index].append(delta.partial_json)
                    elif kind == "message_delta":
                        stop_reason = event.delta.stop_reason
                        usage = merge_final_usage(usage, event.usage)
                        server = getattr(event.usage, "server_tool_use", None)
                        searches = int(getattr(server, "web_search_requests", None) or 0)
                    elif kind == "message_stop":
                        finished = True
            finally:
                await stream.close()
            if not finished:
                raise StreamIncomplete("the response stream ended before message_stop")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise _AttemptFailed(exc, usage) from exc

        content: list[dict[str, Any]] = []
        calls: list[ToolCall] = []
        for index in sorted(blocks):
            block = blocks[index]
            if block["type"] in ("tool_use", "server_tool_use"):
                parsed = parse_tool_call(block, "".join(json_parts.get(index, [])))
                if block["type"] == "tool_use":
                    calls.append(parsed)
                    content.append(parsed.param())
                else:
                    content.append({**parsed.param(), "type": "server_tool_use"})
            elif block["type"] == "text":
                if block["text"]:
                    content.append(block)
            else:
                content.append(block)
        return Response(content, calls, stop_reason, usage or TokenUsage(), searches)

    def classify(self, exc: BaseException) -> Verdict:
        if isinstance(exc, anthropic.APIStatusError):
            status = exc.status_code
            kind = exc.type or ""
            code = exc.error_code or ""
            detail = self.redact(one_line(exc.api_message or str(exc.body or exc.message)))
            label = f"{status} {kind}".strip() if status != 200 else kind or "error"
            if status == 402 or "spend_limit" in code or kind == "billing_error":
                return Verdict(False, f"spend limit reached ({label}): {detail}; raise the limit, then resume")
            if status == 200:
                # An error event inside an accepted stream.
                if kind in FATAL_STREAM_ERRORS:
                    return Verdict(False, f"API error during the response ({label}): {detail}")
                return Verdict(True, f"{kind or 'an error'} during the response")
            if status in RETRYABLE_STATUS or status >= 500:
                return Verdict(True, f"{label}: {detail}", retry_after(exc.response.headers))
            if status == 401:
                return Verdict(False, f"the API rejected the key ({label}): {detail}; fix ANTHROPIC_API_KEY, then resume")
            if status == 403:
                return Verdict(False, f"the key may not use this model ({label}): {detail}")
            return Verdict(False, f"the API refused the request ({label}): {detail}")
        if isinstance(exc, anthropic.APITimeoutError):
            return Verdict(True, "the request timed out")
        if isinstance(exc, (anthropic.APIConnectionError, httpx2.TransportError)):
            return Verdict(True, f"connection error: {self.redact(one_line(str(exc) or type(exc).__name__))}")
        if isinstance(exc, StreamIncomplete):
            return Verdict(True, str(exc))
        if isinstance(exc, anthropic.CredentialsError):
            return Verdict(False, f"Anthropic credentials: {self.redact(one_line(str(exc)))}")
        if isinstance(exc, anthropic.APIResponseValidationError):
            return Verdict(True, "the API sent a response that could not be read")
        # Anything else is a bug or a broken server, not an outage: stop, say what.
        return Verdict(False, f"unexpected error talking to the API: {type(exc).__name__}: "
                              f"{self.redact(one_line(str(exc)))}")

    # --- money -------------------------------------------------------------

    def price(self, usage: TokenUsage, searches: int, prices: dict[str, Any]) -> Decimal | None:
        cost = exact_cost(self.model, usage, {**prices, **self.prices})
        if cost is None:
            return None
        return cost + searches * WEB_SEARCH_USD

    def _account(self, call: Call, usage: TokenUsage, searches: int) -> None:
        cost = self.price(usage, searches, call.prices)
        if cost is not None:
            call.cost += cost
            call.meter.since += cost
        call.usage.add(usage)
        self._emit_usage(call, usage, searches, streaming=False, cost=cost)

    def _emit_usage(self, call: Call, usage: TokenUsage, searches: int, *, streaming: bool,
                    cost: Decimal | None = None) -> None:
        if streaming:
            cost = self.price(usage, searches, call.prices)
        elif cost is None and not self._warned_no_price:
            self._warned_no_price = True
            call.emit(ev.Notice(
                level="warning",
                message=f"no price known for model {self.model}: showing tokens only, and --budget-usd "
                        f"cannot be enforced; add its prices under [prices] in autoresearch.toml",
            ))
        call.emit(ev.Usage(
            exp=call.exp,
            model=self.model,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_write_5m_tokens=usage.cache_write_5m_tokens,
            cache_write_1h_tokens=usage.cache_write_1h_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cost_usd=None if cost is None else float(cost),
            streaming=streaming,
            role=call.role,
            web_search_requests=searches,
        ))

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text


# --- helpers -------------------------------------------------------------------


def parse_tool_call(block: dict[str, Any], raw: str) -> ToolCall:
    call = ToolCall(id=block["id"], name=block["name"], input={})
    if not raw.strip():
        # No JSON deltas: the input came whole with the block, or the tool has no arguments.
        call.input = block.get("input") if block.get("input") is not None else {}
        return call
    try:
        call.input = json.loads(raw)
    except ValueError as exc:
        call.input_error = f"the tool input is not valid JSON ({exc.msg} at character {exc.pos}); nothing was done"
    return call


def usage_from(api_usage: Any) -> TokenUsage:
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


def merge_final_usage(start: TokenUsage | None, delta_usage: Any) -> TokenUsage:
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


def retry_after(headers: Any) -> float | None:
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


def one_line(text: str, limit: int = RESULT_LINE_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
