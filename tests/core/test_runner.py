"""The local executor: real child processes, bounded memory, whole-group kills."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from pathlib import Path

import psutil

from ar_tui.core.executors.base import RunSpec
from ar_tui.core.executors.local import LocalExecutor


def spec(tmp_path: Path, code: str, timeout: float = 30, **kw) -> RunSpec:
    script = tmp_path / "child.py"
    script.write_text(code)
    return RunSpec(command=f"{sys.executable} {script}", cwd=tmp_path, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                   log_path=tmp_path / "logs" / "1.log", timeout_s=timeout, **kw)


async def run(s: RunSpec, stop: asyncio.Event | None = None):
    lines: list[tuple[str, bool]] = []
    result = await LocalExecutor().run(s, lambda t, r: lines.append((t, r)), stop or asyncio.Event())
    return result, lines


async def test_progress_lines_split_on_carriage_return_and_marked_as_replacing(tmp_path: Path) -> None:
    code = 'import sys\nfor i in range(3): sys.stdout.write(f"step {i}\\r")\nprint()\nprint("val_bpb: 1.5")\n'
    result, lines = await run(spec(tmp_path, code, patterns={"metric": re.compile(r"^val_bpb:\s*(\S+)")}))
    assert result.exit_code == 0
    assert lines[:3] == [("step 0", False), ("step 1", True), ("step 2", True)]
    assert result.matches["metric"] == "1.5"


async def test_flood_of_output_is_logged_in_full_with_bounded_memory(tmp_path: Path) -> None:
    # 100 MB of output, a 10 MB line and binary garbage.
    code = (
        "import os, sys\n"
        "out = sys.stdout.buffer\n"
        "line = b'x' * 1023 + b'\\n'\n"
        "block = line * 1024\n"
        "for _ in range(90): out.write(block)\n"
        "out.write(b'y' * (10 * 1024 * 1024) + b'\\n')\n"
        "out.write(os.urandom(1 << 20) + b'\\n')\n"
        "out.write(b'val_bpb: 0.99\\n')\n"
    )
    s = spec(tmp_path, code, patterns={"metric": re.compile(r"^val_bpb:\s*(\S+)")})
    count = 0
    longest = 0

    def on_line(text: str, replace: bool) -> None:
        nonlocal count, longest
        count += 1
        longest = max(longest, len(text))

    rss_before = psutil.Process().memory_info().rss
    result = await LocalExecutor().run(s, on_line, asyncio.Event())
    rss_after = psutil.Process().memory_info().rss
    assert result.exit_code == 0
    assert result.matches["metric"] == "0.99"
    assert result.output_bytes == s.log_path.stat().st_size > 100 * 1024 * 1024
    assert count > 90 * 1024
    assert longest <= 8192 + len(" [line cut]")
    assert len(result.tail) < 60 * 9000
    # Nothing near the size of the output was held in memory.
    assert rss_after - rss_before < 50 * 1024 * 1024


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    started = time.monotonic()
    result, lines = await run(spec(tmp_path, code, timeout=2))
    assert result.timed_out and not result.stopped
    assert time.monotonic() - started < 20
    grandchild = int(lines[0][0])
    await asyncio.sleep(0.2)
    assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE


async def test_stop_event_ends_the_run_early(tmp_path: Path) -> None:
    stop = asyncio.Event()
    code = "import time\nprint('started', flush=True)\ntime.sleep(600)\n"
    task = asyncio.create_task(run(spec(tmp_path, code), stop))
    await asyncio.sleep(1.0)
    stop.set()
    result, _ = await asyncio.wait_for(task, 20)
    assert result.stopped and not result.timed_out
    assert result.exit_code != 0
