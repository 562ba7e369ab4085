"""The run dir's durable records: results.tsv, events.jsonl and state.json.

results.tsv is the truth about decided experiments: a row is one `write` of a
whole line to a file opened for appending, then fsync'd, so a kill -9 or a
power cut leaves either the whole row or none of it (a torn last line from a
full disk is cut off on the next open). events.jsonl is flushed per event and
fsync'd at decisions. state.json is replaced atomically.
"""

from __future__ import annotations

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


def _cut_torn_line(path: Path) -> None:
    """Drop an unterminated last line: a write cut short by a crash or a full disk."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


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
        raise LedgerError(f"cannot write {path}: {exc.strerror or exc}") from None


def _write_all(fd: int, data: bytes, path: Path) -> None:
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except OSError as exc:
        raise LedgerError(f"cannot write {path}: {exc.strerror or exc}") from None


class Ledger:
    """results.tsv: one row per decided experiment, never doubled."""

    def __init__(self, run_dir: Path, metric_name: str) -> None:
        self.path = RunDir(run_dir).ledger
        self.metric_name = metric_name
        self.rows: list[LedgerRow] = []
        if self.path.exists():
            _cut_torn_line(self.path)
            _add_new_columns(self.path)
            name, self.rows, _ = read_results(self.path)
        else:
            header = "\t".join(["commit", metric_name, "memory_gb", "status", "description", *EXTRA_COLUMNS]) + "\n"
            fd = self._open()
            try:
                _write_all(fd, header.encode(), self.path)
            finally:
                os.close(fd)

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LedgerError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def decided(self, exp: int) -> bool:
        return any(row.exp == exp for row in self.rows)

    def append(self, row: LedgerRow) -> None:
        if row.exp is not None and self.decided(row.exp):
            return
        fd = self._open()
        try:
            _write_all(fd, row.to_line().encode("utf-8"), self.path)
        finally:
            os.close(fd)
        self.rows.append(row)


class EventLog:
    """events.jsonl: every persisted event, flushed as it happens."""

    DURABLE = (ev.Decision, ev.RunStopped, ev.ProposalReady, ev.BaselineReady)

    def __init__(self, run_dir: Path) -> None:
        self.path = RunDir(run_dir).events
        if self.path.exists():
            _cut_torn_line(self.path)
        try:
            self._handle = open(self.path, "a", encoding="utf-8")
        except OSError as exc:
            raise LedgerError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def write(self, event: ev.Event) -> None:
        try:
            self._handle.write(event.to_json() + "\n")
            self._handle.flush()
            if isinstance(event, self.DURABLE):
                os.fsync(self._handle.fileno())
        except OSError as exc:
            raise LedgerError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        try:
            self._handle.close()
        except OSError:
            pass


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
        raise LedgerError(f"cannot write {path}: {exc.strerror or exc}") from None


def read_state(run_dir: Path) -> dict[str, Any] | None:
    path = RunDir(run_dir).state
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
