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
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.local_api_server import LocalAPIHandler, LocalAPIServer, chunks

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


def _usage_json(u: Usage) -> dict[str, Any]:
    data: dict[str, Any] = {"prompt_tokens": u.prompt, "completion_tokens": u.completion,
                            "total_tokens": u.prompt + u.completion}
    if u.cached is not None:
        data["prompt_tokens_details"] = {"cached_tokens": u.cached}
    return data


class _Handler(LocalAPIHandler):
    fake: FakeChatAPI

    def do_POST(self) -> None:
        _, parsed = self.read_body()
        if self.path.split("?")[0] != PATH:
            # What vLLM and llama.cpp answer for a path they do not serve.
            self.send_json(404, {"detail": "Not Found"})
            return
        request = RecordedRequest(self.path, self.lower_headers(), parsed, time.monotonic())
        if parsed is None:
            self.send_json(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error",
                                           "code": None}})
            return
        step = self.fake._next_step(request)
        if isinstance(step, ErrorReply):
            self.send_json(step.status, {"error": {"message": step.message, "type": step.type,
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
        self.send_json(200, {"id": completion_id, "object": "chat.completion", "created": int(time.time()),
                             "model": model, "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                             **({"usage": _usage_json(u)} if step.report_usage else {})})

    def _stream(self, step: Reply, u: Usage | None, finish: str, completion_id: str, model: str) -> None:
        self.start_events()

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()),
                    "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

        size = self.fake.chunk_chars
        self.send_data(chunk({"role": "assistant", "content": ""}))
        call_index = 0
        for number, part in enumerate(step.parts):
            if step.drop and number == 1:
                self.wfile.flush()  # no terminating chunk: the connection closes mid-body
                return
            if isinstance(part, TextPart):
                for piece in chunks(part.text, size):
                    self.send_data(chunk({"content": piece}))
                continue
            self.send_data(chunk({"tool_calls": [{"index": call_index, "id": part.id, "type": "function",
                                                  "function": {"name": part.name, "arguments": ""}}]}))
            for piece in chunks(part.arguments(), size):
                self.send_data(chunk({"tool_calls": [{"index": call_index, "function": {"arguments": piece}}]}))
            call_index += 1
        if step.drop:
            return
        self.send_data(chunk({}, finish))
        if u is not None:
            self.send_data({"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()),
                            "model": model, "choices": [], "usage": _usage_json(u)})
        self.send_data("[DONE]")
        self.end_events()


class FakeChatAPI(LocalAPIServer[RecordedRequest, Step]):
    handler_class = _Handler
    thread_name = "fake-chat-api"
    # The URL a user gives: the server's root plus /v1, as vLLM, llama.cpp and Ollama serve it.
    url_path = "/v1"
    answer_types = (Reply, ErrorReply, Outage)
    outage_type = Outage

    def __init__(self, *, bytes_per_token: float = DEFAULT_BYTES_PER_TOKEN, min_cache_tokens: int = 1024,
                 chunk_chars: int = 24) -> None:
        super().__init__()
        self.chunk_chars = chunk_chars
        self.cache = PrefixCache(bytes_per_token, min_cache_tokens)

    def _outage_answer(self, outage: Outage) -> ErrorReply:
        return ErrorReply(503, "server_error", "fake outage", type="server_error")

    def _exhausted_answer(self) -> ErrorReply:
        return ErrorReply(400, "script_exhausted", "fake server: script exhausted")

    def usage_for(self, body: dict[str, Any], step: Reply) -> Usage:
        if step.usage is not None:
            return step.usage
        counted = self.cache.account(body)
        out = sum(len((p.text if isinstance(p, TextPart) else p.name + p.arguments()).encode()) for p in step.parts)
        counted.completion = max(1, self.cache.tokens(out))
        return counted
