"""The run dir's durable records: results.tsv, events.jsonl and state.json.

results.tsv is the truth about decided experiments. Every record of
results.tsv and events.jsonl is one `os.write` of a whole line to a file
opened with O_APPEND; a write the disk cuts short (ENOSPC) is truncated back
to the size before it, so a full disk, a kill -9 or a power cut leaves the
whole line or none of it. Whatever still is not a whole record on the next
open (a torn last line, a line some other program appended) is set aside in
`<file>.rejected` with a notice, never a crash. results.tsv is fsync'd per
row, events.jsonl at decisions; state.json is replaced atomically.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ar_tui.core import events as ev
from ar_tui.core.errors import RunError
from ar_tui.core.records.rundir import RunDir

# Appended after the original five; new columns go at the end, so older files still read.
EXTRA_COLUMNS = ["exp", "cost_usd", "seconds", "forced", "prepared_before", "rule", "rationale", "parent", "proposer",
                 "gpu_usd"]


class LedgerError(RunError):
    """The run dir cannot be written (full disk, permissions): one line for the user."""


class DiskFull(LedgerError):
    """The run dir's disk is full: nothing was written, and the same write
    succeeds once space is freed (the engine waits for it)."""


_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def _write_error(path: Path, exc: OSError) -> LedgerError:
    kind = DiskFull if exc.errno in _FULL_ERRNOS else LedgerError
    return kind(f"cannot write {path}: {exc.strerror or exc}")


def append_record(fd: int, data: bytes, path: Path, sync: bool) -> None:
    """Append one whole record, or nothing: a write the disk cuts short is
    truncated back to the size before it. (One write of the whole line; a
    short one is finished or undone, never left.)"""
    try:
        before = os.fstat(fd).st_size
    except OSError as exc:
        raise _write_error(path, exc) from None
    try:
        view = memoryview(data)
        while view:
            # A short write goes on: the next write succeeds, or raises the
            # disk's real reason (ENOSPC, EFBIG), and all of it is cut back.
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
    except OSError as exc:
        try:
            os.ftruncate(fd, before)
        except OSError:
            pass  # nothing more to do: the next open sets the torn line aside
        raise _write_error(path, exc) from None


def _clean(text: str) -> str:
    return " ".join(str(text).replace("\t", " ").splitlines()).strip()


@dataclass
class LedgerRow:
    commit: str
    metric: float | None
    memory_gb: float | None
    status: str
    description: str
    exp: int | None = None
    cost_usd: float = 0.0
    seconds: float = 0.0
    forced: bool = False
    rule: str = ""
    rationale: str = ""
    # Experiments whose results were not known when this one was prepared.
    prepared_before: list[int] = field(default_factory=list)
    parent: int | None = None  # the experiment this one was built on; None for the baseline
    proposer: str = ""  # "offline", "claude", a team role; "" in a ledger from before the column
    # The GPU time of its runs at --gpu-usd-per-hour; None: not priced, or a ledger from before the column.
    gpu_usd: float | None = None

    def to_line(self) -> str:
        cells = [
            self.commit[:7],
            f"{self.metric:.6f}" if self.metric is not None else "0.000000",
            f"{self.memory_gb:.1f}" if self.memory_gb is not None else "0.0",
            self.status,
            _clean(self.description),
            str(self.exp if self.exp is not None else ""),
            f"{self.cost_usd:.6f}",
            f"{self.seconds:.1f}",
            "1" if self.forced else "0",
            ";".join(str(e) for e in self.prepared_before),
            _clean(self.rule),
            _clean(self.rationale),
            str(self.parent if self.parent is not None else ""),
            _clean(self.proposer),
            f"{self.gpu_usd:.6f}" if self.gpu_usd is not None else "",
        ]
        return "\t".join(cells) + "\n"


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def read_results(path: Path) -> tuple[str, list[LedgerRow], bool]:
    """Read a results.tsv (ar-tui's or the original's five columns).
    Returns (metric name, rows, whether a torn last line was skipped)."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        return "val_bpb", [], False
    header = lines[0].split("\t")
    torn = False
    # A last line without its newline is torn only when cells are missing: a
    # hand-written results.tsv may simply lack the final newline. (The Ledger
    # itself cuts any unterminated line before reading: it writes whole lines.)
    if not text.endswith("\n") and len(lines) > 1 and len(lines[-1].split("\t")) < len(header):
        lines = lines[:-1]
        torn = True
    if len(header) < 5 or header[0] != "commit":
        raise LedgerError(f"{path}: not a results.tsv (the header must start with 'commit')")
    metric_name = header[1]
    index = {name: i for i, name in enumerate(header)}
    rows = []
    for line in lines[1:]:
        cells = line.split("\t")
        if len(cells) < 5:
            torn = True
            continue

        def cell(name: str, default: str = "") -> str:
            i = index.get(name)
            return cells[i] if i is not None and i < len(cells) else default

        status = cells[3].strip()
        metric = _float(cells[1])
        if status == ev.STATUS_CRASH and metric == 0.0:
            metric = None
        exp_text = cell("exp")
        rows.append(
            LedgerRow(
                commit=cells[0].strip(),
                metric=metric,
                memory_gb=_float(cells[2]),
                status=status,
                description=cells[4],
                exp=int(exp_text) if exp_text.strip().isdigit() else None,
                cost_usd=_float(cell("cost_usd", "0")) or 0.0,
                seconds=_float(cell("seconds", "0")) or 0.0,
                forced=cell("forced", "0").strip() == "1",
                rule=cell("rule"),
                rationale=cell("rationale"),
                prepared_before=[int(e) for e in cell("prepared_before").split(";") if e.strip().isdigit()],
                parent=int(cell("parent")) if cell("parent").strip().isdigit() else None,
                proposer=cell("proposer").strip(),
                gpu_usd=_float(cell("gpu_usd")),
            )
        )
    return metric_name, rows, torn


def _set_aside(path: Path, rejected: list[bytes]) -> None:
    """Keep what a repair removed, for whoever wants to look at it."""
    if rejected:
        with open(path.with_name(path.name + ".rejected"), "ab") as handle:
            handle.write(b"".join(line if line.endswith(b"\n") else line + b"\n" for line in rejected))


def _cut_torn_line(path: Path) -> int:
    """Drop an unterminated last line (a write cut short by a crash or a full
    disk), set aside; returns how many lines were dropped (0 or 1)."""
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    try:
        _set_aside(path, [data[keep:]])
        with open(path, "r+b") as handle:
            handle.truncate(keep)
    except OSError as exc:
        raise _write_error(path, exc) from None
    return 1


def _is_event_line(line: bytes) -> bool:
    """A whole JSON object with a `kind`: an event (of this version or a newer one)."""
    try:
        data = json.loads(line)
    except ValueError:
        return False
    return isinstance(data, dict) and isinstance(data.get("kind"), str)


def repair_events(path: Path) -> int:
    """Set aside every line of events.jsonl that is not a whole event (a torn
    last line, garbage appended by anyone); returns how many. The file is
    replaced atomically, so a crash during the repair loses nothing."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    good = [line for line in lines if line.endswith(b"\n") and _is_event_line(line)]
    if len(good) == len(lines):
        return 0
    rejected = [line for line in lines if not (line.endswith(b"\n") and _is_event_line(line))]
    temporary = path.with_name(path.name + ".tmp")
    try:
        _set_aside(path, rejected)
        with open(temporary, "wb") as handle:
            handle.write(b"".join(good))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        raise _write_error(path, exc) from None
    return len(rejected)


def _add_new_columns(path: Path) -> None:
    """Give a ledger written before the latest columns their names in the
    header, so that the rows appended now read back whole; its old rows
    simply have fewer cells. Replaced atomically, so a crash leaves the old
    file or the new one."""
    data = path.read_bytes()
    first, newline, rest = data.partition(b"\n")
    header = first.decode("utf-8", errors="replace").split("\t")
    have = header[5:]
    if len(header) < 5 or header[0] != "commit" or have == EXTRA_COLUMNS or have != EXTRA_COLUMNS[:len(have)]:
        return  # current, or not one of ours: left as it is
    upgraded = "\t".join(header[:5] + EXTRA_COLUMNS).encode() + newline + rest
    temporary = path.with_name(path.name + ".tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(upgraded)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        raise _write_error(path, exc) from None


class Ledger:
    """results.tsv: one row per decided experiment, never doubled."""

    def __init__(self, run_dir: Path, metric_name: str) -> None:
        self.path = RunDir(run_dir).ledger
        self.metric_name = metric_name
        self.rows: list[LedgerRow] = []
        self.repaired = 0  # lines set aside on open: a torn last line, or rows missing cells
        if self.path.exists():
            self.repaired = _cut_torn_line(self.path)
            _add_new_columns(self.path)
            name, self.rows, torn = read_results(self.path)
            self.repaired += int(torn and not self.repaired)
        else:
            header = "\t".join(["commit", metric_name, "memory_gb", "status", "description", *EXTRA_COLUMNS]) + "\n"
            fd = self._open()
            try:
                append_record(fd, header.encode(), self.path, sync=True)
            finally:
                os.close(fd)

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise _write_error(self.path, exc) from None

    def decided(self, exp: int) -> bool:
        return any(row.exp == exp for row in self.rows)

    def append(self, row: LedgerRow) -> None:
        if row.exp is not None and self.decided(row.exp):
            return
        fd = self._open()
        try:
            append_record(fd, row.to_line().encode("utf-8"), self.path, sync=True)
        finally:
            os.close(fd)
        self.rows.append(row)


class EventLog:
    """events.jsonl: every persisted event, flushed as it happens."""

    DURABLE = (ev.Decision, ev.RunStopped, ev.ProposalReady, ev.BaselineReady)

    def __init__(self, run_dir: Path) -> None:
        self.path = RunDir(run_dir).events
        self.repaired = repair_events(self.path)  # lines set aside: torn, or not events
        try:
            self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise _write_error(self.path, exc) from None

    def write(self, event: ev.Event) -> None:
        """One whole line or nothing (DiskFull when the disk is full)."""
        assert self._fd is not None, "the event log is closed"
        append_record(self._fd, (event.to_json() + "\n").encode("utf-8"), self.path,
                      sync=isinstance(event, self.DURABLE))

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None


def read_events(path: Path) -> Iterator[ev.Event]:
    """Replay events.jsonl, skipping a torn or unknown line."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.endswith("\n"):
                break
            try:
                yield ev.event_from_json(line)
            except (ValueError, TypeError):
                continue


def write_state(run_dir: Path, state: dict[str, Any]) -> None:
    path = RunDir(run_dir).state
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(state, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()  # a half-written temp file holds space the engine waits for
        raise _write_error(path, exc) from None


def read_state(run_dir: Path) -> dict[str, Any] | None:
    path = RunDir(run_dir).state
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
