"""A local HTTP server that speaks the OpenAI Responses API (streaming), for the Codex CLI's tests.

Codex CLI posts `POST {base_url}/responses` with `"stream": true` and reads
server-sent events: `response.created`, then for each output item
`response.output_item.added` and `response.output_item.done` (a `message`, a
`function_call` or a `custom_tool_call`), then `response.completed` carrying
the usage. This server answers each request with the next scripted step, or
with `responder(request)` once the queue is empty, and records every request:

    with FakeResponsesAPI() as api:
        api.script(
            respond(function_call("exec_command", {"cmd": "cat train.py"})),
            respond(message("done"), usage=resp_usage(input=1200, output=40, cached=1000)),
        )
        ... codex exec -c model_providers.fake.base_url=api.base_url ...
        api.requests[1].function_outputs()   # what the CLI answered to the calls

With no step and no responder it answers 400 "script exhausted", so a test that
runs out of script fails loudly instead of hanging.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.local_api_server import LocalAPIHandler, LocalAPIServer


@dataclass
class ResponsesUsage:
    input: int = 0
    output: int = 0
    cached: int = 0
    reasoning: int = 0

    def json(self) -> dict[str, Any]:
        return {"input_tokens": self.input, "input_tokens_details": {"cached_tokens": self.cached},
                "output_tokens": self.output, "output_tokens_details": {"reasoning_tokens": self.reasoning},
                "total_tokens": self.input + self.output}


def resp_usage(input: int = 0, output: int = 0, cached: int = 0, reasoning: int = 0) -> ResponsesUsage:
    return ResponsesUsage(input, output, cached, reasoning)


def message(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "assistant", "id": f"msg_{uuid.uuid4().hex[:16]}",
            "status": "completed", "content": [{"type": "output_text", "text": text, "annotations": []}]}


def function_call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function_call", "id": f"fc_{uuid.uuid4().hex[:16]}", "call_id": f"call_{uuid.uuid4().hex[:16]}",
            "name": name, "arguments": json.dumps(arguments), "status": "completed"}


def custom_tool_call(name: str, input: str) -> dict[str, Any]:
    """A freeform tool call (Codex's `apply_patch` takes the patch as plain text)."""
    return {"type": "custom_tool_call", "id": f"ctc_{uuid.uuid4().hex[:16]}", "call_id": f"call_{uuid.uuid4().hex[:16]}",
            "name": name, "input": input, "status": "completed"}


@dataclass
class Respond:
    items: list[dict[str, Any]]
    usage: ResponsesUsage | None = None


@dataclass
class Fail:
    status: int
    message: str


def respond(*items: dict[str, Any], usage: ResponsesUsage | None = None) -> Respond:
    return Respond(list(items), usage)


def fail(status: int, message: str = "") -> Fail:
    return Fail(status, message or f"fake error {status}")


@dataclass
class ResponsesRequest:
    path: str
    headers: dict[str, str]
    json: Any
    at: float = field(default_factory=time.monotonic)

    def function_outputs(self) -> list[dict[str, Any]]:
        """The tool results this request carries (function and custom tool call outputs)."""
        return [item for item in (self.json or {}).get("input", []) if isinstance(item, dict)
                and item.get("type") in ("function_call_output", "custom_tool_call_output")]

    def tool_names(self) -> list[str]:
        return [t.get("name") or t.get("type") for t in (self.json or {}).get("tools", [])]

    def text(self) -> str:
        return json.dumps(self.json)


Step = Respond | Fail | Callable[[ResponsesRequest], Any]


class _Handler(LocalAPIHandler):
    fake: FakeResponsesAPI

    def do_GET(self) -> None:  # /models: an empty list, so that the CLI keeps the model it was given
        self.send_json(200, {"object": "list", "data": []})

    def do_POST(self) -> None:
        _, parsed = self.read_body()
        request = ResponsesRequest(self.path, self.lower_headers(), parsed)
        if not self.path.split("?")[0].endswith("/responses"):
            self.send_json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
            return
        step = self.fake._next_step(request)
        if isinstance(step, Fail):
            self.send_json(step.status, {"error": {"message": step.message, "type": "invalid_request_error",
                                                   "code": str(step.status)}})
            return
        self._stream(step, (parsed or {}).get("model", "fake"))

    def _stream(self, step: Respond, model: str) -> None:
        self.start_events()
        response_id = f"resp_{uuid.uuid4().hex[:16]}"
        base = {"id": response_id, "object": "response", "created_at": int(time.time()), "model": model}
        self._event({"type": "response.created", "response": {**base, "status": "in_progress", "output": []}})
        for index, item in enumerate(step.items):
            self._event({"type": "response.output_item.added", "output_index": index, "item": item})
            self._event({"type": "response.output_item.done", "output_index": index, "item": item})
        # No scripted usage: estimated from the request's bytes (3.5 bytes a token, as the Messages fake does).
        body = json.dumps(self.fake.requests[-1].json)
        usage = step.usage or ResponsesUsage(input=int(len(body) / 3.5), output=int(len(json.dumps(step.items)) / 3.5))
        self._event({"type": "response.completed",
                     "response": {**base, "status": "completed", "output": step.items, "usage": usage.json()}})
        self.end_events()

    def _event(self, payload: dict[str, Any]) -> None:
        self.send_event(payload["type"], payload)


class FakeResponsesAPI(LocalAPIServer[ResponsesRequest, Step]):
    handler_class = _Handler
    thread_name = "fake-responses-api"
    url_path = "/v1"
    answer_types = (Respond, Fail)

    def __init__(self) -> None:
        super().__init__()

    def _exhausted_answer(self) -> Fail:
        return Fail(400, "fake server: script exhausted")
