"""Limits per run: memory, processes and threads, bytes written.

A careless training script must not take the machine with it: one that
allocates without end is stopped at its memory cap (before the kernel's OOM
killer picks the engine or the user's shell), a runaway fork or thread
loop at its process cap, a checkpoint loop at its write cap. A run that hits
one ends as a crash whose line names the limit; the engine and the other
slots live on.

How they are applied (`mechanism`):
- rlimits, set in the child before it starts: RLIMIT_DATA for memory (not on
  a CUDA slot, whose driver maps far more than it uses), RLIMIT_FSIZE for the
  largest file; inherited by everything the run starts;
- a watchdog in the engine, every `WATCH_S`: the resident memory and the
  processes and threads of the run's whole process tree, and the bytes its
  worktree and scratch dir grew by; the first over its cap ends the run.
- each run's OOM score is the highest (1000), the engine's lowered where it
  may be (root), so the kernel, if it must kill, kills a run.
cgroup v2 (memory.max, pids.max) is reported when this machine delegates it
to us, but the watchdog is what enforces the caps (see docs/guide/limits.md).
Defaults: memory (the machine's memory less a reserve for the engine and the
system) divided among the slots; 4096 processes and threads; half the free
space of the run dir's disk at the start.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
from dataclasses import dataclass
from pathlib import Path

WATCH_S = 0.25
DEFAULT_PROCESSES = 4096
ENGINE_OOM_SCORE_ADJ = -500
RUN_OOM_SCORE_ADJ = 1000
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
OFF_WORDS = ("none", "off", "unlimited", "0")


class LimitError(ValueError):
    pass


def parse_size(text: str | int | float | None, what: str) -> int | None:
    """`8GiB`, `512M`, `1.5g`, a number of bytes; None for none/off/unlimited."""
    if text is None:
        return None
    if isinstance(text, bool):
        raise LimitError(f"{what}: a size like 8GiB or 512MiB, or none; not {text!r}")
    if isinstance(text, (int, float)):
        return int(text) if text > 0 else None
    if text.strip().lower() in OFF_WORDS:
        return None
    match = _SIZE.match(text)
    if not match:
        raise LimitError(f"{what}: a size like 8GiB or 512MiB, or none; not {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def parse_count(text: str | int | None, what: str) -> int | None:
    if text is None:
        return None
    if isinstance(text, int) and not isinstance(text, bool):
        return text if text > 0 else None
    if isinstance(text, str) and text.strip().lower() in OFF_WORDS:
        return None
    if isinstance(text, str) and text.strip().isdigit():
        return int(text) or None
    raise LimitError(f"{what}: a whole number of processes and threads, or none; not {text!r}")


def size_text(size: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor:
            value = size / factor
            return f"{value:.1f} {unit}" if value < 10 and value != int(value) else f"{value:.0f} {unit}"
    return f"{size} B"


def machine_memory() -> int:
    with contextlib.suppress(OSError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return 0


def default_memory(slots: int) -> int | None:
    """The machine's memory less a reserve (1 GiB or a tenth, whichever is
    more) for the engine and the system, shared by the slots."""
    total = machine_memory()
    if total <= 0:
        return None
    reserve = max(1 << 30, total // 10)
    return max(64 << 20, (total - reserve) // max(1, slots))


def default_writes(run_dir: Path) -> int | None:
    with contextlib.suppress(OSError):
        probe = Path(run_dir)
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        return max(64 << 20, shutil.disk_usage(probe).free // 2)
    return None


def cgroup_v2_status() -> str:
    """Whether this process's cgroup v2 delegates memory and pids to us, in words."""
    try:
        line = next(l for l in Path("/proc/self/cgroup").read_text().splitlines() if l.startswith("0::"))
    except (OSError, StopIteration):
        return "no cgroup v2 here"
    for mount in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        controllers = mount / line[3:].lstrip("/") / "cgroup.controllers"
        with contextlib.suppress(OSError):
            have = controllers.read_text().split()
            if {"memory", "pids"} <= set(have) and os.access(controllers.parent, os.W_OK):
                return "cgroup v2 delegated (memory, pids)"
            return "cgroup v2 without memory and pids controllers here"
    return "no cgroup v2 here"


@dataclass
class RunLimits:
    memory: int | None = None  # bytes of resident memory, the whole process tree
    processes: int | None = None  # processes and threads, the whole process tree
    writes: int | None = None  # bytes the worktree and scratch dir may grow by
    cgroup: str = ""  # cgroup_v2_status(), for the startup line

    @classmethod
    def resolve(cls, config: dict, memory: str | None, processes: str | None, writes: str | None,
                slots: int, run_dir: Path) -> "RunLimits":
        """Flags over `[limits]` over the defaults; LimitError on bad input."""
        def pick(flag, key, default):
            if flag is not None:
                return flag, f"--limit-{key}"
            if key in config:
                return config[key], f"[limits] {key}"
            return default, key
        value, where = pick(memory, "memory", "default")
        mem = default_memory(slots) if value == "default" else parse_size(value, where)
        value, where = pick(processes, "processes", DEFAULT_PROCESSES)
        procs = parse_count(value, where)
        value, where = pick(writes, "writes", "default")
        wr = default_writes(run_dir) if value == "default" else parse_size(value, where)
        return cls(mem, procs, wr, cgroup_v2_status())

    @property
    def mechanism(self) -> str:
        return "rlimits and a watchdog"

    def describe(self) -> str:
        parts = [f"memory {size_text(self.memory)}" if self.memory else "memory unlimited",
                 f"{self.processes} processes/threads" if self.processes else "processes unlimited",
                 f"writes {size_text(self.writes)}" if self.writes else "writes unlimited"]
        return f"limits per run: {', '.join(parts)} ({self.mechanism}; {self.cgroup})"

    def apply_in_child(self, device: str) -> None:
        """In the child, before exec: rlimits and a high OOM score."""
        with contextlib.suppress(OSError):
            with open("/proc/self/oom_score_adj", "w") as handle:
                handle.write(str(RUN_OOM_SCORE_ADJ))
        if self.memory and not device.startswith("cuda"):
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_DATA, (self.memory, self.memory))
        if self.writes:
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_FSIZE, (self.writes, self.writes))

    def hit_by(self, tail: str) -> str | None:
        """The limit a run's own last error shows it hit (the rlimits make a
        MemoryError or a 'File too large' rather than a kill)."""
        if self.memory and re.search(r"MemoryError|Cannot allocate memory|std::bad_alloc|out of memory", tail):
            return self.memory_line(killed=False)
        if self.writes and re.search(r"File too large|File size limit exceeded", tail):
            return self.writes_line()
        return None

    def memory_line(self, killed: bool = True) -> str:
        """`killed`: the watchdog ended the run; else the run's own allocation failed at the rlimit."""
        how = ": Killed (out of memory)" if killed else ""
        return f"memory limit of {size_text(self.memory or 0)} reached{how} (--limit-memory)"

    def processes_line(self) -> str:
        return f"process limit of {self.processes} processes/threads reached (--limit-processes)"

    def writes_line(self) -> str:
        return f"write limit of {size_text(self.writes or 0)} reached (--limit-writes)"


def lower_engine_oom_score() -> bool:
    """Make the engine the kernel's last choice; True when it could (root)."""
    try:
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write(str(ENGINE_OOM_SCORE_ADJ))
        return True
    except OSError:
        return False


def tree_usage(pid: int) -> tuple[int, int]:
    """(resident bytes, processes + threads) of `pid` and all its descendants."""
    import psutil

    rss = tasks = 0
    try:
        root = psutil.Process(pid)
        members = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    for proc in members:
        with contextlib.suppress(psutil.Error):
            with proc.oneshot():
                info = proc.memory_info()
                # A forked child shares its parent's pages: count only its own.
                rss += info.rss if proc is root else max(0, info.rss - getattr(info, "shared", 0))
                tasks += proc.num_threads()
    return rss, tasks


def bytes_under(paths: list[Path]) -> int:
    """Bytes allocated under `paths` (files only, links not followed)."""
    total = 0
    stack = [str(p) for p in paths]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    with contextlib.suppress(OSError):
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_blocks * 512
        except OSError:
            continue
    return total


def over_limit(limits: RunLimits, pid: int, write_paths: list[Path], written_before: int,
               check_writes: bool) -> str | None:
    """The line of the first limit the run is over now, or None (blocking: run it in a thread)."""
    rss, tasks = tree_usage(pid)
    if limits.memory and rss > limits.memory:
        return limits.memory_line()
    if limits.processes and tasks > limits.processes:
        return limits.processes_line()
    if check_writes and limits.writes and write_paths and bytes_under(write_paths) - written_before > limits.writes:
        return limits.writes_line()
    return None
