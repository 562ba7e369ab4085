"""A run dir written by an earlier ar-tui resumes with today's: the archive
in data/ was made by `data/make_stored_run.py` with the code of before the
engine's redesign (issue 27): a tree search stopped by SIGTERM while
experiment 3 ran and experiment 4 waited, prepared. Its rows, its noise
samples and both experiments in flight carry over; nothing is lost or
decided twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from ar_tui.core import events as ev
from ar_tui.core.records.ledger import read_events, read_results
from tests.conftest import ROOT, git

ARCHIVE = Path(__file__).parent / "data" / "stored_run.tar.gz"
MADE_UNDER = "/tmp/ar-tui-stored-run"  # make_stored_run.PREFIX


def unpack(into: Path) -> tuple[Path, Path]:
    """The archive's target and run dir, moved here: every file that names
    the place they were made (the stored options, the state, the events, the
    worktrees' git links) names this one instead, as `git worktree repair`
    and a run made here would."""
    with tarfile.open(ARCHIVE) as archive:
        archive.extractall(into, filter="data")
    for path in into.rglob("*"):
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if MADE_UNDER in text:
            path.write_text(text.replace(MADE_UNDER, str(into)), encoding="utf-8")
    return into / "target", into / "run"


def test_a_run_dir_written_before_the_redesign_resumes(tmp_path: Path) -> None:
    target, run_dir = unpack(tmp_path)
    _, rows_before, _ = read_results(run_dir / "results.tsv")
    state_before = json.loads((run_dir / "state.json").read_text())
    assert [r.exp for r in rows_before] == [0, 1, 2]
    in_flight = {c["exp"]: c["description"] for c in state_before["in_flight"]}
    assert sorted(in_flight) == [3, 4]

    # Nothing but the run dir: it resumes with the options stored when it started.
    env = dict(os.environ, TINY_SLEEP="0.05")
    resumed = subprocess.run([sys.executable, "-m", "ar_tui.cli", "run", "--headless", "--run-dir", str(run_dir)],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    out = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, out
    assert "resuming run stored" in out

    _, rows, torn = read_results(run_dir / "results.tsv")
    assert not torn
    assert rows[:3] == rows_before
    assert [r.exp for r in rows] == [0, 1, 2, 3, 4, 5, 6]  # none lost, none doubled
    # The two in flight ran as they were prepared, not proposed again.
    assert {r.exp: r.description for r in rows if r.exp in in_flight} == in_flight
    events = list(read_events(run_dir / "events.jsonl"))
    for exp in in_flight:
        assert any(isinstance(e, ev.Notice) and f"experiment {exp} was interrupted" in e.message for e in events)
    assert all(r.status in (ev.STATUS_KEEP, ev.STATUS_DISCARD) and r.metric is not None for r in rows)

    # The noise samples carried over: the baseline's runs are still the baseline's.
    state = json.loads((run_dir / "state.json").read_text())
    baseline = next(commit for commit in state_before["noise"]["groups"] if commit.startswith(rows[0].commit))
    before = state_before["noise"]["groups"][baseline]
    assert len(before) == 2  # --baseline-runs 2
    assert state["noise"]["groups"][baseline][:len(before)] == before
    assert state["in_flight"] == []
    # The branch is the best kept state; the run dir is free again.
    keeps = [r for r in rows if r.status == ev.STATUS_KEEP]
    assert git(target, "rev-parse", "autoresearch/stored").startswith(keeps[-1].commit)
    assert not (run_dir / "engine.pid").exists()
