"""An engine that outlives the terminal: start one in its own session and
wait until its socket answers, or wait for one to exit."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path

from ar_tui.core.control.client import EngineExited, EngineNotRunning, RemoteError, request
from ar_tui.core.records.rundir import RunDir, engine_pid, socket_answers


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


async def start_detached(run_args: list[str], run_dir: Path, timeout_s: float = 120.0) -> int:
    """Start `ar-tui <run_args>` as a background engine that outlives this
    terminal (its own session, no terminal, output to engine.out) and wait
    until its socket answers. Returns its pid; raises EngineNotRunning with the
    engine's own error line when it exits first."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    out_path = RunDir(run_dir).engine_out
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
            raise EngineExited(_last_error_line(out_path, start_offset) or f"the engine exited with code {code}", code)
        if engine_pid(run_dir) == process.pid and socket_answers(RunDir(run_dir).socket):
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
