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

from ar_tui.core.executors.base import OnLine, RunResult, RunSpec, StepwiseExecutor
from ar_tui.core.executors.process import READ_CHUNK, TERM_GRACE_S, LineSplitter, die_with_parent, kill_group, kill_tree

TAIL_LINES = 60


class LocalExecutor(StepwiseExecutor):
    """Runs each experiment as a child process group on this machine."""

    async def run(self, spec: RunSpec, on_line: OnLine, stop: asyncio.Event) -> RunResult:
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
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
            preexec_fn=die_with_parent,
            limit=READ_CHUNK,
        )
        pgid = proc.pid
        timed_out = False
        stopped = False
        assert proc.stdout is not None

        async def pump() -> None:
            nonlocal output_bytes
            with open(spec.log_path, "ab", buffering=0) as log:
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
            splitter.close()

        pump_task = asyncio.create_task(pump())
        stop_task = asyncio.create_task(stop.wait())
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
        except BaseException:
            # The engine itself is being cancelled: leave nothing running.
            kill_tree(pgid)
            raise
        finally:
            stop_task.cancel()
            if not pump_task.done():
                pump_task.cancel()
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
        )
