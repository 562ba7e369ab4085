"""Where the team's tokens go: a new agenda does not rewrite the workers' cached
files, the reviewer's context is only what decides a verdict, and a worker is
not charged for an old crash's log. Against the local Messages-API server,
which bills prompt caching as the API does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ar_tui.agents import team_prompt
from ar_tui.agents.llm import prompt
from ar_tui.agents.notes import add_to_do_not_repeat
from ar_tui.core.config import TargetConfig
from ar_tui.core.proposer import ProposalContext, ResultRow
from tests.agents.test_team import AGENDA, PLANNER, WORKER, agenda_notes, answer_roles, run_engine, team_for, worker
from tests.conftest import make_target
from tests.fake_messages_api import FakeMessagesAPI, RecordedRequest, _canonical, edit, reply, request_blocks, text

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


def _tokens_through(request: RecordedRequest, api: FakeMessagesAPI, last: int) -> int:
    blocks = request_blocks(request.json)
    return api.cache.tokens(sum(len(_canonical(b).encode()) for b in blocks[: last + 1]))


async def test_a_new_agenda_rewrites_only_the_notes_not_the_workers_cached_files(tmp_path):
    target = make_target(tmp_path / "target")
    run_dir = tmp_path / "run"
    plans: list[int] = []

    def replanner(request: RecordedRequest):
        if request.tool_results():
            return reply(text("Agenda written."))
        plans.append(len(plans))
        return reply(edit("create", path="notes.md", file_text=agenda_notes(AGENDA[len(plans) - 1:])))

    # Usage computed by the server (no fixed figures): every prefix is cacheable.
    def billed_worker(request: RecordedRequest):
        answer = worker(request)
        answer.usage = None
        return answer

    with FakeMessagesAPI(min_cache_tokens=1) as api:
        answer_roles(api)
        api.responders[PLANNER], api.responders[WORKER] = replanner, billed_worker
        stopped, _ = await run_engine(target, run_dir, team_for(run_dir, base_url=api.base_url, plan_every=1),
                                      max_experiments=2)
        assert not stopped.error, stopped.reason
        assert plans == [0, 1]
        firsts = [r for r in api.requests_for(WORKER) if not r.tool_results()]
        assert len(firsts) == 2
        later = firsts[1]
        content = later.json["messages"][0]["content"]
        files_at = len(later.json["tools"]) + len(later.json["system"])  # the files block's index
        assert content[0]["text"].startswith(prompt.ANCHOR_HEADING)
        assert content[1]["text"].startswith('<notes path="notes.md">') and "lower LR to 0.3" in content[1]["text"]
        # The agenda changed between the two, yet tools, program.md and the files
        # were read from the cache; only the notes and what follows were written.
        assert later.usage["cache_read_input_tokens"] >= _tokens_through(later, api, files_at)
        assert later.usage["cache_creation"]["ephemeral_1h_input_tokens"] < _tokens_through(later, api, files_at)
        assert all(json.dumps(r.json).count('"cache_control"') <= 4 for r in api.requests)


def _ctx(tmp_path: Path, history: list[ResultRow], tail: str = "") -> ProposalContext:
    return ProposalContext(exp=len(history), target=TargetConfig(root=tmp_path), best_metric=1.0,
                           baseline_metric=1.0, history=history, last_failure_tail=tail)


def test_the_reviewer_sees_the_do_not_repeat_lines_once_and_not_the_rest_of_the_notes(tmp_path):
    history = [ResultRow(0, "0", 1.0, "keep", "baseline"), ResultRow(1, "1", 0.99, "keep", "set LR = 0.4"),
               ResultRow(2, "2", 1.01, "discard", "set LR = 0.3")]
    notes = agenda_notes()
    notes = add_to_do_not_repeat(notes, "set LR = 0.4 -> keep")  # the planner's copy of a history line
    notes = add_to_do_not_repeat(notes, "set LR = 0.2: rejected by the reviewer before training (tried)")
    message = team_prompt.reviewer_message(_ctx(tmp_path, history), notes, "set LR = 0.35", "between", "+LR = 0.35",
                                           ["the edit applied"])
    body = "\n".join(b["text"] for b in message["content"])
    assert "- set LR = 0.2: rejected by the reviewer before training (tried)" in body
    assert body.count("set LR = 0.4 -> keep") == 1 and "- set LR = 0.3 -> discard" in body
    # The ranking and the advice to workers decide no verdict.
    assert AGENDA[1] not in body and "Small learning-rate steps" not in body
    # It grows by a row at every review: a cached copy would be written each time and never read.
    assert not any("cache_control" in b for b in message["content"])


def test_a_worker_sees_a_crash_tail_only_while_that_crash_is_the_latest_result(tmp_path):
    tail = "Traceback (most recent call last):\nRuntimeError: loss is NaN"
    crashed = [ResultRow(0, "0", 1.0, "keep", "baseline"), ResultRow(1, "1", None, "crash", "logit cap 30")]
    later = [*crashed, ResultRow(2, "2", 1.01, "discard", "set LR = 0.3")]
    assert "loss is NaN" in prompt.situation_text(_ctx(tmp_path, crashed, tail), prompt.COMPACT)
    assert "loss is NaN" not in prompt.situation_text(_ctx(tmp_path, later, tail), prompt.COMPACT)
    # The single agent, and the planner, keep it until the next crash.
    assert "loss is NaN" in prompt.situation_text(_ctx(tmp_path, later, tail))
    assert "loss is NaN" in team_prompt.history_text(_ctx(tmp_path, later, tail), [])


