"""The other end of the control socket: an `EngineHandle` for an attached app,
one-shot requests for `ar-tui status` / `stop`, the list of runs on this
machine, and starting an engine detached from the terminal.

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
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from ar_tui.core import events as ev
from ar_tui.core.control import Observer, RunView
from ar_tui.core.engine import PID_FILE, engine_pid
from ar_tui.core.server import (
    EVENTS_FILE,
    SOCKET_NAME,
    encode,
    read_history,
    registered_run_dirs,
    socket_address,
    socket_answers,
)

# Events carry diffs and crash tails; a generous cap that still bounds memory.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# Events received before the app subscribes (it subscribes once it is drawn).
_EARLY_EVENTS_LIMIT = 50_000
ENGINE_OUT = "engine.out"
STATE_DEAD = "dead"  # the engine died without stopping the run; `run` resumes it


class EngineNotRunning(Exception):
    """No live engine answers for this run dir. The message is one line."""


class RemoteError(Exception):
    """The engine refused a request, or the connection is gone."""


def clean_stale(run_dir: Path) -> bool:
    """Remove the socket and pid file a crashed engine left behind. Returns
    True when there was something stale. A live engine's files are kept."""
    run_dir = Path(run_dir)
    pid_file = run_dir / PID_FILE
    try:
        recorded = pid_file.read_text()
    except OSError:
        recorded = None
    if engine_pid(run_dir) is not None:
        return False
    cleaned = False
    sock = run_dir / SOCKET_NAME
    if (sock.exists() or sock.is_symlink()) and not socket_answers(sock):
        with contextlib.suppress(OSError):
            sock.unlink()
            cleaned = True
    # Only the pid file we judged stale: a new engine may have just written its own.
    with contextlib.suppress(OSError):
        if recorded is not None and pid_file.read_text() == recorded and engine_pid(run_dir) is None:
            pid_file.unlink()
            cleaned = True
    return cleaned


async def _open(run_dir: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    path = Path(run_dir) / SOCKET_NAME
    try:
        with socket_address(path) as address:
            return await asyncio.wait_for(asyncio.open_unix_connection(address, limit=MAX_MESSAGE_BYTES), 5.0)
    except (OSError, asyncio.TimeoutError) as exc:
        if engine_pid(run_dir) is None:
            clean_stale(run_dir)
            raise EngineNotRunning(f"no engine is running in {run_dir}") from None
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise EngineNotRunning(f"the engine in {run_dir} does not answer on {SOCKET_NAME} ({reason})") from None


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
        return await asyncio.to_thread(lambda: list(read_history(self.run_dir / EVENTS_FILE, end)))

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
    for event in read_history(Path(run_dir) / EVENTS_FILE, 1 << 62):
        view.apply(event)
    return view


def is_run_dir(path: Path) -> bool:
    return (path / EVENTS_FILE).is_file() or (path / "results.tsv").is_file()


async def run_status(run_dir: Path) -> dict[str, Any]:
    """The status figures of a run: asked of its engine when it is live,
    folded from events.jsonl when it is not (a dead run says so)."""
    run_dir = Path(run_dir).resolve()
    if not is_run_dir(run_dir):
        raise EngineNotRunning(f"{run_dir} is not an ar-tui run dir (no events.jsonl)")
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


def find_run_dirs() -> list[Path]:
    """Run dirs on this machine: those under runs_root() and those registered
    by runs with a custom --run-dir; most recently active first."""
    from ar_tui.core.targets import runs_root

    found: dict[Path, float] = {}
    candidates = []
    root = runs_root()
    if root.is_dir():
        candidates.extend(p for p in root.iterdir() if p.is_dir())
    candidates.extend(Path(p) for p in registered_run_dirs())
    for path in candidates:
        if is_run_dir(path):
            found[path.resolve()] = _last_active(path)
    return sorted(found, key=lambda p: found[p], reverse=True)


def _last_active(run_dir: Path) -> float:
    times = []
    for name in (EVENTS_FILE, "results.tsv", "state.json"):
        with contextlib.suppress(OSError):
            times.append((run_dir / name).stat().st_mtime)
    return max(times, default=0.0)


async def list_runs() -> list[dict[str, Any]]:
    statuses = []
    for run_dir in find_run_dirs():
        with contextlib.suppress(EngineNotRunning, OSError):
            statuses.append(await run_status(run_dir))
    return statuses


def engine_is_live(run_dir: Path) -> bool:
    return engine_pid(run_dir) is not None


def wait_for_exit(pid: int, timeout: float | None = None) -> bool:
    """Wait until the engine process `pid` has exited; False on timeout."""
    import psutil

    try:
        psutil.Process(pid).wait(timeout)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        return False
    return True


def live_run_dirs() -> list[Path]:
    return [p for p in find_run_dirs() if engine_pid(p) is not None]


def headline_state(status: dict[str, Any]) -> str:
    """One word for a run: the engine's own state says `idle` while its slots
    train, which is not what a person asking means."""
    state = status.get("state") or "?"
    if state in (STATE_DEAD, ev.STATE_STOPPED, ev.STATE_STOPPING):
        return state
    if status.get("paused"):
        return ev.STATE_PAUSED
    busy = [s["state"] for s in status.get("slots") or () if s.get("state") != ev.STATE_IDLE]
    if state in (ev.STATE_IDLE, ev.STATE_PROPOSING) and busy:
        return busy[0]
    return state


def describe_status(status: dict[str, Any]) -> str:
    """The one line `ar-tui status` prints."""
    parts = [status.get("tag") or Path(status.get("run_dir", "")).name, headline_state(status)]
    if status.get("experiment") is not None and status.get("live"):
        parts.append(f"exp {status['experiment']}")
    parts.append(f"{status.get('experiments', 0)} done, {status.get('kept', 0)} kept")
    metric = status.get("metric") or "metric"
    if status.get("best") is not None:
        best = f"best {metric} {status['best']:.6f}"
        if status.get("improvement_pct") is not None:
            best += f" ({status['improvement_pct']:+.2f}% vs baseline {status['baseline']:.6f})"
        parts.append(best)
    parts.append(f"${status.get('cost_usd', 0.0):.2f}")
    slots = status.get("slots") or []
    if slots and status.get("live"):
        parts.append("slots " + ", ".join(
            f"{s['device']} {s['state']}" + (f" exp {s['exp']}" if s.get("exp") is not None else "") for s in slots))
    if status.get("stopped_reason"):
        parts.append(f"stopped: {status['stopped_reason']}")
    if status.get("state") == STATE_DEAD:
        parts.append("the engine died; `ar-tui run` with this run's tag and --run-dir resumes it")
    return "  ".join(parts)


# ---------------------------------------------------------------------- resuming and detaching


def resume_command(run_dir: Path) -> list[str]:
    """The `ar-tui run` arguments that resume this run, from its last RunStarted."""
    run_dir = Path(run_dir).resolve()
    started = None
    for event in read_history(run_dir / EVENTS_FILE, 1 << 62):
        if isinstance(event, ev.RunStarted):
            started = event
    if started is None:
        return ["run", "--run-dir", str(run_dir)]
    args = ["run", "--target", started.target, "--tag", started.tag, "--run-dir", str(run_dir)]
    if started.agent in ("offline", "claude"):
        args += ["--agent", started.agent]
    if started.model:
        args += ["--model", started.model]
    if not started.attended:
        args.append("--unattended")
    else:
        args += ["--veto-window", f"{started.veto_window_s:g}"]
    gpus = [s.split(":", 1)[1] for s in started.slots if s.startswith("cuda:")]
    if gpus:
        args += ["--devices", ",".join(gpus)]
    else:
        args += ["--slots", str(len(started.slots))]
    args += ["--lookahead", str(started.lookahead)]
    for flag, value in (("--max-experiments", started.max_experiments), ("--hours", started.hours),
                        ("--budget-usd", started.budget_usd), ("--time-budget", started.time_budget_s)):
        if value is not None:
            args += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return args


def detached_argv(argv: list[str]) -> list[str]:
    """The `run` arguments for the background engine: the user's own without
    --detach (or an abbreviation argparse accepts), headless. The caller
    appends --tag and --run-dir so that parent and child agree on them."""
    kept = [a for a in argv if not (a.startswith("--det") and "--detach".startswith(a))]
    if kept and kept[0] == "run":
        kept = kept[1:]
    return ["run", *kept, "--headless"]


async def start_detached(run_args: list[str], run_dir: Path, timeout_s: float = 120.0) -> int:
    """Start `ar-tui <run_args>` as a background engine that outlives this
    terminal (its own session, no terminal, output to engine.out) and wait
    until its socket answers. Returns its pid; raises EngineNotRunning with the
    engine's own error line when it exits first."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    out_path = run_dir / ENGINE_OUT
    start_offset = out_path.stat().st_size if out_path.exists() else 0
    with open(out_path, "ab") as out:
        # Popen rather than asyncio's subprocess: asyncio kills a child whose
        # transport it closes, and this one must outlive us.
        process = subprocess.Popen(
            [sys.executable, "-m", "ar_tui.cli", *run_args],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
        )
    deadline = time.monotonic() + timeout_s
    while True:
        code = process.poll()
        if code is not None:
            raise EngineNotRunning(_last_error_line(out_path, start_offset) or f"the engine exited with code {code}")
        if engine_pid(run_dir) == process.pid and socket_answers(run_dir / SOCKET_NAME):
            with contextlib.suppress(EngineNotRunning, RemoteError):
                await request(run_dir, "status")
                return process.pid
        if time.monotonic() > deadline:
            raise EngineNotRunning(f"the engine (pid {process.pid}) did not open its socket within {timeout_s:g} s; "
                                   f"see {out_path}")
        await asyncio.sleep(0.1)


def _last_error_line(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ar-tui:")]
    return (errors or lines or [""])[-1]
