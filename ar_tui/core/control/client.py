"""The other end of the control socket: an `EngineHandle` for an attached app,
one-shot requests for `ar-tui status` / `stop`, and the status of every run
on this machine (which runs there are is `ar_tui.core.records.rundir`'s to
say). Starting an engine detached from the terminal is `detach`'s. The text
people read is in `ar_tui.headless`.

An attached app calls the handle's methods synchronously, the way it calls a
local engine; a round trip must not block its event loop, so each command is
sent at once and the engine's answer comes back later. A refusal ("nothing to
veto", a protocol error, a lost connection) reaches the app as a Notice event,
where it shows like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any, Callable

from ar_tui.core import events as ev
from ar_tui.core.control.handle import Observer
from ar_tui.core.control.server import encode, read_history
from ar_tui.core.control.view import RunView
from ar_tui.core.errors import RunError, UserError
from ar_tui.core.records.rundir import (
    SOCKET_FILE,
    RunDir,
    clean_stale,
    engine_pid,
    find_run_dirs,
    socket_address,
)

# Events carry diffs and crash tails; a generous cap that still bounds memory.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# Events received before the app subscribes (it subscribes once it is drawn).
_EARLY_EVENTS_LIMIT = 50_000
STATE_DEAD = "dead"  # the engine died without stopping the run; `run` resumes it


class EngineNotRunning(RunError):
    """No live engine answers for this run dir. The message is one line."""


class RemoteError(RunError):
    """The engine refused a request, or the connection is gone."""


class EngineExited(EngineNotRunning):
    """A background engine that exited before its socket answered; the exit
    code is its own (2 for bad input)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code if code in (1, 2) else 1


class NotARunDir(UserError):
    """A folder named as a run dir holds no run."""


async def _open(run_dir: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    path = RunDir(run_dir).socket
    try:
        with socket_address(path) as address:
            return await asyncio.wait_for(asyncio.open_unix_connection(address, limit=MAX_MESSAGE_BYTES), 5.0)
    except (OSError, asyncio.TimeoutError) as exc:
        if engine_pid(run_dir) is None:
            clean_stale(run_dir)
            raise EngineNotRunning(f"no engine is running in {run_dir}") from None
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise EngineNotRunning(f"the engine in {run_dir} does not answer on {SOCKET_FILE} ({reason})") from None


class RemoteEngine:
    """`EngineHandle` over a run's control socket."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.pid: int | None = None
        self.observers: list[Observer] = []
        self.connected = False
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._read_task: asyncio.Task | None = None
        self._replies: dict[int, asyncio.Future] = {}
        self._next_id = 0
        self._early: list[ev.Event] | None = []
        self._saw_run_stopped = False
        self._closing = False

    # ------------------------------------------------------------------ connection

    async def connect(self) -> list[ev.Event]:
        """Connect, subscribe and return the run's history up to this moment;
        every later event goes to the observers. Raises EngineNotRunning."""
        self._reader, self._writer = await _open(self.run_dir)
        self.connected = True
        self._read_task = asyncio.create_task(self._read_loop())
        try:
            subscribed = await asyncio.wait_for(self.call("subscribe"), 10.0)
        except (asyncio.TimeoutError, RemoteError) as exc:
            await self.close()
            raise EngineNotRunning(f"the engine in {self.run_dir} did not accept a viewer: {exc}") from None
        self.pid = subscribed.get("pid")
        end = int(subscribed["events_offset"])
        return await asyncio.to_thread(lambda: list(read_history(RunDir(self.run_dir).events, end)))

    async def close(self) -> None:
        self._closing = True
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._read_task is not None:
            self._read_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._read_task
        self.connected = False

    async def _read_loop(self) -> None:
        assert self._reader is not None
        reason = "the engine closed the connection"
        try:
            while True:
                line = await self._reader.readuntil(b"\n")
                self._receive(line)
        except asyncio.IncompleteReadError:
            pass
        except asyncio.LimitOverrunError:
            reason = f"a message from the engine exceeded {MAX_MESSAGE_BYTES} bytes"
        except (ConnectionError, OSError) as exc:
            reason = f"connection error: {exc}"
        finally:
            self.connected = False
            for future in self._replies.values():
                if not future.done():
                    future.set_exception(RemoteError(reason))
            self._replies.clear()
        if not self._closing and not self._saw_run_stopped:
            self._deliver(ev.Notice(level="error", message=f"lost the connection to the engine ({reason}); "
                                                           f"`ar-tui status {self.run_dir}` tells whether it runs"))

    def _receive(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        if "event" in message:
            try:
                event = ev.event_from_dict(message["event"])
            except (ValueError, TypeError):
                return  # a newer engine's event kind: this app cannot show it
            if isinstance(event, ev.RunStopped):
                self._saw_run_stopped = True
            self._deliver(event)
            return
        future = self._replies.pop(message.get("id"), None) if isinstance(message.get("id"), int) else None
        if future is not None and not future.done():
            if message.get("ok"):
                future.set_result(message.get("result"))
            else:
                future.set_exception(RemoteError(str(message.get("error", "refused"))))

    def _deliver(self, event: ev.Event) -> None:
        if self._early is not None:
            # Nobody watches yet: keep it for the first observer, dropping
            # training output first if the app is very slow to start.
            if len(self._early) < _EARLY_EVENTS_LIMIT or not isinstance(event, ev.LogLine):
                self._early.append(event)
            return
        for observer in list(self.observers):
            try:
                observer(event)
            except Exception as exc:  # one observer's bug must not cut the others off
                print(f"ar-tui: an observer failed on {event.kind}: {exc!r}", file=sys.stderr)

    # ------------------------------------------------------------------ requests

    async def call(self, cmd: str, **args: Any) -> Any:
        """Send a command and wait for its reply; raises RemoteError."""
        return await self._send(cmd, args)

    def _send(self, cmd: str, args: dict[str, Any]) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        if not self.connected or self._writer is None:
            future.set_exception(RemoteError("not connected to the engine"))
            return future
        self._next_id += 1
        self._replies[self._next_id] = future
        self._writer.write(encode({"cmd": cmd, "id": self._next_id, **args}))
        return future

    def _command(self, cmd: str, what: str, **args: Any) -> bool:
        """Fire a command; its failure (or a False answer) arrives as a Notice."""
        future = self._send(cmd, args)

        def answered(done: asyncio.Future) -> None:
            if done.cancelled():
                return
            error = done.exception()
            if error is not None:
                self._deliver(ev.Notice(level="error", message=f"{what}: {error}"))
            elif done.result() is False:
                self._deliver(ev.Notice(level="warning", message=f"{what}: the engine had nothing to act on"))

        future.add_done_callback(answered)
        return self.connected

    # ------------------------------------------------------------------ EngineHandle

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        self.observers.append(observer)
        early, self._early = self._early, None
        for event in early or ():
            self._deliver(event)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self.observers.remove(observer)

        return unsubscribe

    def pause(self) -> None:
        self._command("pause", "pause")

    def resume(self) -> None:
        self._command("resume", "resume")

    def set_attended(self, attended: bool) -> None:
        self._command("set_attended", "attended mode" if attended else "unattended mode", attended=bool(attended))

    def veto(self, exp: int | None = None) -> bool:
        return self._command("veto", f"veto of experiment {exp if exp is not None else '(current)'}", exp=exp)

    def force_keep(self, exp: int | None = None) -> bool:
        return self._command("force_keep", f"keep of experiment {exp if exp is not None else '(current)'}", exp=exp)

    def start_now(self, exp: int | None = None) -> bool:
        return self._command("start_now", f"start of experiment {exp if exp is not None else '(current)'}", exp=exp)

    def request_stop(self, now: bool = False) -> None:
        self._command("stop", "stop", now=bool(now))


async def request(run_dir: Path, cmd: str, **args: Any) -> Any:
    """One command to a run's engine; raises EngineNotRunning or RemoteError."""
    reader, writer = await _open(Path(run_dir))
    try:
        writer.write(encode({"cmd": cmd, "id": 1, **args}))
        await writer.drain()
        while True:
            line = await asyncio.wait_for(reader.readuntil(b"\n"), 10.0)
            message = json.loads(line)
            if isinstance(message, dict) and message.get("id") == 1:
                break
    except (asyncio.IncompleteReadError, ConnectionError, OSError, asyncio.TimeoutError) as exc:
        raise RemoteError(f"the engine in {run_dir} did not answer {cmd} ({type(exc).__name__})") from None
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    if not message.get("ok"):
        raise RemoteError(str(message.get("error")))
    return message.get("result")


# ---------------------------------------------------------------------- runs on this machine


def fold_history(run_dir: Path) -> RunView:
    view = RunView()
    for event in read_history(RunDir(run_dir).events, 1 << 62):
        view.apply(event)
    return view


async def run_status(run_dir: Path) -> dict[str, Any]:
    """The status figures of a run: asked of its engine when it is live,
    folded from events.jsonl when it is not (a dead run says so)."""
    run_dir = Path(run_dir).resolve()
    if not RunDir(run_dir).has_records():
        raise NotARunDir(f"{run_dir} is not an ar-tui run dir (no events.jsonl)")
    if engine_pid(run_dir) is not None:
        with contextlib.suppress(EngineNotRunning, RemoteError, ValueError):
            return await request(run_dir, "status")
    clean_stale(run_dir)
    view = await asyncio.to_thread(fold_history, run_dir)
    summary = view.summary()
    pid = engine_pid(run_dir)
    summary.update(live=pid is not None, pid=pid, run_dir=str(run_dir), clients=0)
    if view.stopped is not None:
        summary["stopped_reason"] = view.stopped.reason
    elif pid is None:
        summary["state"] = STATE_DEAD
    return summary


async def list_runs() -> list[dict[str, Any]]:
    statuses = []
    for run_dir in find_run_dirs():
        with contextlib.suppress(NotARunDir, EngineNotRunning, OSError):
            statuses.append(await run_status(run_dir))
    return statuses
