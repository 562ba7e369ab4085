"""The run dir: every path in it named once, and who owns it.

A run dir holds one run's durable records (results.tsv, events.jsonl,
state.json, the stored options), its logs, diffs and checkpoints, the slots'
worktrees, and, while an engine lives, its pid file and control socket. Every
other module asks `RunDir` for a path instead of spelling a file name, so the
layout is written down here and nowhere else.

Ownership: one engine per run dir. `claim` writes our pid after checking that
no live engine holds it; a pid file left by a dead engine is stale and is
replaced. `release` removes only a pid file that is still ours.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from ar_tui.core.errors import UserError

LEDGER_FILE = "results.tsv"
EVENTS_FILE = "events.jsonl"
STATE_FILE = "state.json"
OPTIONS_FILE = "options.json"
PID_FILE = "engine.pid"
SOCKET_FILE = "control.sock"
ENGINE_OUT_FILE = "engine.out"
ENGINE_ERROR_FILE = "engine-error.log"
REPORT_FILE = "report.md"
CHART_FILE = "progress.png"
NOTES_FILE = "notes.md"
PROGRAM_PROPOSAL_FILE = "program.proposed.md"


@dataclass(frozen=True)
class RunDir:
    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    # ------------------------------------------------------------------ files

    @property
    def ledger(self) -> Path:
        return self.path / LEDGER_FILE

    @property
    def events(self) -> Path:
        return self.path / EVENTS_FILE

    @property
    def state(self) -> Path:
        return self.path / STATE_FILE

    @property
    def options(self) -> Path:
        return self.path / OPTIONS_FILE

    @property
    def pid_file(self) -> Path:
        return self.path / PID_FILE

    @property
    def socket(self) -> Path:
        return self.path / SOCKET_FILE

    @property
    def engine_out(self) -> Path:
        return self.path / ENGINE_OUT_FILE

    @property
    def engine_error(self) -> Path:
        return self.path / ENGINE_ERROR_FILE

    @property
    def report(self) -> Path:
        return self.path / REPORT_FILE

    @property
    def chart(self) -> Path:
        return self.path / CHART_FILE

    @property
    def notes(self) -> Path:
        return self.path / NOTES_FILE

    @property
    def program_proposal(self) -> Path:
        return self.path / PROGRAM_PROPOSAL_FILE

    # ------------------------------------------------------------------ folders

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def diffs(self) -> Path:
        return self.path / "diffs"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def worktrees(self) -> Path:
        return self.path / "worktrees"

    def log(self, exp: int, attempt: int = 1) -> Path:
        """The training log of one attempt; the first attempt keeps the plain name."""
        name = f"{exp}.log" if attempt <= 1 else f"{exp}.{attempt}.log"
        return self.logs / name

    def eval_log(self, exp: int, attempt: int = 1) -> Path:
        return self.log(exp, attempt).with_suffix(".eval.log")

    @property
    def prepare_log(self) -> Path:
        return self.logs / "prepare.log"

    def diff(self, exp: int) -> Path:
        return self.diffs / f"{exp}.diff"

    def checkpoint(self, exp: int, attempt: int) -> Path:
        return self.checkpoints / f"{exp}.{attempt}.pt"

    def slot_worktree(self, index: int) -> Path:
        return self.worktrees / f"slot-{index}"

    @property
    def propose_worktree(self) -> Path:
        return self.worktrees / "propose"

    def has_records(self) -> bool:
        """True when this folder holds a run (a ledger or an event log)."""
        return self.events.is_file() or self.ledger.is_file()

    # ------------------------------------------------------------------ ownership

    def engine_pid(self) -> int | None:
        """The pid of the live engine that owns this run dir, or None (no pid
        file, or a stale one left by a crashed engine)."""
        return engine_pid(self.path)

    def claim(self) -> None:
        """Make this process the run dir's one engine; raises UserError when a
        live engine holds it or the folder cannot be written."""
        other = self.engine_pid()
        if other is not None and other != os.getpid():
            raise UserError(f"{self.path} is in use by a running engine (pid {other}); attach to it instead")
        try:
            self.pid_file.write_text(f"{os.getpid()}\n")
        except OSError as exc:
            raise UserError(f"{self.path}: run dir not writable ({exc.strerror or exc})") from None

    def release(self) -> None:
        """Remove the pid file if it is still ours (a newer engine may own the dir)."""
        if self.engine_pid() == os.getpid():
            with contextlib.suppress(OSError):
                self.pid_file.unlink()


def engine_pid(run_dir: Path) -> int | None:
    """The pid of the live engine that owns `run_dir`, or None (no pid file,
    or a stale one left by a crashed engine)."""
    try:
        pid = int((Path(run_dir) / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    if pid == os.getpid():
        return pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    try:
        import psutil

        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        # A recycled pid belongs to some other program.
        cmdline = " ".join(proc.cmdline())
        if "ar_tui" not in cmdline and "ar-tui" not in cmdline:
            return None
    except Exception:
        pass
    return pid
