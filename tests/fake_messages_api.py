"""A local HTTP server that speaks the Anthropic Messages API, for tests and benchmarks.

The `anthropic` SDK (2.x) sends requests through `httpx2`, which HTTP mocking
libraries do not intercept; a real server on 127.0.0.1 is the honest fake. It
serves `POST /v1/messages` with JSON or, when the request says `"stream": true`,
with server-sent events (chunked, as the real API sends them), and records every
request so tests can assert on what the client sent.

Script it with a queue of steps, served in order, one per request:

    from tests.fake_messages_api import (FakeMessagesAPI, reply, text, edit, tool_use,
        run_experiment, error, outage, drop, stream_error, usage)

    with FakeMessagesAPI() as api:
        api.script(
            error(529, "overloaded_error"),                      # one 529
            *[error(529, "overloaded_error")] * 50,               # a 529 storm
            error(429, "rate_limit_error", retry_after=1),       # obey retry-after
            outage(2.0),                                         # 529s for 2 seconds
            reply(text("Lower the LR."),
                  edit("str_replace", path="train.py", old_str="LR = 0.1", new_str="LR = 0.05")),
            reply(run_experiment("halve the LR", rationale="loss is noisy")),
            reply(text("done"), usage=usage(input=100, output=20, cache_read=900)),
            reply(text("x"), stop_reason="max_tokens"),          # any stop reason
            reply(tool_use("str_replace_based_edit_tool", raw_json='{"path": ')),  # broken JSON
            drop(text("half a tho"), after=1),                   # connection cut mid-stream
            stream_error(text("hm"), after=1),                   # SSE `error` event mid-stream
            error(401, "authentication_error", "invalid x-api-key"),
            error(429, "rate_limit_error", error_code="enforced_spend_limit_reached"),
        )
        agent = ClaudeAgent(model="claude-sonnet-4-5", program=..., api_key="sk-ant-test",
                            base_url=api.base_url)
        ...
        api.requests[0].json["tools"]          # what the client sent
        api.requests[1].tool_results()         # the tool_result blocks it answered with

Answer by model name, as a team's roles need: `api.script(*steps, model="m")`
queues steps for that model's requests only, `api.responders["m"] = fn` answers
them once its queue is empty, and `api.requests_for("m")` lists them. Several
servers (one per role's `model@http://host:port`) are several instances, each
on its own port:

    with FakeMessagesAPI() as planner_server, FakeMessagesAPI() as worker_server: ...

`web_search(query, [(url, title), ...])` gives the blocks of a server-side web
search (`server_tool_use`, then `web_search_tool_result`), counted in the
usage's `server_tool_use.web_search_requests`: `reply(text("…"), *web_search(…))`.

A step may also be a function of the `RecordedRequest` returning a step, and
`api.responder` (same signature) answers once the queue is empty; with neither,
the server answers 400 "script exhausted" so a test that runs out of script
fails loudly instead of hanging.

Usage numbers: give them with `usage(...)`, or let the server compute them. It
then simulates prompt caching the way the API documents it: a `cache_control`
breakpoint caches the prefix up to its block (tools, then system, then
messages) for its TTL (5m or 1h), a later request reads the longest cached
prefix ending at a breakpoint or at one of the 20 blocks before it, and a
prefix shorter than `min_cache_tokens` is not cached. Tokens are estimated as
bytes / `bytes_per_token`. `api.advance(seconds)` moves the cache's clock, so a
benchmark can replay five-minute experiments without waiting.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.local_api_server import LocalAPIHandler, LocalAPIServer, chunks

DEFAULT_BYTES_PER_TOKEN = 3.5  # a common estimate for English prose and Python code
CACHE_LOOKBACK_BLOCKS = 20
TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}


# --- script steps ------------------------------------------------------------


@dataclass
class Usage:
    input: int = 0
    output: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0
    # Send `cache_creation` with its 5m/1h split (newer API versions do); False
    # sends only the total, as older servers and some proxies do.
    split: bool = True


def usage(input: int = 0, output: int = 0, cache_write_5m: int = 0, cache_write_1h: int = 0,
          cache_read: int = 0, split: bool = True) -> Usage:
    return Usage(input, output, cache_write_5m, cache_write_1h, cache_read, split)


@dataclass
class TextBlock:
    text: str


@dataclass
class ToolUseBlock:
    name: str
    input: dict[str, Any] | None = None
    raw_json: str | None = None  # sent as-is instead of json.dumps(input): for broken JSON
    # Send the input whole in content_block_start, with no JSON deltas, as some
    # Messages-API-compatible servers do.
    whole: bool = False
    id: str = field(default_factory=lambda: f"toolu_{uuid.uuid4().hex[:20]}")

    def json_text(self) -> str:
        return self.raw_json if self.raw_json is not None else json.dumps(self.input or {})


@dataclass
class ServerToolUseBlock:
    """The API running one of its own tools (web search) inside the response."""

    name: str
    input: dict[str, Any]
    id: str = field(default_factory=lambda: f"srvtoolu_{uuid.uuid4().hex[:20]}")

    def json_text(self) -> str:
        return json.dumps(self.input)


@dataclass
class WebSearchResultBlock:
    """The results of a web search, sent whole at block start as the API does."""

    tool_use_id: str
    results: list[dict[str, str]]  # url, title

    def param(self) -> dict[str, Any]:
        return {"type": "web_search_tool_result", "tool_use_id": self.tool_use_id, "content": [
            {"type": "web_search_result", "url": r["url"], "title": r["title"],
             "encrypted_content": f"enc_{hashlib.sha256(r['url'].encode()).hexdigest()[:16]}", "page_age": None}
            for r in self.results]}

    def json_text(self) -> str:
        return json.dumps(self.param())


Block = TextBlock | ToolUseBlock | ServerToolUseBlock | WebSearchResultBlock


@dataclass
class Reply:
    blocks: list[Block]
    stop_reason: str | None = None  # default: tool_use when a tool is called, else end_turn
    usage: Usage | None = None
    # Streaming only: end the connection after this many blocks, without
    # message_stop: "drop" breaks the chunked body (a transport error), "end"
    # closes it cleanly (a stream that simply stops early), "error" sends an
    # SSE error event of type `error_type`.
    interrupt: str | None = None
    interrupt_after: int = 0
    error_type: str = "overloaded_error"


@dataclass
class ErrorReply:
    status: int
    type: str
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    error_code: str | None = None


@dataclass
class Outage:
    """Answer every request with an error until `seconds` have passed since the
    first request it answered."""

    seconds: float
    status: int = 529
    type: str = "overloaded_error"
    started: float | None = None


Step = Reply | ErrorReply | Outage | Callable[["RecordedRequest"], Any]


def text(value: str) -> TextBlock:
    return TextBlock(value)


def tool_use(name: str, input: dict[str, Any] | None = None, *, raw_json: str | None = None) -> ToolUseBlock:
    return ToolUseBlock(name, input, raw_json)


def web_search(query: str, results: list[tuple[str, str]]) -> list[Block]:
    """A server-side web search and its results: (url, title) pairs. Counted in
    the usage's `server_tool_use.web_search_requests`."""
    use = ServerToolUseBlock("web_search", {"query": query})
    return [use, WebSearchResultBlock(use.id, [{"url": url, "title": title} for url, title in results])]


def edit(command: str, **params: Any) -> ToolUseBlock:
    """A call of Anthropic's text editor tool."""
    return ToolUseBlock("str_replace_based_edit_tool", {"command": command, **params})


def run_experiment(description: str, rationale: str | None = None) -> ToolUseBlock:
    params: dict[str, Any] = {"description": description}
    if rationale is not None:
        params["rationale"] = rationale
    return ToolUseBlock("run_experiment", params)


def reply(*blocks: Block, stop_reason: str | None = None, usage: Usage | None = None) -> Reply:
    return Reply(list(blocks), stop_reason, usage)


def error(status: int, type: str = "api_error", message: str = "", *, retry_after: float | None = None,
          error_code: str | None = None, headers: dict[str, str] | None = None) -> ErrorReply:
    all_headers = dict(headers or {})
    if retry_after is not None:
        all_headers["retry-after"] = f"{retry_after:g}"
    return ErrorReply(status, type, message or f"fake {type}", all_headers, error_code)


def outage(seconds: float, status: int = 529, type: str = "overloaded_error") -> Outage:
    return Outage(seconds, status, type)


def drop(*blocks: Block, after: int = 1) -> Reply:
    """Stream `after` blocks, then break the connection mid-body."""
    return Reply(list(blocks), interrupt="drop", interrupt_after=after)


def stream_error(*blocks: Block, after: int = 1, error_type: str = "overloaded_error") -> Reply:
    """Stream `after` blocks, then an SSE `error` event (the API's mid-stream overload)."""
    return Reply(list(blocks), interrupt="error", interrupt_after=after, error_type=error_type)


# --- what the server saw -----------------------------------------------------


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    json: dict[str, Any] | None
    at: float  # time.monotonic() when it arrived
    usage: dict[str, Any] | None = None  # the usage the server answered with

    def messages(self) -> list[dict[str, Any]]:
        return list((self.json or {}).get("messages", []))

    def tool_results(self) -> list[dict[str, Any]]:
        """The tool_result blocks of the last user message."""
        messages = self.messages()
        if not messages or not isinstance(messages[-1].get("content"), list):
            return []
        return [b for b in messages[-1]["content"] if b.get("type") == "tool_result"]

    def text(self) -> str:
        """All text the client sent (system and messages), joined."""
        parts: list[str] = []
        system = (self.json or {}).get("system", [])
        if isinstance(system, str):
            parts.append(system)
        else:
            parts.extend(b.get("text", "") for b in system)
        for message in self.messages():
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
                continue
            for block in content:
                if block.get("type") == "text":
                    parts.append(block["text"])
                elif block.get("type") == "tool_result":
                    inner = block.get("content")
                    parts.append(inner if isinstance(inner, str) else json.dumps(inner))
        return "\n".join(parts)


# --- the prompt-cache simulation ---------------------------------------------


def _canonical(block: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in block.items() if k != "cache_control"}, sort_keys=True,
                      ensure_ascii=False)


def request_blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's cacheable units in the API's cache order: tools, system, messages."""
    blocks: list[dict[str, Any]] = [dict(t) for t in body.get("tools", [])]
    system = body.get("system", [])
    if isinstance(system, str):
        system = [{"type": "text", "text": system}]
    blocks.extend(dict(b) for b in system)
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        for block in content:
            blocks.append({**block, "_role": message.get("role")})
    return blocks


class PromptCache:
    def __init__(self, bytes_per_token: float, min_cache_tokens: int, clock: Callable[[], float]) -> None:
        self.bytes_per_token = bytes_per_token
        self.min_cache_tokens = min_cache_tokens
        self.clock = clock
        self.entries: dict[str, tuple[float, float]] = {}  # prefix hash -> (expiry, ttl seconds)
        self.lock = threading.Lock()

    def tokens(self, n_bytes: int) -> int:
        return math.ceil(n_bytes / self.bytes_per_token) if n_bytes else 0

    def account(self, body: dict[str, Any]) -> Usage:
        blocks = request_blocks(body)
        model = str(body.get("model", ""))
        hashes: list[str] = []
        cumulative: list[int] = []  # tokens up to and including block i
        digest = hashlib.sha256(model.encode())
        total_bytes = 0
        for block in blocks:
            canonical = _canonical(block)
            digest.update(canonical.encode())
            hashes.append(digest.copy().hexdigest())
            total_bytes += len(canonical.encode())
            cumulative.append(self.tokens(total_bytes))
        total = cumulative[-1] if cumulative else 0
        breakpoints = [i for i, b in enumerate(blocks) if b.get("cache_control")]
        now = self.clock()
        with self.lock:
            self.entries = {h: entry for h, entry in self.entries.items() if entry[0] > now}
            read_end = -1
            for bp in breakpoints:
                for i in range(bp, max(-1, bp - CACHE_LOOKBACK_BLOCKS - 1), -1):
                    if hashes[i] in self.entries and i > read_end:
                        read_end = i
                        break
            read = cumulative[read_end] if read_end >= 0 else 0
            if read_end >= 0:
                # A hit refreshes the entry it used for that entry's own TTL.
                ttl_s = self.entries[hashes[read_end]][1]
                self.entries[hashes[read_end]] = (now + ttl_s, ttl_s)
            written = {"5m": 0, "1h": 0}
            done = read
            for bp in breakpoints:
                if bp <= read_end or cumulative[bp] < self.min_cache_tokens:
                    continue
                ttl = blocks[bp]["cache_control"].get("ttl", "5m")
                written[ttl] += cumulative[bp] - done
                done = cumulative[bp]
                self.entries[hashes[bp]] = (now + TTL_SECONDS[ttl], TTL_SECONDS[ttl])
        return Usage(
            input=total - done,
            output=0,
            cache_write_5m=written["5m"],
            cache_write_1h=written["1h"],
            cache_read=read,
        )


# --- the server --------------------------------------------------------------


def _searches(step: Reply) -> int:
    return sum(1 for b in step.blocks if isinstance(b, ServerToolUseBlock) and b.name == "web_search")


def _usage_json(u: Usage, *, output: int) -> dict[str, Any]:
    data: dict[str, Any] = {
        "input_tokens": u.input,
        "cache_creation_input_tokens": u.cache_write_5m + u.cache_write_1h,
        "cache_read_input_tokens": u.cache_read,
        "output_tokens": output,
    }
    if u.split:
        data["cache_creation"] = {
            "ephemeral_5m_input_tokens": u.cache_write_5m,
            "ephemeral_1h_input_tokens": u.cache_write_1h,
        }
    return data


def _block_json(b: Block) -> dict[str, Any]:
    if isinstance(b, TextBlock):
        return {"type": "text", "text": b.text}
    if isinstance(b, WebSearchResultBlock):
        return b.param()
    if isinstance(b, ServerToolUseBlock):
        return {"type": "server_tool_use", "id": b.id, "name": b.name, "input": b.input}
    return {"type": "tool_use", "id": b.id, "name": b.name, "input": b.input or {}}


class _Handler(LocalAPIHandler):
    fake: FakeMessagesAPI

    def extra_headers(self) -> dict[str, str]:
        return {"request-id": f"req_{uuid.uuid4().hex[:12]}"}

    def do_POST(self) -> None:
        body, parsed = self.read_body()
        request = RecordedRequest(
            method="POST",
            path=self.path,
            headers=self.lower_headers(),
            body=body,
            json=parsed,
            at=time.monotonic(),
        )
        if self.path.split("?")[0] != "/v1/messages":
            self.send_json(404, {"type": "error", "error": {"type": "not_found_error", "message": self.path}})
            return
        if parsed is None:
            self.send_json(400, {"type": "error", "error": {"type": "invalid_request_error",
                                                             "message": "body is not JSON"}})
            return
        step = self.fake._next_step(request)
        if isinstance(step, ErrorReply):
            error_body: dict[str, Any] = {"type": step.type, "message": step.message}
            if step.error_code:
                error_body["details"] = {"error_code": step.error_code}
            self.send_json(step.status, {"type": "error", "error": error_body,
                                          "request_id": f"req_{uuid.uuid4().hex[:12]}"}, step.headers)
            return
        assert isinstance(step, Reply), f"not a script step: {step!r}"
        u = self.fake.usage_for(parsed, step)
        request.usage = _usage_json(u, output=u.output)
        stop_reason = step.stop_reason or (
            "tool_use" if any(isinstance(b, ToolUseBlock) for b in step.blocks) else "end_turn"
        )
        message_id = f"msg_{uuid.uuid4().hex[:20]}"
        model = parsed.get("model", "claude-fake")
        if parsed.get("stream"):
            self._stream(step, u, stop_reason, message_id, model)
        else:
            content = [_block_json(b) for b in step.blocks]
            self.send_json(200, {
                "id": message_id, "type": "message", "role": "assistant", "model": model,
                "content": content, "stop_reason": stop_reason, "stop_sequence": None,
                "usage": _usage_json(u, output=u.output),
            })

    def _stream(self, step: Reply, u: Usage, stop_reason: str, message_id: str, model: str) -> None:
        self.start_events()
        size = self.fake.chunk_chars
        # message_start carries the input-side usage and an output count of 1;
        # message_delta repeats them as cumulative totals (never to be added).
        self.send_event("message_start", {"type": "message_start", "message": {
            "id": message_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": _usage_json(u, output=1)}})
        self.send_event("ping", {"type": "ping"})
        for index, block in enumerate(step.blocks):
            if step.interrupt and index == step.interrupt_after:
                self._interrupt(step)
                return
            if isinstance(block, TextBlock):
                self.send_event("content_block_start", {"type": "content_block_start", "index": index,
                                                    "content_block": {"type": "text", "text": ""}})
                for piece in chunks(block.text, size):
                    self.send_event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                        "delta": {"type": "text_delta", "text": piece}})
            elif isinstance(block, WebSearchResultBlock):
                self.send_event("content_block_start", {"type": "content_block_start", "index": index,
                                                    "content_block": block.param()})
            elif isinstance(block, ServerToolUseBlock):
                self.send_event("content_block_start", {"type": "content_block_start", "index": index,
                                                    "content_block": {"type": "server_tool_use", "id": block.id,
                                                                      "name": block.name, "input": {}}})
                for piece in chunks(block.json_text(), size):
                    self.send_event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                        "delta": {"type": "input_json_delta",
                                                                  "partial_json": piece}})
            else:
                self.send_event("content_block_start", {"type": "content_block_start", "index": index,
                                                    "content_block": {"type": "tool_use", "id": block.id,
                                                                      "name": block.name,
                                                                      "input": block.input if block.whole else {}}})
                for piece in ([] if block.whole else chunks(block.json_text(), size)):
                    self.send_event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                        "delta": {"type": "input_json_delta",
                                                                  "partial_json": piece}})
            self.send_event("content_block_stop", {"type": "content_block_stop", "index": index})
        if step.interrupt:
            self._interrupt(step)
            return
        delta_usage = _usage_json(u, output=u.output)
        delta_usage.pop("cache_creation", None)
        if _searches(step):
            delta_usage["server_tool_use"] = {"web_search_requests": _searches(step)}
        self.send_event("message_delta", {"type": "message_delta",
                                      "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                      "usage": delta_usage})
        self.send_event("message_stop", {"type": "message_stop"})
        self.end_events()

    def _interrupt(self, step: Reply) -> None:
        if step.interrupt == "error":
            self.send_event("error", {"type": "error", "error": {"type": step.error_type,
                                                                 "message": f"fake mid-stream {step.error_type}"}})
            self.end_events()
        elif step.interrupt == "end":
            self.end_events()
        else:  # "drop": no terminating chunk; the connection closes mid-body.
            self.wfile.flush()


class FakeMessagesAPI(LocalAPIServer[RecordedRequest, Step]):
    handler_class = _Handler
    thread_name = "fake-messages-api"
    answer_types = (Reply, ErrorReply, Outage)
    outage_type = Outage

    def __init__(self, *, bytes_per_token: float = DEFAULT_BYTES_PER_TOKEN, min_cache_tokens: int = 1024,
                 chunk_chars: int = 24) -> None:
        super().__init__()
        # Answers by the request's model: its own queue first, then its own responder.
        self.model_steps: dict[str, list[Step]] = {}
        self.responders: dict[str, Callable[[RecordedRequest], Any]] = {}
        self.bytes_per_token = bytes_per_token
        self.chunk_chars = chunk_chars
        self.clock_offset = 0.0
        self.cache = PromptCache(bytes_per_token, min_cache_tokens, lambda: time.monotonic() + self.clock_offset)

    # scripting
    def script(self, *steps: Step, model: str | None = None) -> None:
        """Queue steps for every request, or (with `model`) for that model's requests only."""
        with self._lock:
            (self.steps if model is None else self.model_steps.setdefault(model, [])).extend(steps)

    def requests_for(self, model: str) -> list[RecordedRequest]:
        return [r for r in self.requests if (r.json or {}).get("model") == model]

    def advance(self, seconds: float) -> None:
        """Move the prompt cache's clock forward (cache entries expire by it)."""
        self.clock_offset += seconds

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self.steps)

    @staticmethod
    def _model(request: RecordedRequest) -> str:
        return str((request.json or {}).get("model", ""))

    def _queue_for(self, request: RecordedRequest) -> list[Step]:
        return self.model_steps.get(self._model(request)) or self.steps

    def _responder_for(self, request: RecordedRequest) -> Callable[[RecordedRequest], Any] | None:
        return self.responders.get(self._model(request), self.responder)

    def _outage_answer(self, outage: Outage) -> ErrorReply:
        return ErrorReply(outage.status, outage.type, f"fake outage ({outage.type})")

    def _exhausted_answer(self) -> ErrorReply:
        return ErrorReply(400, "invalid_request_error", "fake server: script exhausted")

    def usage_for(self, body: dict[str, Any], step: Reply) -> Usage:
        if step.usage is not None:
            return step.usage
        counted = self.cache.account(body)
        out_bytes = sum(len((b.text if isinstance(b, TextBlock) else b.json_text()).encode()) for b in step.blocks
                        if not isinstance(b, WebSearchResultBlock))  # search results are input, not output
        counted.output = max(1, self.cache.tokens(out_bytes))
        return counted
