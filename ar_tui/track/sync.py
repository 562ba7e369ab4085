"""The one way a night reaches a tracker: read the run dir's records, log
the experiments the tracker has not had yet, remember their run ids in
`track.json` beside the ledger. The live service calls it after each
decision, `ar-tui track` once; a tracker that was down is caught up by the
next call, and a resumed night finds its parent run in `track.json` and
adds to it, never starts a second one.

Blocking (the trackers' clients are): callers run it in a thread.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ar_tui.core.errors import RunError
from ar_tui.core.records.rundir import RunDir
from ar_tui.track.records import ExperimentRecord, Night, read_night

STATE_FILE = "track.json"


class Tracker(Protocol):
    name: str
    key: str  # which server and project: the ids in track.json are kept under it (no secrets: a hash)

    def open_night(self, night: Night, parent_id: str | None) -> str:
        """Start the night's parent run, or reopen the stored one; its id."""

    def log_experiment(self, night: Night, parent_id: str, record: ExperimentRecord) -> str:
        """One decided experiment as a child run; its id."""

    def finish_night(self, night: Night, parent_id: str, records: list[ExperimentRecord],
                     artifacts: list[Path]) -> None:
        """The night's summary and files (progress.png, report.md); the parent ends."""

    def close(self) -> None: ...


class TrackerDown(RunError):
    """The tracker could not be reached or refused; one line, no secrets."""


@dataclass
class SyncResult:
    parent_id: str
    logged: int  # experiments logged by this call
    total: int  # experiments the tracker holds for this night


def tracker_key(name: str, where: str, project: str) -> str:
    """`mlflow 3f2a9c0e41b7`: a tracker, its server and its project; the
    server's URI may hold a password, so only a hash of it is kept."""
    import hashlib

    return f"{name} {hashlib.sha256(f'{where} {project}'.encode()).hexdigest()[:12]}"


def state_path(run_dir: Path) -> Path:
    return RunDir(Path(run_dir)).path / STATE_FILE


def load_state(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads(state_path(run_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_state(run_dir: Path, state: dict[str, Any]) -> None:
    path = state_path(run_dir)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)  # a crash leaves the old ids or the new, never half


def sync_night(run_dir: Path, tracker: Tracker, final: bool = False) -> SyncResult:
    """Log what the tracker lacks; with `final`, the night's files and end
    too. Raises TrackerDown when the tracker fails (the ids logged before
    the failure are kept, so the next call goes on from there)."""
    night, records = read_night(run_dir)
    state = load_state(run_dir)
    mine = state.setdefault(tracker.key, {})
    children: dict[str, str] = mine.setdefault("children", {})
    logged = 0
    try:
        mine["parent"] = tracker.open_night(night, mine.get("parent"))
        _save_state(run_dir, state)
        for record in records:
            if str(record.exp) in children:
                continue
            children[str(record.exp)] = tracker.log_experiment(night, mine["parent"], record)
            logged += 1
            _save_state(run_dir, state)
        if final:
            paths = RunDir(Path(run_dir))
            tracker.finish_night(night, mine["parent"], records,
                                 [path for path in (paths.chart, paths.report) if path.is_file()])
            mine["finished"] = True
            _save_state(run_dir, state)
    except OSError as exc:
        if isinstance(exc, (ConnectionError, TimeoutError)):
            raise TrackerDown(f"{tracker.name}: {type(exc).__name__}") from None
        raise TrackerDown(f"{tracker.name}: {exc.strerror or type(exc).__name__}") from None
    except TrackerDown:
        raise
    except Exception as exc:  # the clients' own errors; their text may hold a URI with a password
        raise TrackerDown(f"{tracker.name}: {type(exc).__name__}: {_first_line(exc)}") from None
    return SyncResult(mine["parent"], logged, len(children))


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    # A URI's userinfo (http://user:secret@host) is cut before it is shown.
    import re

    return re.sub(r"//[^/@\s]+@", "//***@", text)[:200]
