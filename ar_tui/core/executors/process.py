"""A child process as the executors start it: its environment (no secrets,
the run marker), its output split into lines, and its whole tree ended.

Output is split on both `\\r` and `\\n` (progress bars use `\\r`) and cut to a
bounded line, so memory stays bounded whatever the child prints. Every
process an engine starts carries the run marker, so a resumed engine finds
and ends the orphans of one that was killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import re
import signal
import sys
from pathlib import Path
from typing import Callable

from ar_tui.core.interpreter import TargetPython
from ar_tui.core.sandbox.policy import RunScratch

# Environment variables never passed to a training script: it could print them.
# AR_TUI_NOTIFY: the --notify URLs a detached engine is handed (ar_tui.notify).
SECRET_ENV_PREFIXES = ("ANTHROPIC_", "OPENAI_", "AR_TUI_NOTIFY")

# A single line is cut here for display and pattern matching; the log file
# still receives every byte.
MAX_LINE_CHARS = 8192
READ_CHUNK = 1 << 14
# Between SIGTERM and SIGKILL, so a child can flush its own files.
TERM_GRACE_S = 3.0
# Every process an engine starts carries this, so a resumed engine can find and
# end the orphans of one that was killed. Its value is `run_marker(run_dir)`,
# which does not tell the child where the run dir is.
RUN_MARKER_ENV = "AR_TUI_RUN"

_NON_PRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]|\x1b\[[0-9;?]*[A-Za-z]")


def die_with_parent() -> None:
    """In the child, before exec: get SIGKILL if the engine dies, so a kill -9
    of the engine leaves no training process holding the GPU."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def clean_line(text: str) -> str:
    return _NON_PRINTABLE.sub("", text)


class LineSplitter:
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


def child_env(run_dir: Path, extra: dict[str, str], python: TargetPython, scratch: RunScratch) -> dict[str, str]:
    """The environment of a run of the target's code: ours without secrets,
    the target's extra variables, its interpreter, and the run marker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SECRET_ENV_PREFIXES)}
    env.update(extra)
    # `python` in a target's commands is the target's interpreter (ar_tui.core.interpreter).
    env = python.child_env(env, scratch.bin)
    env["PYTHONUNBUFFERED"] = "1"
    env[RUN_MARKER_ENV] = run_marker(run_dir)
    return env
