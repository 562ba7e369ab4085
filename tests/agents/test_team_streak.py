"""Rejections in a row: the planner replaces a bad queue and the night goes on;
only a streak that outlasts three re-plans stops the run, with one line."""

from __future__ import annotations

import pytest

from ar_tui.agents.notes import TeamMemory
from ar_tui.agents.team import MAX_REJECTIONS_IN_ROW, REPLAN_AFTER_REJECTIONS
from ar_tui.core import events as ev
from ar_tui.core.engine.parts import MAX_FAILED_PROPOSALS_IN_ROW
from tests.agents.test_team import (
    AGENDA,
    PLANNER,
    REVIEWER,
    agenda_notes,
    answer_roles,
    rows,
    run_engine,
    started,
    team_for,
    verdict,
)
from tests.fake_messages_api import FakeMessagesAPI, RecordedRequest, edit, reply, text

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")

FRESH = ["raise LR to 0.7 - every lower LR was turned down", "raise LR to 0.6 - bracket from above",
         "raise LR to 0.65 - between the two"]


def _plans(api: FakeMessagesAPI) -> list[RecordedRequest]:
    return [r for r in api.requests_for(PLANNER) if not r.tool_results()]


async def test_a_streak_of_rejections_makes_the_planner_replace_the_queue_and_the_run_goes_on(target, tmp_path):
    run_dir = tmp_path / "run"

    def replanner(request: RecordedRequest):
        if request.tool_results():
            return reply(text("Agenda written."))
        fresh = "evidently bad" in request.text()
        return reply(edit("create", path="notes.md", file_text=agenda_notes(FRESH if fresh else AGENDA)))

    def reviewer(request: RecordedRequest):
        # Every lowered LR is turned down; the re-planned ideas pass.
        if "LR = 0.7" in request.text() or "LR = 0.6" in request.text():
            return verdict("approve", "a new direction")
        return verdict("reject", "lowering the LR again")

    with FakeMessagesAPI() as api:
        answer_roles(api)
        api.responders[PLANNER], api.responders[REVIEWER] = replanner, reviewer
        stopped, events = await run_engine(target, run_dir, team_for(run_dir, base_url=api.base_url),
                                           max_experiments=2)
        plans = _plans(api)
    assert not stopped.error and "max experiments" in stopped.reason, stopped.reason
    verdicts = [e.verdict for e in events if isinstance(e, ev.Review)]
    assert verdicts == ["reject"] * REPLAN_AFTER_REJECTIONS + ["approve", "approve"]
    # One plan at the start, one after the streak, which was told why.
    assert len(plans) == 2 and "rejected the last 3 proposals in a row" in plans[1].text()
    notices = [e.message for e in events if isinstance(e, ev.Notice)]
    assert any("rejected 3 proposals in a row; the planner replaces the queue" in m for m in notices)
    assert [e.description for e in started(events)] == ["set LR = 0.7", "set LR = 0.6"]
    assert [r.description for r in rows(run_dir)][1:] == ["set LR = 0.7", "set LR = 0.6"]
    state = TeamMemory(run_dir).state
    assert state.rejected_in_row == 0 and state.replans_in_row == 0 and len(state.rejected) == 3


async def test_a_streak_that_outlasts_three_replans_stops_the_run_with_one_line(target, tmp_path):
    run_dir = tmp_path / "run"
    with FakeMessagesAPI() as api:
        answer_roles(api)
        api.responders[REVIEWER] = lambda request: verdict("reject", "not worth a run")
        stopped, events = await run_engine(target, run_dir, team_for(run_dir, base_url=api.base_url),
                                           max_experiments=5)
        plans = _plans(api)
    assert MAX_REJECTIONS_IN_ROW > MAX_FAILED_PROPOSALS_IN_ROW  # rejections are not proposer failures
    assert stopped.reason == (f"the reviewer rejected {MAX_REJECTIONS_IN_ROW} proposals in a row through 3 "
                              f"re-plans of the agenda; nothing it approved was left to train (read notes.md "
                              f"and the reviews, then resume)")
    assert not stopped.error and "\n" not in stopped.reason
    assert [e.verdict for e in events if isinstance(e, ev.Review)] == ["reject"] * MAX_REJECTIONS_IN_ROW
    assert len(plans) == 1 + 3 and not started(events)
    assert [r.exp for r in rows(run_dir)] == [0]  # nothing trained, nothing recorded as trained
    # The stop ends the streak on disk, so a resumed run, after the user has looked, starts afresh.
    assert TeamMemory(run_dir).state.rejected_in_row == 0
    assert len(TeamMemory(run_dir).state.rejected) == MAX_REJECTIONS_IN_ROW


async def test_under_hybrid_a_team_that_stops_on_rejections_leaves_the_sampler_going(target, tmp_path):
    """`--agent hybrid --team`: the same streak ends the team's part, not the
    night; the knob sampler proposes every experiment after it."""
    from ar_tui.agents.hybrid import HybridProposer
    from ar_tui.agents.offline import OfflineProposer

    run_dir = tmp_path / "run"
    with FakeMessagesAPI() as api:
        answer_roles(api)
        api.responders[REVIEWER] = lambda request: verdict("reject", "not worth a run")
        hybrid = HybridProposer(team_for(run_dir, base_url=api.base_url), OfflineProposer(seed=0, search="classic"))
        stopped, events = await run_engine(target, run_dir, hybrid, max_experiments=4)
    assert not stopped.error and "max experiments (4)" in stopped.reason, stopped.reason
    assert [e.verdict for e in events if isinstance(e, ev.Review)] == ["reject"] * MAX_REJECTIONS_IN_ROW
    notices = [e.message for e in events if isinstance(e, ev.Notice)]
    assert any(m.startswith(f"team stopped proposing (the reviewer rejected {MAX_REJECTIONS_IN_ROW} proposals")
               and m.endswith("the knob sampler goes on alone") for m in notices), notices
    assert [r.proposer for r in rows(run_dir)][1:] == ["offline"] * 4
    said = "".join(e.text for e in events if isinstance(e, ev.AgentText))
    assert "goes to the knob sampler (team has stopped: the reviewer rejected" in said


@pytest.fixture
def target(tmp_path):
    from tests.conftest import make_target

    return make_target(tmp_path / "target")
