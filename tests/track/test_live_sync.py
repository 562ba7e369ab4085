"""The live tracker path on a real engine and a tiny real target, with a
tracker that is down for a while, or hangs: the night decides the same,
the tracker is caught up from the ledger at the next decision, and nothing
is logged twice. The tracker here is an in-memory implementation of the
`Tracker` protocol whose outages the test controls."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from ar_tui.agents.scripted import ScriptedProposer, ScriptStep
from ar_tui.core import events as ev
from ar_tui.core.engine import Engine, EngineOptions
from ar_tui.core.records.ledger import read_results
from ar_tui.core.records.rundir import RunDir
from ar_tui.report import report_service
from ar_tui.track.records import ExperimentRecord, Night
from ar_tui.track.service import track_service
from ar_tui.track.settings import TrackSettings
from ar_tui.track.sync import load_state
from tests.conftest import make_target

STEPS = [ScriptStep("LR 0.5 -> 0.4", "LR = 0.5", "LR = 0.4"), ScriptStep("LR 0.4 -> 0.9", "LR = 0.4", "LR = 0.9"),
         ScriptStep("LR 0.4 -> 0.3", "LR = 0.4", "LR = 0.3")]


class FlakyTracker:
    """Refuses its first `down_for` calls (a server not up yet), or hangs
    on every experiment (`hang_s`); records what it was told."""

    name = "memory"
    key = "memory test"

    def __init__(self, down_for: int = 0, hang_s: float = 0.0) -> None:
        self.down_for = down_for
        self.hang_s = hang_s
        self.calls = 0
        self.parents: list[str] = []
        self.logged: list[int] = []
        self.finished: list[list[str]] = []
        self.lock = threading.Lock()

    def _call(self) -> None:
        with self.lock:
            self.calls += 1
            if self.calls <= self.down_for:
                raise ConnectionRefusedError("connection refused")

    def open_night(self, night: Night, parent_id: str | None) -> str:
        self._call()
        if parent_id is None:
            parent_id = f"night-{len(self.parents)}"
            self.parents.append(parent_id)
        return parent_id

    def log_experiment(self, night: Night, parent_id: str, record: ExperimentRecord) -> str:
        self._call()
        time.sleep(self.hang_s)
        self.logged.append(record.exp)
        return f"{parent_id}/{record.exp}"

    def finish_night(self, night: Night, parent_id: str, records: list[ExperimentRecord], artifacts: list[Path]) -> None:
        self._call()
        self.finished.append(sorted(path.name for path in artifacts))

    def close(self) -> None:
        pass


async def night(tmp_path: Path, name: str, tracker: FlakyTracker | None, grace_s: float = 60.0):
    target = make_target(tmp_path / f"{name}-target")
    options = EngineOptions(target_dir=target, tag="t", run_dir=tmp_path / name, attended=False, lookahead=0,
                            baseline_runs=1, max_experiments=len(STEPS), sandbox="off")
    services = [track_service(TrackSettings(to="memory", grace_s=grace_s), lambda: tracker)] if tracker else []
    engine = Engine(options, ScriptedProposer(list(STEPS)), services=[*services, report_service])
    seen: list[ev.Event] = []
    engine.subscribe(seen.append)
    stopped = await engine.run()
    _, rows, _ = read_results(RunDir(tmp_path / name).ledger)
    decided = [(r.exp, r.status, r.metric, r.description, r.parent) for r in rows]
    warnings = [e.message for e in seen if isinstance(e, ev.Notice) and e.level == "warning"]
    return stopped, decided, warnings, [e for e in seen if isinstance(e, ev.Notice)]


async def test_a_tracker_down_at_the_start_is_caught_up_at_the_next_decision_once(tmp_path: Path) -> None:
    tracker = FlakyTracker(down_for=1)
    stopped, decided, warnings, notices = await night(tmp_path, "flaky", tracker)
    _, alone, _, _ = await night(tmp_path, "alone", None)

    assert decided == alone and not stopped.error
    assert warnings == ["tracker memory: ConnectionRefusedError; the night goes on; the next decision tries again"]
    assert "tracker memory reached again: caught up" in [n.message for n in notices]
    assert tracker.parents == ["night-0"] and sorted(tracker.logged) == [0, 1, 2, 3]  # each once
    assert tracker.finished == [["progress.png", "report.md"]]
    state = load_state(tmp_path / "flaky")["memory test"]
    assert state["parent"] == "night-0" and sorted(state["children"]) == ["0", "1", "2", "3"] and state["finished"]


async def test_a_tracker_that_hangs_never_holds_up_the_night(tmp_path: Path) -> None:
    tracker = FlakyTracker(hang_s=30.0)
    started = time.monotonic()
    stopped, decided, warnings, _ = await night(tmp_path, "hung", tracker, grace_s=1.0)
    took = time.monotonic() - started
    _, alone, _, _ = await night(tmp_path, "alone", None)

    assert decided == alone and not stopped.error
    assert warnings == [f"tracker memory: no answer in 1 s at the end; `ar-tui track {tmp_path / 'hung'} --to memory` "
                        "sends the rest"]
    assert took < 30  # the night did not wait for the hung client (its one call alone takes 30 s)
