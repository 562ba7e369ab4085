"""The run's control socket: how `ar-tui attach`, `status` and `stop` reach a
running engine, foreground or detached.

Wire protocol: newline-delimited JSON over the Unix socket `control.sock` in
the run dir (mode 0600; nothing listens on a TCP port). A client sends

    {"cmd": "<command>", "id": <any JSON scalar>, ...arguments}

and gets, in order with everything else on its connection,

    {"id": <same>, "ok": true, "result": <value>}   or
    {"id": <same>, "ok": false, "error": "<one line>"}

Commands: `subscribe`, `status`, `pause`, `resume`, `set_attended`
(`attended`: bool), `veto` / `force_keep` / `start_now` (`exp`: int or
null), `stop` (`now`: bool). After `subscribe` the client also receives
`{"event": <Event.to_dict()>}` for every event from that moment on, LogLine
included. The subscribe reply carries `events_offset`, the size of
`events.jsonl` at that moment: the engine writes and flushes each persisted
event before any observer sees it, so the bytes before that offset are exactly
the history the live stream does not repeat. A client replays them and
nothing is missed or doubled.

Bad input never reaches the engine: malformed, oversized or unknown messages
get an error reply. A slow subscriber never blocks the engine: its messages
queue per client, training log lines are dropped first, and a client that
falls further behind is disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

from ar_tui.core import events as ev
from ar_tui.core.control.handle import EngineHandle
from ar_tui.core.control.view import RunView
from ar_tui.core.errors import RunError
from ar_tui.core.records.rundir import SOCKET_FILE, RunDir, register_run_dir, socket_address, socket_answers

SOCKET_NAME = SOCKET_FILE
# Commands are a few dozen bytes; anything this long is not one of ours.
MAX_REQUEST_BYTES = 64 * 1024
MAX_CLIENTS = 32
# Queued messages per client beyond which training log lines are dropped for
# it, and beyond which the client is disconnected.
LOG_LINE_BACKLOG = 2_000
MAX_BACKLOG = 20_000

COMMANDS = ("subscribe", "status", "pause", "resume", "set_attended", "veto", "force_keep", "start_now", "stop")
_ARGUMENTS: dict[str, dict[str, tuple[type, ...]]] = {
    "set_attended": {"attended": (bool,)},
    "veto": {"exp": (int, type(None))},
    "force_keep": {"exp": (int, type(None))},
    "start_now": {"exp": (int, type(None))},
    "stop": {"now": (bool,)},
}
_REQUIRED = {"set_attended": ("attended",)}


class ProtocolError(ValueError):
    """A message the server refuses; the text is the error reply."""

    def __init__(self, message: str, request_id: Any = None) -> None:
        super().__init__(message)
        self.request_id = request_id


@dataclass
class Request:
    id: Any
    cmd: str
    args: dict[str, Any]


def parse_request(line: bytes) -> Request:
    """One line from a client, validated; raises ProtocolError."""
    try:
        data = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProtocolError("not UTF-8") from None
    except ValueError as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError("a message must be a JSON object")
    request_id = data.pop("id", None)
    if not (request_id is None or isinstance(request_id, (str, int, float, bool))):
        raise ProtocolError("id must be a string or a number")
    cmd = data.pop("cmd", None)
    if not isinstance(cmd, str):
        raise ProtocolError("missing cmd", request_id)
    if cmd not in COMMANDS:
        raise ProtocolError(f"unknown cmd {cmd[:40]!r}; known: {', '.join(COMMANDS)}", request_id)
    allowed = _ARGUMENTS.get(cmd, {})
    for name, value in data.items():
        if name not in allowed:
            raise ProtocolError(f"{cmd} takes no argument {name[:40]!r}", request_id)
        types = allowed[name]
        # bool is an int in Python; an exp must not be `true`.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            wanted = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ProtocolError(f"{cmd}: {name} must be {wanted}", request_id)
    for name in _REQUIRED.get(cmd, ()):
        if name not in data:
            raise ProtocolError(f"{cmd} needs {name}", request_id)
    return Request(request_id, cmd, data)


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def read_history(path: Path, end: int) -> Iterator[ev.Event]:
    """The events in the first `end` bytes of events.jsonl, skipping lines
    that do not parse (a newer engine's event kinds, a torn line)."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return
    with handle:
        consumed = 0
        for line in handle:
            consumed += len(line)
            if consumed > end or not line.endswith(b"\n"):
                break
            try:
                yield ev.event_from_json(line.decode("utf-8", errors="replace"))
            except (ValueError, TypeError):
                continue


class _Client:
    """One connection: a queue of outgoing lines drained by its own task, so
    that the engine only ever appends."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.backlog: deque[bytes] = deque()
        self.wake = asyncio.Event()
        self.subscribed = False
        self.dropped_log_lines = 0
        self.closed = False

    def send(self, data: bytes, droppable: bool = False) -> None:
        if self.closed:
            return
        if droppable and len(self.backlog) >= LOG_LINE_BACKLOG:
            self.dropped_log_lines += 1
            return
        if len(self.backlog) >= MAX_BACKLOG:
            # Too far behind to catch up: cut it off rather than hold the
            # engine's memory for it. It can attach again.
            self.abort()
            return
        if self.dropped_log_lines and not droppable:
            notice = ev.Notice(level="info", message=f"{self.dropped_log_lines} training log lines were not sent "
                                                     "to this slow viewer; logs/ has them all")
            self.dropped_log_lines = 0
            self.backlog.append(encode({"event": notice.to_dict()}))
        self.backlog.append(data)
        self.wake.set()

    def reply(self, request_id: Any, result: Any = None, error: str | None = None) -> None:
        if error is None:
            self.send(encode({"id": request_id, "ok": True, "result": result}))
        else:
            self.send(encode({"id": request_id, "ok": False, "error": error}))

    async def pump(self) -> None:
        try:
            while not self.closed:
                await self.wake.wait()
                self.wake.clear()
                while self.backlog:
                    batch = b"".join(self.backlog)
                    self.backlog.clear()
                    self.writer.write(batch)
                    await self.writer.drain()
        except (ConnectionError, OSError):
            self.abort()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.backlog.clear()
            self.wake.set()
            self.writer.transport.abort()


class ControlServer:
    """Serves one engine's control socket on the engine's own event loop."""

    def __init__(self, engine: EngineHandle, run_dir: Path) -> None:
        self.engine = engine
        self.run_dir = Path(run_dir)
        self.path = RunDir(self.run_dir).socket
        self.events_path = RunDir(self.run_dir).events
        self.view = RunView()
        self.clients: set[_Client] = set()
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None
        self._unsubscribe = None
        self._early: list[ev.Event] | None = None
        self._tasks: set[asyncio.Task] = set()

    # ------------------------------------------------------------------ lifetime

    async def start(self) -> None:
        # The status figures cover the whole run, resumed ones included: the
        # history on disk, then every event from here on. Subscribing before
        # reading means nothing falls between the two.
        self._early = []
        self._unsubscribe = self.engine.subscribe(self._on_event)
        end = self._events_size()
        try:
            await asyncio.to_thread(self._load_history, end)
        finally:
            early, self._early = self._early, None
            for event in early:
                self.view.apply(event)
        try:
            sock = await asyncio.to_thread(self._bind)
            self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_REQUEST_BYTES)
        except BaseException:
            # No socket, no server: stop observing (the engine runs on without one).
            self._unsubscribe()
            self._unsubscribe = None
            raise
        with contextlib.suppress(OSError):
            register_run_dir(self.run_dir)

    def _load_history(self, end: int) -> None:
        for event in read_history(self.events_path, end):
            self.view.apply(event)

    def _bind(self) -> socket.socket:
        if self.path.exists() or self.path.is_symlink():
            if socket_answers(self.path):
                raise OSError(f"another engine answers on {self.path}")
            self.path.unlink()  # stale: left by an engine that died
        # Bound under a temporary name, restricted, listening, then renamed
        # into place: control.sock never exists with looser permissions.
        temporary = self.path.with_name(f".{SOCKET_NAME}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with socket_address(temporary) as address:
                sock.bind(address)
            os.chmod(temporary, 0o600)
            sock.listen(16)
            sock.setblocking(False)
            os.replace(temporary, self.path)
            self._inode = os.stat(self.path).st_ino
        except BaseException:
            sock.close()
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
        return sock

    async def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._server is not None:
            self._server.close()
        # Delivered what is queued (the RunStopped event above all), then closed.
        for client in list(self.clients):
            with contextlib.suppress(asyncio.TimeoutError, ConnectionError, OSError):
                await asyncio.wait_for(self._flush(client), timeout=2.0)
            client.abort()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        # Only our own socket: a newer engine may already have replaced it.
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                self.path.unlink()

    @staticmethod
    async def _flush(client: _Client) -> None:
        while client.backlog and not client.closed:
            await asyncio.sleep(0.01)
        if not client.closed:
            await client.writer.drain()

    # ------------------------------------------------------------------ events

    def _events_size(self) -> int:
        try:
            return self.events_path.stat().st_size
        except FileNotFoundError:
            return 0

    def _on_event(self, event: ev.Event) -> None:
        # Called inside the engine's emit: cheap, and it never raises.
        if self._early is not None:
            self._early.append(event)
        elif not isinstance(event, ev.LogLine):
            self.view.apply(event)
        subscribers = [c for c in self.clients if c.subscribed]
        if not subscribers:
            return
        data = encode({"event": event.to_dict()})
        droppable = isinstance(event, ev.LogLine)
        for client in subscribers:
            client.send(data, droppable)

    # ------------------------------------------------------------------ clients

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        client = _Client(writer)
        pump = asyncio.create_task(client.pump())
        try:
            refusal = self._refusal(writer)
            if refusal:
                client.reply(None, error=refusal)
                await self._flush(client)
                return
            self.clients.add(client)
            while not client.closed:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    break  # the client went away; a partial last line is not a command
                except asyncio.LimitOverrunError:
                    client.reply(None, error=f"message longer than {MAX_REQUEST_BYTES} bytes; closing")
                    await self._flush(client)
                    break
                except (ConnectionError, OSError):
                    break
                if line.strip():
                    self._handle(client, line)
        except asyncio.CancelledError:
            pass
        finally:
            self.clients.discard(client)
            client.abort()
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
            if task is not None:
                self._tasks.discard(task)

    def _refusal(self, writer: asyncio.StreamWriter) -> str | None:
        if len(self.clients) >= MAX_CLIENTS:
            return f"too many clients ({MAX_CLIENTS})"
        uid = _peer_uid(writer.get_extra_info("socket"))
        if uid is not None and uid != os.getuid():
            return "this run belongs to another user"
        return None

    def _handle(self, client: _Client, line: bytes) -> None:
        try:
            request = parse_request(line)
        except ProtocolError as exc:
            client.reply(exc.request_id, error=str(exc))
            return
        try:
            result = self._execute(client, request)
        except Exception as exc:  # the engine's refusal (or bug) is the client's error, not the engine's end
            print(f"ar-tui: control command {request.cmd} failed: {exc!r}", file=sys.stderr)
            client.reply(request.id, error=f"{request.cmd} failed: {exc}")
            return
        client.reply(request.id, result)

    def _execute(self, client: _Client, request: Request) -> Any:
        engine, args = self.engine, request.args
        cmd = request.cmd
        if cmd == "subscribe":
            if client.subscribed:
                raise ValueError("already subscribed")
            client.subscribed = True
            return {"events_offset": self._events_size(), "pid": os.getpid()}
        if cmd == "status":
            return self.status()
        if cmd == "pause":
            engine.pause()
        elif cmd == "resume":
            engine.resume()
        elif cmd == "set_attended":
            engine.set_attended(args["attended"])
        elif cmd == "veto":
            return bool(engine.veto(args.get("exp")))
        elif cmd == "force_keep":
            return bool(engine.force_keep(args.get("exp")))
        elif cmd == "start_now":
            return bool(engine.start_now(args.get("exp")))
        elif cmd == "stop":
            engine.request_stop(now=args.get("now", False))
        return None

    def status(self) -> dict[str, Any]:
        summary = self.view.summary()
        summary.update(live=True, pid=os.getpid(), run_dir=str(self.run_dir.resolve()),
                       clients=sum(1 for c in self.clients if c.subscribed))
        if self.view.stopped is not None:
            summary["stopped_reason"] = self.view.stopped.reason
        elif getattr(self.engine, "stop_reason", None):
            summary["stopping_reason"] = self.engine.stop_reason
        return summary


def _peer_uid(sock: socket.socket | None) -> int | None:
    """The connecting process's uid (Linux SO_PEERCRED), or None where unknown."""
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


@contextlib.asynccontextmanager
async def control_service(engine: EngineHandle) -> AsyncIterator[ControlServer]:
    """The run's control socket as a service (see `ar_tui.core.engine.Service`):
    open while the run lives, so that `attach`, `status` and `stop` reach it.
    The engine runs on without it when the socket cannot be made."""
    server = ControlServer(engine, engine.run_dir.path)  # type: ignore[attr-defined]
    try:
        await server.start()
    except OSError as exc:
        raise RunError(f"no control socket, attach will not work: {exc}") from None
    try:
        yield server
    finally:
        await server.close()
