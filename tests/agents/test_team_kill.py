"""kill -9 in the middle of a team run, then `ar-tui run --run-dir DIR`: the
team picks up with the same agenda, and results.tsv loses nothing and records
nothing twice. Real child processes; the roles on the local Messages-API
server's URL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ar_tui.agents.notes import TeamMemory
from ar_tui.core.records.ledger import read_results
from tests.agents.test_team import AGENDA, PLANNER, REVIEWER, WORKER, agenda_notes, approve, worker
from tests.conftest import make_target
from tests.fake_messages_api import FakeMessagesAPI, RecordedRequest, edit, error, reply, text

KEY = "sk-ant-test-team-kill-5e4d3c"
STALL_S = 120.0


def _notes_block(request: RecordedRequest) -> str:
    return next(b["text"] for b in request.json["messages"][0]["content"] if b["text"].startswith("<notes"))


def _hypothesis(request: RecordedRequest) -> str:
    return request.json["messages"][0]["content"][-1]["text"]


def _run(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    # A session of its own, so that the kill reaches the run and any child it started.
    return subprocess.Popen([sys.executable, "-m", "ar_tui.cli", "run", "--headless", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _training(run_dir: Path, exp: int, proc: subprocess.Popen) -> bool:
    """Wait, on the event log, for `exp` to start training (False if the run ended first)."""
    while proc.poll() is None:
        log = run_dir / "events.jsonl"
        lines = log.read_text().splitlines() if log.exists() else []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # the line being written
            if event.get("kind") == "experiment_started" and event.get("exp") == exp:
                return True
        threading.Event().wait(0.05)
    return False


@pytest.mark.parametrize("where", ["worker", "planner", "training"])
def test_after_a_kill_9_the_team_resumes_with_the_same_agenda_and_no_row_lost_or_doubled(tmp_path: Path, where):
    target = make_target(tmp_path / "target")
    run_dir = tmp_path / "run"
    stalled, release = threading.Event(), threading.Event()
    plans: list[int] = []

    def planner(request: RecordedRequest):
        if request.tool_results():
            if where == "planner" and not release.is_set():
                # Killed here: the planner's notes are on disk, its turn is not over.
                stalled.set()
                release.wait(STALL_S)
                return error(529, "overloaded_error")
            return reply(text("Agenda written."))
        plans.append(len(plans))
        # A second plan would rank differently: the test sees if the agenda changed.
        items = AGENDA if len(plans) == 1 else list(reversed(AGENDA))
        return reply(text("Ranking."), edit("create", path="notes.md", file_text=agenda_notes(items)))

    def stalling_worker(request: RecordedRequest):
        opening = request.json["messages"][0]["content"]
        if (where == "worker" and not release.is_set() and not request.tool_results()
                and any("# Experiment 2" in b["text"] for b in opening)):
            stalled.set()  # killed in the middle of exp 2's proposal
            release.wait(STALL_S)
            return error(529, "overloaded_error")
        return worker(request)

    with FakeMessagesAPI() as api:
        api.responders.update({PLANNER: planner, WORKER: stalling_worker, REVIEWER: approve})
        url = api.base_url
        team = f"planner={PLANNER}@{url},worker={WORKER}@{url},reviewer={REVIEWER}@{url}"
        # Training long enough to be killed in the middle of (the resumed run trains as long).
        sleep = "3" if where == "training" else "0.05"
        env = dict(os.environ, ANTHROPIC_API_KEY=KEY, TINY_SLEEP=sleep, PYTHONWARNINGS="ignore::DeprecationWarning")
        env.pop("ANTHROPIC_BASE_URL", None)  # every role names its own server
        first = _run(["--target", str(target), "--run-dir", str(run_dir), "--tag", "t", "--team", team,
                      "--unattended", "--lookahead", "0", "--baseline-runs", "1", "--max-experiments", "3"], env)
        try:
            if where == "training":
                assert _training(run_dir, 2, first), "exp 2 never started training"
            else:
                assert stalled.wait(STALL_S), "the run never reached the point to kill it at"
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(30)
        finally:
            if first.poll() is None:
                os.killpg(first.pid, signal.SIGKILL)
            release.set()
        assert first.returncode == -signal.SIGKILL
        notes_at_kill = (run_dir / "notes.md").read_text()
        rows_at_kill = [r.exp for r in read_results(run_dir / "results.tsv")[1]]
        killed_worker = [r for r in api.requests_for(WORKER) if not r.tool_results()][-1:]
        seen = len(api.requests)

        again = _run(["--run-dir", str(run_dir), "--max-experiments", "3"], env)
        out, _ = again.communicate(timeout=240)
        assert again.returncode == 0, out
        after = api.requests[seen:]

    assert plans == [0], "the planner ran again after the kill: the agenda changed"
    assert "lower LR to 0.4" in notes_at_kill and (run_dir / "notes.md").read_text() == notes_at_kill
    resumed = [r for r in after if r.json["model"] == WORKER and not r.tool_results()]
    assert resumed, out
    # The first worker request after the resume carries the agenda of before the kill,
    # and (killed mid-proposal) the very hypothesis the killed request had.
    assert _notes_block(resumed[0]) == f'<notes path="notes.md">\n{notes_at_kill.strip()}\n</notes>'
    if where == "worker":
        assert _notes_block(killed_worker[0]) == _notes_block(resumed[0])
        assert _hypothesis(killed_worker[0]) == _hypothesis(resumed[0]) == f"## Your hypothesis\n{AGENDA[1]}" \
            "\nImplement this one, then call run_experiment."
        assert rows_at_kill == [0, 1]
    if where == "training":
        # Exp 2 was proposed and training: it is run again, not proposed again; exp 3 takes the next idea.
        assert rows_at_kill == [0, 1] and AGENDA[2] in _hypothesis(resumed[0])
    results = read_results(run_dir / "results.tsv")[1]
    assert [r.exp for r in results] == [0, 1, 2, 3]
    assert [r.description for r in results] == ["baseline", "set LR = 0.4", "set LR = 0.3", "set LR = 0.2"]
    state = TeamMemory(run_dir).state
    assert state.taken == AGENDA[:3] and state.plans == 1 and sorted(state.assignments) == [1, 2, 3]


def test_a_plan_cut_short_counts_only_if_the_planner_wrote_and_a_rejection_line_is_not_its_writing(tmp_path):
    run_dir = tmp_path / "run"
    memory = TeamMemory(run_dir)
    memory.ensure_notes()
    memory.begin_plan(3, for_rejections=False)
    # The planner's server is down; a worker's proposal is rejected meanwhile; then kill -9.
    memory.record_rejection(4, "set LR = 0.9", "tried")
    reloaded = TeamMemory(run_dir)
    assert reloaded.state.planning is None and reloaded.state.planned_at is None and reloaded.state.plans == 0

    reloaded.begin_plan(3, for_rejections=True)
    (run_dir / "notes.md").write_text(agenda_notes())  # the planner's edit landed
    reloaded.record_rejection(4, "set LR = 0.8", "tried")
    again = TeamMemory(run_dir)
    assert again.state.planning is None and again.state.planned_at == 3 and again.state.plans == 1
    assert again.state.replans_in_row == 1 and again.open_hypotheses() == AGENDA
