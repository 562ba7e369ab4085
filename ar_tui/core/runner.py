"""Running training commands: the executor interface and the local executor.

A run is a child process in its own process group, unbuffered, its output
split on both `\\r` and `\\n` (progress bars use `\\r`), written in full to a
log file, while memory stays bounded whatever the child prints: only the last
lines and the lines that match the metric patterns are kept.

The engine talks to an `Executor`, so a later executor can start the same runs
on a cluster (Ray, Slurm) without touching the engine's decisions. The sandbox
travels in the `RunSpec` and the executor applies it, so an executor on
another machine confines the run there.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import os
import re
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:
    from ar_tui.core.executors.plan import (OnCapacity, OnEvaluating, OnNodeSandbox, OnNotice, TrialPlan,
                                            TrialSteps)

from ar_tui.core.limits import WATCH_S, RunLimits, bytes_under, over_limit
from ar_tui.core.sandbox import Sandbox, SandboxPolicy

# A single line is cut here for display and pattern matching; the log file
# still receives every byte.
MAX_LINE_CHARS = 8192
TAIL_LINES = 60
READ_CHUNK = 1 << 14
# Between SIGTERM and SIGKILL, so a child can flush its own files.
TERM_GRACE_S = 3.0
# Every process an engine starts carries this, so a resumed engine can find and
# end the orphans of one that was killed. Its value is `run_marker(run_dir)`,
# which does not tell the child where the run dir is.
RUN_MARKER_ENV = "AR_TUI_RUN"

_NON_PRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]|\x1b\[[0-9;?]*[A-Za-z]")

OnLine = Callable[[str, bool], None]  # (text, replaces_previous_line)


@dataclass
class RunSpec:
    command: str
    cwd: Path
    env: dict[str, str]
    log_path: Path
    timeout_s: float
    device: str = "cpu"
    patterns: dict[str, re.Pattern[str]] = field(default_factory=dict)  # name -> regex with one group
    # The command runs confined when both are set and the sandbox has a backend.
    sandbox: Sandbox | None = None
    policy: SandboxPolicy | None = None
    # Caps on the run's memory, processes and writes (ar_tui.core.limits); None: none.
    limits: RunLimits | None = None
    write_paths: list[Path] = field(default_factory=list)  # where its writes are counted: worktree, scratch


@dataclass
class RunResult:
    exit_code: int | None
    timed_out: bool
    stopped: bool  # ended by the engine (veto, stop --now)
    seconds: float
    output_bytes: int
    tail: str
    matches: dict[str, str]  # pattern name -> last captured value
    limit: str = ""  # the limit the run hit, in words, when one ended it


class Executor(Protocol):
    async def run(self, spec: RunSpec, on_line: OnLine, stop: asyncio.Event) -> RunResult:
        """Run `spec` to completion, calling `on_line` for each output line;
        setting `stop` ends the run early."""
        ...

    async def run_trial(self, plan: "TrialPlan", on_line: OnLine, stop: asyncio.Event,
                        on_evaluating: "OnEvaluating | None" = None,
                        on_notice: "OnNotice | None" = None,
                        on_capacity: "OnCapacity | None" = None,
                        on_node_sandbox: "OnNodeSandbox | None" = None) -> "TrialSteps":
        """Run a trial's steps (training, protected-file check, evaluator) on
        one machine and return their results; see `executors.plan`."""
        ...


def _child_setup(limits: RunLimits | None, device: str) -> Callable[[], None]:
    def setup() -> None:
        _die_with_parent()
        if limits is not None:
            limits.apply_in_child(device)
    return setup


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL if the engine dies, so a kill -9
    of the engine leaves no training process holding the GPU."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def clean_line(text: str) -> str:
    return _NON_PRINTABLE.sub("", text)


class _LineSplitter:
    """Splits a byte stream on \\r and \\n, remembering whether a line ended
    with \\r so that the next one overwrites it."""

    def __init__(self, on_line: Callable[[str, bool], None]) -> None:
        self.on_line = on_line
        self.partial = bytearray()
        self.partial_overflowed = False
        self.replace_next = False

    def feed(self, data: bytes) -> None:
        start = 0
        for match in re.finditer(rb"\r\n|\r|\n", data):
            self._take(data[start:match.start()])
            self._emit()
            self.replace_next = match.group() == b"\r"
            start = match.end()
        self._take(data[start:])

    def _take(self, piece: bytes) -> None:
        room = MAX_LINE_CHARS - len(self.partial)
        if room > 0:
            self.partial += piece[:room]
        if len(piece) > max(room, 0):
            self.partial_overflowed = True

    def _emit(self) -> None:
        text = clean_line(self.partial.decode("utf-8", errors="replace"))
        if self.partial_overflowed:
            text += " [line cut]"
        self.on_line(text, self.replace_next)
        self.partial.clear()
        self.partial_overflowed = False

    def close(self) -> None:
        if self.partial:
            self._emit()


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def kill_tree(pid: int) -> None:
    """SIGKILL every descendant of `pid`, then its process group. A process
    that left the group (`setsid`) is still a descendant while the sandbox's
    reaper, a child subreaper, is alive: kill the tree before the reaper."""
    import psutil

    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for _ in range(20):  # a child that forks while we kill is found on the next pass
            children = root.children(recursive=True)
            if not children:
                break
            for child in children:
                with contextlib.suppress(psutil.Error):
                    child.kill()
    kill_group(pid, signal.SIGKILL)


def run_marker(run_dir: Path) -> str:
    """The value of RUN_MARKER_ENV for a run dir: opaque, so a child learns
    nothing of where the run dir is, and the same for every engine of it."""
    return "run-" + hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:32]


class LocalExecutor:
    """Runs each experiment as a child process group on this machine."""

    async def run_trial(self, plan: "TrialPlan", on_line: OnLine, stop: asyncio.Event,
                        on_evaluating: "OnEvaluating | None" = None,
                        on_notice: "OnNotice | None" = None,
                        on_capacity: "OnCapacity | None" = None,
                        on_node_sandbox: "OnNodeSandbox | None" = None) -> "TrialSteps":
        # This machine's slots never leave the pool and its sandbox is the
        # engine's own: on_capacity and on_node_sandbox are for a cluster's.
        from ar_tui.core.executors.plan import run_trial_steps

        return await run_trial_steps(self, plan, on_line, stop, on_evaluating)

    async def run(self, spec: RunSpec, on_line: OnLine, stop: asyncio.Event) -> RunResult:
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        matches: dict[str, str] = {}
        output_bytes = 0

        def handle_line(text: str, replace: bool) -> None:
            if replace and tail:
                tail[-1] = text
            else:
                tail.append(text)
            for name, pattern in spec.patterns.items():
                found = pattern.search(text)
                if found:
                    matches[name] = found.group(1)
            on_line(text, replace)

        splitter = _LineSplitter(handle_line)
        started = time.monotonic()
        confined = spec.sandbox is not None and spec.sandbox.confined and spec.policy is not None
        argv = spec.sandbox.wrap(spec.command, spec.cwd, spec.policy) if confined else ["/bin/sh", "-c", spec.command]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=str(spec.cwd),
            env=spec.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_child_setup(spec.limits, spec.device),
            limit=READ_CHUNK,
        )
        pgid = proc.pid
        timed_out = False
        stopped = False
        assert proc.stdout is not None

        log = _RunLog(spec.log_path)

        async def pump() -> None:
            nonlocal output_bytes
            try:
                while True:
                    data = await proc.stdout.read(READ_CHUNK)
                    if not data:
                        break
                    output_bytes += len(data)
                    log.write(data)
                    splitter.feed(data)
                    # A read of buffered data returns without yielding: give
                    # the loop (key presses, the app's refresh) a turn between
                    # chunks, or a flooding child starves everything else.
                    await asyncio.sleep(0)
            finally:
                log.close()
            splitter.close()

        limit_hit = ""

        async def watch() -> None:
            """End the run at the first limit it goes over (see ar_tui.core.limits)."""
            nonlocal limit_hit
            limits = spec.limits
            assert limits is not None
            before = await asyncio.to_thread(bytes_under, spec.write_paths) if limits.writes else 0
            ticks = 0
            while True:
                await asyncio.sleep(WATCH_S)
                ticks += 1
                # Counting bytes walks the worktree: once a second is enough.
                hit = await asyncio.to_thread(over_limit, limits, pgid, spec.write_paths, before, ticks % 4 == 0)
                if hit:
                    limit_hit = hit
                    kill_tree(pgid)
                    return

        pump_task = asyncio.create_task(pump())
        stop_task = asyncio.create_task(stop.wait())
        watch_task = asyncio.create_task(watch()) if spec.limits is not None else None
        try:
            done, _ = await asyncio.wait(
                {pump_task, stop_task}, timeout=spec.timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            if pump_task not in done:
                if stop_task in done:
                    stopped = True
                    kill_group(pgid, signal.SIGTERM)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(asyncio.shield(pump_task), TERM_GRACE_S)
                else:
                    timed_out = True
                kill_tree(pgid)
                # The group is gone; the pipe closes once every member has exited.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(pump_task), 10)
            exit_code = await proc.wait()
            if pump_task.done() and not pump_task.cancelled() and pump_task.exception() is not None:
                raise pump_task.exception()  # a bug in the line handling: the engine records it
        except BaseException:
            # The engine itself is being cancelled: leave nothing running.
            kill_tree(pgid)
            raise
        finally:
            stop_task.cancel()
            if not pump_task.done():
                pump_task.cancel()
            if watch_task is not None:
                watch_task.cancel()
            # Retrieved here whatever happened, so no task's exception is left
            # for the garbage collector to complain about.
            await asyncio.gather(pump_task, stop_task, *([watch_task] if watch_task else []), return_exceptions=True)
            # Children that outlived their parent (a dataloader worker) go too.
            kill_group(pgid, signal.SIGKILL)
        return RunResult(
            exit_code=exit_code,
            timed_out=timed_out,
            stopped=stopped,
            seconds=time.monotonic() - started,
            output_bytes=output_bytes,
            tail="\n".join(tail),
            matches=matches,
            limit=limit_hit or (spec.limits.hit_by("\n".join(tail)) or "" if spec.limits and exit_code else ""),
        )


class _RunLog:
    """A run's log file. Writing it must never end the run or the engine: a
    full disk (or any other failure to write) stops the log, says so in its
    last line when there is room, and the output still reaches the views and
    the metric patterns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.error: str | None = None
        self._handle = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(path, "ab", buffering=0)
        except OSError as exc:
            self.error = exc.strerror or str(exc)

    def write(self, data: bytes) -> None:
        if self._handle is None:
            return
        try:
            self._handle.write(data)
        except OSError as exc:
            self.error = exc.strerror or str(exc)
            with contextlib.suppress(OSError):
                self._handle.write(f"\n[ar-tui: the log stops here: {self.error}]\n".encode())
            self.close()

    def close(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None


def kill_orphans(run_dir: Path) -> int:
    """End every process left by an earlier engine for this run dir (found by
    the marker in its environment). Returns how many were ended."""
    import psutil

    marker = run_marker(run_dir)
    me = os.getpid()
    ended = 0
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me:
            continue
        try:
            if proc.environ().get(RUN_MARKER_ENV) == marker:
                proc.kill()
                ended += 1
        except (psutil.Error, OSError):
            continue
    return ended
