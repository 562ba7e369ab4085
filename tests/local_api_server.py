"""The machinery the scripted API servers share: a real HTTP server on 127.0.0.1.

SDKs that send through `httpx2` (anthropic 2.x) or a Rust client (Codex CLI)
are not intercepted by HTTP mocking libraries, so the honest fake is a real
server on a port the OS picks. `LocalAPIServer` owns that server and its
thread, the context manager, `base_url`, the queue of scripted steps (served
in order, one per request) and the `responder` that answers once the queue is
empty. `LocalAPIHandler` reads the request body and writes JSON answers and
server-sent events as chunked bodies.

A subclass keeps only its wire format: it sets `handler_class` (a
`LocalAPIHandler` whose `do_POST` parses its path and shapes its events), and
says which of its step types are answers, which is an outage, what an outage
and an exhausted script answer, and, when it routes requests (by model), which
queue and responder serve a request.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Generic, Self, TypeVar

RequestT = TypeVar("RequestT")  # what the subclass records of a request
StepT = TypeVar("StepT")  # what its script queues


def chunks(value: str, size: int) -> list[str]:
    """`value` in pieces of `size` characters, or more: a few dozen deltas per
    block at most, so a 600 kB tool input need not become 25,000 events."""
    size = max(size, math.ceil(len(value) / 40))
    return [value[i : i + size] for i in range(0, len(value), size)] or [""]


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away mid-answer (killed, or gave up) is a scenario, not a server bug.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class LocalAPIHandler(BaseHTTPRequestHandler):
    fake: Any  # the LocalAPIServer subclass this handler answers for; bound by start()
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def extra_headers(self) -> dict[str, str]:
        """Headers every answer carries besides the framing ones (none by default)."""
        return {}

    def read_body(self) -> tuple[bytes, Any]:
        """The request's body and its JSON (None when it is not JSON). Every answer closes the
        connection, so a client never reuses one that a scripted drop broke."""
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.close_connection = True
        try:
            return body, json.loads(body)
        except ValueError:
            return body, None

    def lower_headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}

    def send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("connection", "close")
        for name, value in {**self.extra_headers(), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def start_events(self) -> None:
        """Begin a 200 server-sent-events answer, sent chunked as the real APIs send it."""
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        for name, value in self.extra_headers().items():
            self.send_header(name, value)
        self.end_headers()

    def write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def send_event(self, name: str, payload: dict[str, Any]) -> None:
        """One named SSE event (`event:` and `data:` lines), as Anthropic and the Responses API send them."""
        self.write_chunk(f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode())

    def send_data(self, payload: dict[str, Any] | str) -> None:
        """One unnamed SSE event (a `data:` line only), as Chat Completions sends them."""
        data = payload if isinstance(payload, str) else json.dumps(payload)
        self.write_chunk(f"data: {data}\n\n".encode())

    def end_events(self) -> None:
        """The terminating chunk. A scripted drop leaves it out: the connection closes mid-body."""
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class LocalAPIServer(Generic[RequestT, StepT]):
    handler_class: ClassVar[type[LocalAPIHandler]]
    thread_name: ClassVar[str] = "local-api-server"
    url_path: ClassVar[str] = ""  # appended to http://host:port in base_url
    answer_types: ClassVar[tuple[type, ...]] = ()  # the step types that are answers, not functions to call
    outage_type: ClassVar[type | None] = None  # a step with `seconds` and `started`: errors until they pass

    def __init__(self) -> None:
        self.steps: list[StepT] = []
        self.requests: list[RequestT] = []
        self.responder: Callable[[RequestT], Any] | None = None
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> Self:
        handler = type("Handler", (self.handler_class,), {"fake": self})
        self._server = _QuietServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        assert self._server is not None, "start the server first"
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        assert self._server is not None, "start the server first"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}{self.url_path}"

    # scripting
    def script(self, *steps: StepT) -> None:
        with self._lock:
            self.steps.extend(steps)

    def _queue_for(self, request: RequestT) -> list[StepT]:
        """The queue that serves `request` (called under the lock)."""
        return self.steps

    def _responder_for(self, request: RequestT) -> Callable[[RequestT], Any] | None:
        return self.responder

    def _outage_answer(self, outage: Any) -> Any:
        raise NotImplementedError

    def _exhausted_answer(self) -> Any:
        """What a request gets with no step and no responder: an error, so that a test
        that runs out of script fails loudly instead of hanging."""
        raise NotImplementedError

    def _is_outage(self, step: Any) -> bool:
        return self.outage_type is not None and isinstance(step, self.outage_type)

    def _next_step(self, request: RequestT) -> Any:
        """Record `request` and take its answer: the queue's head (an outage stays at the head,
        answering errors, until its time has passed), else the responder's."""
        with self._lock:
            self.requests.append(request)
            queue = self._queue_for(request)
            while queue and self._is_outage(queue[0]):
                head = queue[0]
                now = time.monotonic()
                if head.started is None:
                    head.started = now
                if now - head.started < head.seconds:
                    return self._outage_answer(head)
                queue.pop(0)
            step: Any = queue.pop(0) if queue else None
        if step is None:
            step = self._responder_for(request)
        while callable(step) and not isinstance(step, self.answer_types):
            step = step(request)
        if step is None:
            return self._exhausted_answer()
        if self._is_outage(step):
            return self._outage_answer(step)
        return step
