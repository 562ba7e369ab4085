"""A local HTTP server that speaks OpenAI Chat Completions, for tests.

The counterpart of `fake_messages_api.py` for `ar_tui/agents/llm/openai.py`:
the official `openai` SDK talks to it over real HTTP on 127.0.0.1. It serves
`POST /v1/chat/completions`, as JSON or, when the request says
`"stream": true`, as server-sent events the way OpenAI sends them: text in
`delta.content`, tool calls as `delta.tool_calls` fragments (id and name in
the first, the arguments in pieces), a chunk with `finish_reason`, then, when
the request asked for it with `stream_options.include_usage`, a last chunk
with no choices and the usage, then `data: [DONE]`. Every request is recorded.

Script it with a queue of steps, one per request:

    from tests.fake_openai_api import (FakeChatAPI, reply, text, tool_call, edit,
        run_experiment, error, outage, drop, usage)

    with FakeChatAPI() as api:
        api.script(
            error(429, "rate_limit_exceeded", retry_after=1),     # obey retry-after
            outage(2.0),                                          # 503s for 2 seconds
            reply(text("Lower the LR."),
                  edit("str_replace", path="train.py", old_str="LR = 0.1", new_str="LR = 0.05")),
            reply(run_experiment("halve the LR"), usage=usage(prompt=1200, completion=40, cached=1024)),
            reply(text("no usage"), usage=None, report_usage=False),   # a server that reports none
            drop(text("half a tho")),                              # connection cut mid-stream
        )
        client = OpenAIChatClient(model="gpt-4.1-mini", api_key="sk-test", base_url=api.base_url)

`api.responder` (a function of the `RecordedRequest` returning a step)
answers once the queue is empty; with neither, the server answers 400
"script exhausted". Without `usage(...)` the server counts tokens as bytes /
3.5 and simulates automatic prefix caching as OpenAI documents it: a prompt
reads from the cache the longest prefix (tools, then messages) it shares
with an earlier prompt, once that is at least `min_cache_tokens` (1,024) long,
in steps of 128 tokens.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_BYTES_PER_TOKEN = 3.5
PATH = "/v1/chat/completions"


@dataclass
class Usage:
    prompt: int = 0  # all input tokens, the cached ones included
    completion: int = 0
    cached: int | None = 0  # None: leave prompt_tokens_details out, as some servers do


def usage(prompt: int = 0, completion: int = 0, cached: int | None = 0) -> Usage:
    return Usage(prompt, completion, cached)


@dataclass
class TextPart:
    text: str


@dataclass
class ToolCallPart:
    name: str
    input: dict[str, Any] | None = None
    raw_json: str | None = None  # sent as-is: for broken JSON
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:20]}")

    def arguments(self) -> str:
        return self.raw_json if self.raw_json is not None else json.dumps(self.input or {})


Part = TextPart | ToolCallPart


@dataclass
class Reply:
    parts: list[Part]
    finish_reason: str | None = None  # default: tool_calls when a tool is called, else stop
    usage: Usage | None = None
    report_usage: bool = True  # False: never send usage, whatever the request asks
    drop: bool = False  # break the connection after the first part, with no finish_reason


@dataclass
class ErrorReply:
    status: int
    code: str
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    type: str = "invalid_request_error"


@dataclass
class Outage:
    """Answer 503 until `seconds` have passed since the first request it answered."""

    seconds: float
    started: float | None = None


Step = Reply | ErrorReply | Outage | Callable[["RecordedRequest"], Any]


def text(value: str) -> TextPart:
    return TextPart(value)


def tool_call(name: str, input: dict[str, Any] | None = None, *, raw_json: str | None = None) -> ToolCallPart:
    return ToolCallPart(name, input, raw_json)


def edit(command: str, **params: Any) -> ToolCallPart:
    """A call of the text editor tool (its custom schema: Chat Completions has no built-in one)."""
    return ToolCallPart("str_replace_based_edit_tool", {"command": command, **params})


def run_experiment(description: str, rationale: str | None = None) -> ToolCallPart:
    params: dict[str, Any] = {"description": description}
    if rationale is not None:
        params["rationale"] = rationale
    return ToolCallPart("run_experiment", params)


def reply(*parts: Part, finish_reason: str | None = None, usage: Usage | None = None,
          report_usage: bool = True) -> Reply:
    return Reply(list(parts), finish_reason, usage, report_usage)


def error(status: int, code: str, message: str = "", *, retry_after: float | None = None,
          type: str = "invalid_request_error") -> ErrorReply:
    headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
    return ErrorReply(status, code, message or f"fake {code}", headers, type)


def outage(seconds: float) -> Outage:
    return Outage(seconds)


def drop(*parts: Part) -> Reply:
    return Reply(list(parts), drop=True)


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]  # lower-cased names
    json: dict[str, Any] | None
    at: float
    usage: dict[str, Any] | None = None  # the usage the server answered with

    def messages(self) -> list[dict[str, Any]]:
        return list((self.json or {}).get("messages", []))

    def tool_messages(self) -> list[dict[str, Any]]:
        """The `tool` messages that end the conversation (answers to the last tool calls)."""
        tail: list[dict[str, Any]] = []
        for message in reversed(self.messages()):
            if message["role"] == "assistant":
                break
            if message["role"] == "tool":
                tail.insert(0, message)
        return tail


class PrefixCache:
    """Automatic prefix caching as OpenAI documents it: a prompt reads from the
    cache the longest prefix it shares with an earlier prompt of the same
    model, once that is at least `min_cache_tokens`, in steps of `step_tokens`."""

    def __init__(self, bytes_per_token: float, min_cache_tokens: int, step_tokens: int = 128) -> None:
        self.bytes_per_token = bytes_per_token
        self.min_cache_tokens = min_cache_tokens
        self.step_tokens = step_tokens
        self.seen: dict[str, list[str]] = {}  # model -> earlier prompts, serialised in cache order
        self.lock = threading.Lock()

    def tokens(self, n_bytes: int) -> int:
        return math.ceil(n_bytes / self.bytes_per_token) if n_bytes else 0

    def account(self, body: dict[str, Any]) -> Usage:
        prompt = json.dumps(body.get("tools", []), sort_keys=True) + json.dumps(body.get("messages", []),
                                                                                sort_keys=True)
        with self.lock:
            earlier = self.seen.setdefault(str(body.get("model", "")), [])
            shared = max((len(os.path.commonprefix([prompt, before])) for before in earlier), default=0)
            earlier.append(prompt)
        cached = int(len(prompt[:shared].encode()) // self.bytes_per_token) // self.step_tokens * self.step_tokens
        return Usage(prompt=self.tokens(len(prompt.encode())), completion=0,
                     cached=cached if cached >= self.min_cache_tokens else 0)


class FakeChatAPI:
    def __init__(self, *, bytes_per_token: float = DEFAULT_BYTES_PER_TOKEN, min_cache_tokens: int = 1024,
                 chunk_chars: int = 24) -> None:
        self.steps: list[Step] = []
        self.requests: list[RecordedRequest] = []
        self.responder: Callable[[RecordedRequest], Any] | None = None
        self.chunk_chars = chunk_chars
        self.cache = PrefixCache(bytes_per_token, min_cache_tokens)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> FakeChatAPI:
        api = self

        class Handler(_Handler):
            fake = api

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                         name="fake-chat-api", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeChatAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """The URL a user gives: the server's root plus /v1, as vLLM, llama.cpp and Ollama serve it."""
        assert self._server is not None, "start the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def script(self, *steps: Step) -> None:
        with self._lock:
            self.steps.extend(steps)

    def _next_step(self, request: RecordedRequest) -> Any:
        with self._lock:
            self.requests.append(request)
            step: Any = None
            while self.steps and isinstance(self.steps[0], Outage):
                head = self.steps[0]
                now = time.monotonic()
                head.started = now if head.started is None else head.started
                if now - head.started < head.seconds:
                    return ErrorReply(503, "server_error", "fake outage", type="server_error")
                self.steps.pop(0)
            if self.steps:
                step = self.steps.pop(0)
        if step is None:
            step = self.responder
        while callable(step) and not isinstance(step, (Reply, ErrorReply, Outage)):
            step = step(request)
        if step is None:
            return ErrorReply(400, "script_exhausted", "fake server: script exhausted")
        if isinstance(step, Outage):
            return ErrorReply(503, "server_error", "fake outage", type="server_error")
        return step

    def usage_for(self, body: dict[str, Any], step: Reply) -> Usage:
        if step.usage is not None:
            return step.usage
        counted = self.cache.account(body)
        out = sum(len((p.text if isinstance(p, TextPart) else p.name + p.arguments()).encode()) for p in step.parts)
        counted.completion = max(1, self.cache.tokens(out))
        return counted


def _usage_json(u: Usage) -> dict[str, Any]:
    data: dict[str, Any] = {"prompt_tokens": u.prompt, "completion_tokens": u.completion,
                            "total_tokens": u.prompt + u.completion}
    if u.cached is not None:
        data["prompt_tokens_details"] = {"cached_tokens": u.cached}
    return data


def _chunks(value: str, size: int) -> list[str]:
    size = max(size, math.ceil(len(value) / 40))
    return [value[i : i + size] for i in range(0, len(value), size)] or [""]


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeChatAPI
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        self.close_connection = True
        if self.path.split("?")[0] != PATH:
            # What vLLM and llama.cpp answer for a path they do not serve.
            self._send_json(404, {"detail": "Not Found"})
            return
        request = RecordedRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, parsed,
                                  time.monotonic())
        if parsed is None:
            self._send_json(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error",
                                            "code": None}})
            return
        step = self.fake._next_step(request)
        if isinstance(step, ErrorReply):
            self._send_json(step.status, {"error": {"message": step.message, "type": step.type,
                                                    "param": None, "code": step.code}}, step.headers)
            return
        assert isinstance(step, Reply), f"not a script step: {step!r}"
        u = self.fake.usage_for(parsed, step)
        wants_usage = bool((parsed.get("stream_options") or {}).get("include_usage")) and step.report_usage
        request.usage = _usage_json(u) if wants_usage or not parsed.get("stream") else None
        finish = step.finish_reason or ("tool_calls" if any(isinstance(p, ToolCallPart) for p in step.parts)
                                        else "stop")
        model = parsed.get("model", "fake")
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:20]}"
        if parsed.get("stream"):
            self._stream(step, u if wants_usage else None, finish, completion_id, model)
            return
        message: dict[str, Any] = {"role": "assistant",
                                   "content": "".join(p.text for p in step.parts if isinstance(p, TextPart)) or None}
        calls = [{"id": p.id, "type": "function", "function": {"name": p.name, "arguments": p.arguments()}}
                 for p in step.parts if isinstance(p, ToolCallPart)]
        if calls:
            message["tool_calls"] = calls
        self._send_json(200, {"id": completion_id, "object": "chat.completion", "created": int(time.time()),
                              "model": model, "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                              **({"usage": _usage_json(u)} if step.report_usage else {})})

    def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("connection", "close")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _data(self, payload: dict[str, Any] | str) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        self._chunk(f"data: {text}\n\n".encode())

    def _stream(self, step: Reply, u: Usage | None, finish: str, completion_id: str, model: str) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("connection", "close")
        self.end_headers()

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()),
                    "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

        size = self.fake.chunk_chars
        self._data(chunk({"role": "assistant", "content": ""}))
        call_index = 0
        for number, part in enumerate(step.parts):
            if step.drop and number == 1:
                self.wfile.flush()  # no terminating chunk: the connection closes mid-body
                return
            if isinstance(part, TextPart):
                for piece in _chunks(part.text, size):
                    self._data(chunk({"content": piece}))
                continue
            self._data(chunk({"tool_calls": [{"index": call_index, "id": part.id, "type": "function",
                                              "function": {"name": part.name, "arguments": ""}}]}))
            for piece in _chunks(part.arguments(), size):
                self._data(chunk({"tool_calls": [{"index": call_index, "function": {"arguments": piece}}]}))
            call_index += 1
        if step.drop:
            return
        self._data(chunk({}, finish))
        if u is not None:
            self._data({"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()),
                        "model": model, "choices": [], "usage": _usage_json(u)})
        self._data("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
