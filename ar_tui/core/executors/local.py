"""The local executor: each run a child process group on this machine.

Its output is written in full to a log file while memory stays bounded: only
the last lines and the lines that match the metric patterns are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import deque
from pathlib import Path
from typing import Callable

from ar_tui.core.executors.base import OnLine, RunResult, RunSpec, StepwiseExecutor
from ar_tui.core.executors.limits import WATCH_S, RunLimits, bytes_under, over_limit
from ar_tui.core.executors.process import READ_CHUNK, TERM_GRACE_S, LineSplitter, die_with_parent, kill_group, kill_tree

TAIL_LINES = 60


class LocalExecutor(StepwiseExecutor):
    """Runs each experiment as a child process group on this machine."""

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

        splitter = LineSplitter(handle_line)
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
            """End the run at the first limit it goes over (see ar_tui.core.executors.limits)."""
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


def _child_setup(limits: RunLimits | None, device: str) -> Callable[[], None]:
    """What the child does before exec: die with the engine, and take its limits."""
    def setup() -> None:
        die_with_parent()
        if limits is not None:
            limits.apply_in_child(device)
    return setup


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
