"""The model seam: what a role needs from a model, whoever serves it.

A `ModelClient` sends one turn (system, tools, messages), streams the
reply's text and tool calls as engine events while it arrives, reports the
tokens in one `TokenUsage`, prices them, and sorts every failure into one of
three kinds: worth retrying, rate-limited (retry when the server says), or
fatal (one line for the user). The tool loop, the single agent, the team and
the hybrid see only this protocol; `anthropic.py` and `openai.py` implement
it, and `ar_tui.agents.llm.MODEL_CLIENTS` names them by API.

The messages are plain dicts in the shape the Messages API made common, and
each client translates them to its wire format:

- content blocks: `{"type": "text", "text": ...}`, a model's
  `{"type": "tool_use", "id", "name", "input"}` and the answer
  `{"type": "tool_result", "tool_use_id", "content", "is_error"?}`;
- a block or a tool may carry `cache_control`, a hint where a cacheable
  prefix ends; a server that caches by itself ignores it;
- a tool is `{"name", "description", "input_schema"}`, or a built-in one
  `{"type", "name"}` that only its API knows (a client refuses one it cannot
  send, with one line);
- blocks a client returns in its own reply that are not these (a server
  tool's results) go back to that same client as they came: a conversation
  is one client's.

Overnight, the API will fail. `RetryingClient` retries outages and rate
limits without end, every wait visible as an `ApiWaiting` event, honouring
`retry-after`, with jittered exponential backoff; money is counted per
request from the usage the server reported, against a `Meter`'s budget.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Awaitable, Callable, Protocol

from ar_tui.core import events as ev
from ar_tui.core.config import ConfigError
from ar_tui.core.money.pricing import WEB_SEARCH_USD, PriceError, exact_cost, parse_price_overrides
from ar_tui.core.proposer import BudgetReached, Emit, ProposerStopped, TokenUsage

MAX_RETRY_AFTER_S = 3600.0
RESULT_LINE_CHARS = 200

# Why a turn ended, in the seam's words (a client maps its API's to these).
END_TURN = "end_turn"
TOOL_USE = "tool_use"
MAX_TOKENS = "max_tokens"
REFUSAL = "refusal"
PAUSE_TURN = "pause_turn"  # the server paused a long turn: send it back to continue
CONTEXT_EXCEEDED = "model_context_window_exceeded"

# What waiting can do about a failure.
RETRY = "retry"  # an outage, a dropped connection: back off and try again
RATE_LIMITED = "rate_limited"  # the server said when: wait that long, then again
FATAL = "fatal"  # a bad key, a bad request, a spend limit, the wrong API: stop with one line


class AgentConfigError(ConfigError, ValueError):
    """Bad agent settings (model, key, prices, API): one line for the user. A
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
class Turn:
    """One request: everything the model sees, and how long it may answer."""

    system: list[dict[str, Any]]  # text blocks
    tools: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    max_tokens: int = 8192
    tool_choice: str | None = None  # a tool the model must call; None: its choice


@dataclass
class Reply:
    content: list[dict[str, Any]]  # content blocks, to send back as the assistant turn
    tool_calls: list[ToolCall]  # client-side tools only; server tools ran on the server
    stop_reason: str | None
    usage: TokenUsage
    web_searches: int = 0  # server-side searches, billed per search


@dataclass
class Verdict:
    kind: str  # RETRY, RATE_LIMITED or FATAL
    reason: str  # one line
    retry_after: float | None = None

    @property
    def retry(self) -> bool:
        return self.kind != FATAL


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


class ModelClient(Protocol):
    """One model on one server, shared by the roles that use that pair."""

    api: str  # its name in MODEL_CLIENTS: "anthropic", "openai-chat", ...
    model: str

    @property
    def base_url(self) -> str: ...

    async def send(self, call: Call, turn: Turn) -> Reply:
        """One reply, however many attempts it takes: text and tool calls go
        to `call.emit` as they stream, a `Usage` event per request (which the
        engine adds to the experiment's cost), and its dollars to `call.cost`
        and `call.meter`.
        Raises ProposerStopped (fatal) or BudgetReached, with one line."""
        ...

    def classify(self, exc: BaseException) -> Verdict: ...

    def price(self, usage: TokenUsage, web_searches: int, prices: dict[str, Any]) -> Decimal | None:
        """Dollars, or None when the model's price or the usage is unknown."""
        ...

    def redact(self, text: str) -> str:
        """`text` without the client's secrets: for anything shown or stored."""
        ...


class StreamIncomplete(Exception):
    """The stream ended before the server said the reply was done."""


class AttemptFailed(Exception):
    """One request failed; carries whatever usage the stream reported before it
    failed, because the tokens it had processed may be billed."""

    def __init__(self, cause: BaseException, usage: TokenUsage | None) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.usage = usage


class RetryingClient:
    """What every client shares: the retries, the money and the usage events.
    A subclass sets `api`, `_secrets` and `_label` (the server's name in a
    line), and implements `attempt` (one request) and `classify`."""

    api = ""
    _label = "the API"

    def __init__(self, *, model: str, prices: dict | None, retry_base_s: float, retry_cap_s: float,
                 example_model: str) -> None:
        if not isinstance(model, str) or not model.strip():
            raise AgentConfigError(f"--model must name a model, e.g. {example_model}")
        self.model = model.strip()
        self.retry_base_s = retry_base_s
        self.retry_cap_s = retry_cap_s
        try:
            self.prices = parse_price_overrides(prices)
        except PriceError as exc:
            raise AgentConfigError(str(exc)) from None
        self._secrets: list[str] = []
        self._warned_no_price = False
        self._warned_no_usage = False

    async def attempt(self, call: Call, turn: Turn) -> Reply:
        """One request; raises AttemptFailed."""
        raise NotImplementedError

    def classify(self, exc: BaseException) -> Verdict:
        raise NotImplementedError

    async def send(self, call: Call, turn: Turn) -> Reply:
        attempt = 0
        waiting_since: float | None = None
        while True:
            if call.gate is not None:
                await call.gate()
            call.meter.check()
            try:
                reply = await self.attempt(call, turn)
            except AttemptFailed as failed:
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
                # Never sooner than the server asks, nor than the backoff: a server that keeps
                # saying "retry-after: 0" must not be hammered in a tight loop.
                delay = max(verdict.retry_after or 0.0, self._backoff(attempt))
                call.emit(ev.ApiWaiting(exp=call.exp, reason=verdict.reason, retry_in_s=delay,
                                        attempt=attempt, waited_s=now - waiting_since, role=call.role))
                await asyncio.sleep(delay)
                continue
            if waiting_since is not None:
                call.waiting.clear()
                call.emit(ev.StateChanged(state=ev.STATE_PROPOSING, exp=call.exp, detail="the API answered again"))
            self._account(call, reply.usage, reply.web_searches)
            return reply

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.retry_cap_s, self.retry_base_s * 2 ** min(attempt - 1, 30))
        # Half fixed, half random: many clients recovering at once do not retry in step.
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    # --- money -------------------------------------------------------------

    def price(self, usage: TokenUsage, web_searches: int, prices: dict[str, Any]) -> Decimal | None:
        cost = exact_cost(self.model, usage, {**prices, **self.prices})
        if cost is None:
            return None
        return cost + web_searches * WEB_SEARCH_USD

    def _account(self, call: Call, usage: TokenUsage, web_searches: int) -> None:
        cost = self.price(usage, web_searches, call.prices)
        if cost is not None:
            call.cost += cost
            call.meter.since += cost
        call.usage.add(usage)
        self.emit_usage(call, usage, web_searches, streaming=False, cost=cost)

    def emit_usage(self, call: Call, usage: TokenUsage, web_searches: int, *, streaming: bool,
                   cost: Decimal | None = None) -> None:
        if streaming:
            cost = self.price(usage, web_searches, call.prices)
        elif cost is None:
            self._warn_unpriced(call, usage)
        call.emit(ev.Usage(
            exp=call.exp,
            model=self.model,
            input_tokens=usage.known("input_tokens"),
            output_tokens=usage.known("output_tokens"),
            cache_write_5m_tokens=usage.known("cache_write_5m_tokens"),
            cache_write_1h_tokens=usage.known("cache_write_1h_tokens"),
            cache_read_tokens=usage.known("cache_read_tokens"),
            cost_usd=None if cost is None else float(cost),
            streaming=streaming,
            role=call.role,
            web_search_requests=web_searches,
        ))

    def _warn_unpriced(self, call: Call, usage: TokenUsage) -> None:
        if usage.input_tokens is None or usage.output_tokens is None:
            if not self._warned_no_usage:
                self._warned_no_usage = True
                call.emit(ev.Notice(
                    level="warning",
                    message=f"{self._label} at {self.base_url} did not report the tokens of a reply: its cost "
                            f"is unknown and --budget-usd cannot count it",
                ))
        elif not self._warned_no_price:
            self._warned_no_price = True
            call.emit(ev.Notice(
                level="warning",
                message=f"no price known for model {self.model}: showing tokens only, and --budget-usd "
                        f"cannot be enforced; add its prices under [prices] in autoresearch.toml",
            ))

    @property
    def base_url(self) -> str:
        raise NotImplementedError

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text


# --- helpers -------------------------------------------------------------------


def parse_tool_input(call: ToolCall, raw: str, whole: Any = None) -> ToolCall:
    """Fill `call.input` from the streamed JSON text; `whole` is an input that
    came in one piece instead (or nothing: the tool has no arguments)."""
    if not raw.strip():
        call.input = whole if whole is not None else {}
        return call
    try:
        call.input = json.loads(raw)
    except ValueError as exc:
        call.input_error = f"the tool input is not valid JSON ({exc.msg} at character {exc.pos}); nothing was done"
    return call


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
