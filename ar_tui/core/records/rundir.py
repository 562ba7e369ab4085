"""The run dir: every path in it named once, and who owns it.

A run dir holds one run's durable records (results.tsv, events.jsonl,
state.json, the stored options), its logs and diffs, the slots'
worktrees, and, while an engine lives, its pid file and control socket. Every
other module asks `RunDir` for a path instead of spelling a file name, so the
layout is written down here and nowhere else.

Ownership: one engine per run dir. `claim` writes our pid after checking that
no live engine holds it; a pid file left by a dead engine is stale and is
replaced. `release` removes only a pid file that is still ours. `clean_stale`
removes what a crashed engine left (its socket and pid file).

Discovery: run dirs live under `runs_root()`; one made elsewhere (`--run-dir`)
is written into the registry there, so `ar-tui ls` and `status` find every run
on the machine. This module imports neither the engine nor GitPython: the
commands that only look at runs start fast and work without a target.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

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
# What `ar-tui finalize` writes.
PR_FILE = "PR.md"
ABLATION_LOG_FILE = "ablation.jsonl"
ABLATION_TABLE_FILE = "ablation.tsv"
PROGRAM_PROPOSAL_FILE = "program.proposed.md"
# Run dirs outside runs_root() are listed in this file (under runs_root()) so
# that `ar-tui ls` finds them.
REGISTRY_FILE = "run-dirs.txt"
# AF_UNIX paths are limited to 108 bytes on Linux (104 on macOS).
_MAX_SOCKET_PATH = 100


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
    def pr(self) -> Path:
        return self.path / PR_FILE

    @property
    def ablation_log(self) -> Path:
        return self.path / ABLATION_LOG_FILE

    @property
    def ablation_table(self) -> Path:
        return self.path / ABLATION_TABLE_FILE

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

    def slot_worktree(self, index: int) -> Path:
        return self.worktrees / f"slot-{index}"

    @property
    def propose_worktree(self) -> Path:
        return self.worktrees / "propose"

    def has_records(self) -> bool:
        """True when this folder holds a run (a ledger or an event log)."""
        return self.events.is_file() or self.ledger.is_file()

    def last_active(self) -> float:
        """When the run last recorded anything (0 when never)."""
        times = []
        for path in (self.events, self.ledger, self.state):
            with contextlib.suppress(OSError):
                times.append(path.stat().st_mtime)
        return max(times, default=0.0)

    # ------------------------------------------------------------------ ownership

    def engine_pid(self) -> int | None:
        """The pid of the live engine that owns this run dir, or None (no pid
        file, or a stale one left by a crashed engine)."""
        return engine_pid(self.path)

    def ensure_free(self) -> None:
        """Raise UserError when a live engine other than this process owns the run dir."""
        other = self.engine_pid()
        if other is not None and other != os.getpid():
            raise UserError(f"{self.path} is in use by a running engine (pid {other}); attach to it instead")

    def claim(self) -> None:
        """Make this process the run dir's one engine; raises UserError when a
        live engine holds it or the folder cannot be written."""
        self.ensure_free()
        try:
            self.pid_file.write_text(f"{os.getpid()}\n")
        except OSError as exc:
            raise UserError(f"{self.path}: run dir not writable ({exc.strerror or exc})") from None

    def release(self) -> None:
        """Remove the pid file if it is still ours (a newer engine may own the dir)."""
        if self.engine_pid() == os.getpid():
            with contextlib.suppress(OSError):
                self.pid_file.unlink()

    def is_live(self) -> bool:
        return self.engine_pid() is not None

    def clean_stale(self) -> bool:
        """Remove the socket and pid file a crashed engine left behind. Returns
        True when there was something stale. A live engine's files are kept."""
        try:
            recorded = self.pid_file.read_text()
        except OSError:
            recorded = None
        if self.engine_pid() is not None:
            return False
        cleaned = False
        sock = self.socket
        if (sock.exists() or sock.is_symlink()) and not socket_answers(sock):
            with contextlib.suppress(OSError):
                sock.unlink()
                cleaned = True
        # Only the pid file we judged stale: a new engine may have just written its own.
        with contextlib.suppress(OSError):
            if recorded is not None and self.pid_file.read_text() == recorded and self.engine_pid() is None:
                self.pid_file.unlink()
                cleaned = True
        return cleaned


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


def clean_stale(run_dir: Path) -> bool:
    return RunDir(run_dir).clean_stale()


# ---------------------------------------------------------------------- the socket's address


@contextlib.contextmanager
def socket_address(path: Path) -> Iterator[str]:
    """An address that reaches `path` even when the path is longer than
    AF_UNIX allows: through the directory's descriptor under /proc on Linux."""
    path = Path(path)
    if len(os.fsencode(str(path))) <= _MAX_SOCKET_PATH:
        yield str(path)
        return
    if not os.path.isdir("/proc/self/fd"):
        raise OSError(f"socket path too long for this system ({len(str(path))} bytes): use a shorter --run-dir")
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def socket_answers(path: Path) -> bool:
    """Whether something listens on the socket at `path` (a probe, no request)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        with socket_address(path) as address:
            probe.connect(address)
        return True
    except OSError:
        return False
    finally:
        probe.close()


# ---------------------------------------------------------------------- runs on this machine


def data_home() -> Path:
    """Where run dirs and materialised targets live (AR_TUI_HOME overrides)."""
    home = os.environ.get("AR_TUI_HOME")
    if not home:
        import platformdirs

        home = platformdirs.user_data_dir("ar-tui")
    return Path(home).expanduser()


def runs_root() -> Path:
    return data_home() / "runs"


def default_run_dir(tag: str) -> Path:
    return runs_root() / tag


def registry_path() -> Path:
    return runs_root() / REGISTRY_FILE


def register_run_dir(run_dir: Path) -> None:
    """Record a run dir outside runs_root() so that `ar-tui ls` finds it."""
    run_dir = Path(run_dir).resolve()
    if run_dir.parent == runs_root().resolve():
        return
    if str(run_dir) in registered_run_dirs():
        return
    path = registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    # One short line in one O_APPEND write: concurrent engines never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (str(run_dir) + "\n").encode())
    finally:
        os.close(fd)


def registered_run_dirs() -> list[str]:
    try:
        text = registry_path().read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))


def is_run_dir(path: Path) -> bool:
    return RunDir(path).has_records()


def find_run_dirs() -> list[Path]:
    """Run dirs on this machine: those under runs_root() and those registered
    by runs with a custom --run-dir; most recently active first."""
    found: dict[Path, float] = {}
    candidates: list[Path] = []
    root = runs_root()
    if root.is_dir():
        candidates.extend(p for p in root.iterdir() if p.is_dir())
    candidates.extend(Path(p) for p in registered_run_dirs())
    for path in candidates:
        run_dir = RunDir(path)
        if run_dir.has_records():
            found[path.resolve()] = run_dir.last_active()
    return sorted(found, key=lambda p: found[p], reverse=True)


def live_run_dirs() -> list[Path]:
    return [p for p in find_run_dirs() if engine_pid(p) is not None]
