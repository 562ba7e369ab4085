"""The research team through the real Engine on a tiny real target: the real
`anthropic` SDK over HTTP to local Messages-API servers that answer by model."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

from ar_tui.agents.notes import NOTES_TEMPLATE, TeamMemory
from ar_tui.agents.team import TeamProposer, parse_team
from ar_tui.core import events as ev
from ar_tui.core.control.role_costs import role_costs
from ar_tui.core.engine import Engine, EngineOptions
from ar_tui.core.records.ledger import read_events, read_results
from tests.conftest import make_target
from tests.fake_messages_api import (
    FakeMessagesAPI,
    RecordedRequest,
    edit,
    error,
    reply,
    run_experiment,
    text,
    tool_use,
    usage,
)

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")

KEY = "sk-ant-test-team-9a8b7c6d"
PLANNER, WORKER, REVIEWER = "claude-sonnet-4-6", "claude-haiku-4-5", "claude-3-5-haiku"
# Fixed usage per reply, so that every cost below is exact: $ per million tokens
# sonnet-4-6 3 in / 15 out, haiku-4-5 1 / 5, 3-5-haiku 0.80 / 4.
PLANNER_USAGE = usage(input=1000, output=100)  # $0.0045 a request
WORKER_USAGE = usage(input=2000, output=50)  # $0.00225
REVIEWER_USAGE = usage(input=500, output=20)  # $0.00048
AGENDA = [
    "lower LR to 0.4 - the loss curve is noisy at 0.5",
    "lower LR to 0.3 - if 0.4 helps, the optimum may be lower still",
    "lower LR to 0.2 - bracket the optimum",
    "lower LR to 0.35 - between the two best",
]


def agenda_notes(items: list[str] = AGENDA) -> str:
    numbered = "\n".join(f"{i}. {h}" for i, h in enumerate(items, 1))
    return NOTES_TEMPLATE.replace("(ranked, best first)\n", f"(ranked, best first)\n{numbered}\n").replace(
        "## What works here\n", "## What works here\n- Small learning-rate steps on this target.\n")


def planner(request: RecordedRequest):
    if request.tool_results():
        return reply(text("Agenda written."), usage=PLANNER_USAGE)
    return reply(text("Ranking the hypotheses."), edit("create", path="notes.md", file_text=agenda_notes()),
                 usage=PLANNER_USAGE)


def _last_tool_use(request: RecordedRequest) -> dict:
    return [b for b in request.messages()[-2]["content"] if b["type"] == "tool_use"][-1]


def worker(request: RecordedRequest):
    """Implements its hypothesis (LR to X) with one edit, then submits it."""
    messages = request.messages()
    if request.tool_results() and _last_tool_use(request)["name"] == "str_replace_based_edit_tool":
        new = _last_tool_use(request)["input"]["new_str"]
        return reply(run_experiment(f"set {new}", rationale="from the agenda"), usage=WORKER_USAGE)
    opening = messages[0]["content"]
    # The files as last shown, and the changes kept since (a team's workers see both).
    after_files = "\n".join(b["text"] for b in opening[1:] if b.get("type") == "text")
    kept = re.findall(r"^\+LR = ([0-9.]+)", after_files, re.MULTILINE)
    lr = kept[-1] if kept else re.search(r"^LR = ([0-9.]+)", opening[0]["text"], re.MULTILINE).group(1)
    wanted = re.search(r"LR to ([0-9.]+)", opening[-1]["text"])
    new = wanted.group(1) if wanted else f"{float(lr) - 0.1:.1f}"
    return reply(text(f"Setting LR to {new}."), edit("str_replace", path="train.py", old_str=f"LR = {lr}",
                                                    new_str=f"LR = {new}"), usage=WORKER_USAGE)


def verdict(value: str, reason: str):
    return reply(tool_use("review", {"verdict": value, "reason": reason}), usage=REVIEWER_USAGE)


def approve(request: RecordedRequest):
    return verdict("approve", "a new idea")


def answer_roles(api: FakeMessagesAPI) -> None:
    api.responders.update({PLANNER: planner, WORKER: worker, REVIEWER: approve})


def team_for(run_dir: Path, spec: str | None = None, **kw) -> TeamProposer:
    spec = spec or f"planner={PLANNER},worker={WORKER},reviewer={REVIEWER}"
    return TeamProposer(parse_team(spec), program="Be a careful researcher.", run_dir=run_dir, api_key=KEY,
                        base_url=kw.pop("base_url"), retry_base_s=0.001, retry_cap_s=0.01, **kw)


async def run_engine(target: Path, run_dir: Path, team: TeamProposer, **kw) -> tuple[ev.RunStopped, list[ev.Event]]:
    options = EngineOptions(target_dir=target, tag="t", run_dir=run_dir, attended=False, lookahead=0,
                            baseline_runs=1, write_report=False, **kw)
    engine = Engine(options, team)
    seen: list[ev.Event] = []
    engine.subscribe(seen.append)
    stopped = await engine.run()  # which ends the team's own tasks (its aclose) with the run
    return stopped, seen


def rows(run_dir: Path):
    return read_results(run_dir / "results.tsv")[1]


def started(events: list[ev.Event]) -> list[ev.ExperimentStarted]:
    return [e for e in events if isinstance(e, ev.ExperimentStarted) and e.exp != 0]


@pytest.fixture
def target(tmp_path: Path) -> Path:
    return make_target(tmp_path / "target")


def test_the_team_flag_and_table_parse_to_roles_and_refuse_bad_input_in_one_line():
    spec = parse_team("planner=claude-opus-5-5,worker=claude-haiku-4-5,worker=qwen3@http://127.0.0.1:8080,"
                      "reviewer=claude-haiku-4-5")
    assert [str(w) for w in spec.workers] == ["worker=claude-haiku-4-5", "worker=qwen3@http://127.0.0.1:8080"]
    assert spec.planner.model == "claude-opus-5-5" and spec.reviewer.base_url is None
    from ar_tui.agents.team import team_from_table
    from ar_tui.core.config import ConfigError

    table = team_from_table({"planner": "a", "worker": ["b", "c@https://h:1"], "reviewer": "d"})
    assert [w.base_url for w in table.workers] == [None, "https://h:1"]
    for bad, fragment in [("planner=a", "at least one worker"), ("boss=a,worker=b", "ROLE=MODEL"),
                          ("worker=b@ftp://x", "http://"), ("worker=b,planner=a,planner=c", "one planner"),
                          ("worker=", "needs a model")]:
        with pytest.raises(ConfigError, match=re.escape(fragment)) as info:
            parse_team(bad)
        assert "\n" not in str(info.value)


async def test_each_role_reaches_its_own_model_and_server_and_costs_are_exact_per_role(target, tmp_path):
    run_dir = tmp_path / "run"
    with FakeMessagesAPI() as p_api, FakeMessagesAPI() as w_api, FakeMessagesAPI() as r_api:
        p_api.responder, w_api.responder, r_api.responder = planner, worker, approve
        spec = (f"planner={PLANNER}@{p_api.base_url},worker={WORKER}@{w_api.base_url},"
                f"reviewer={REVIEWER}@{r_api.base_url}")
        team = team_for(run_dir, spec, base_url="http://127.0.0.1:9")  # the default server is never used
        stopped, events = await run_engine(target, run_dir, team, max_experiments=2)
    assert not stopped.error, stopped.reason
    assert [(r.exp, r.status, r.description) for r in rows(run_dir)] == [
        (0, "keep", "baseline"), (1, "keep", "set LR = 0.4"), (2, "keep", "set LR = 0.3")]

    assert {r.json["model"] for r in p_api.requests} == {PLANNER} and len(p_api.requests) == 2
    assert {r.json["model"] for r in w_api.requests} == {WORKER} and len(w_api.requests) == 4
    assert {r.json["model"] for r in r_api.requests} == {REVIEWER} and len(r_api.requests) == 2
    assert [t["name"] for t in p_api.requests[0].json["tools"]] == ["str_replace_based_edit_tool"]
    assert [t["name"] for t in w_api.requests[0].json["tools"]] == ["str_replace_based_edit_tool", "run_experiment"]
    assert [t["name"] for t in r_api.requests[0].json["tools"]] == ["review"]
    assert r_api.requests[0].json["tool_choice"] == {"type": "tool", "name": "review"}
    # The reviewer saw the diff it judged.
    assert "+LR = 0.4" in r_api.requests[0].text()

    # notes.md, written by the planner, reached a later worker: the agenda and its own hypothesis.
    later = w_api.requests[2]
    assert "What works here\n- Small learning-rate steps" in later.text()
    assert "## Your hypothesis\nlower LR to 0.3" in later.text()
    # So did the evidence of how exp 1 trained, against its parent (the baseline).
    assert "## How the runs trained" in later.text() and "- exp 1 keep: peak_vram_mb 2048 (+0%)" in later.text()

    # The workers' files block stays byte-identical after a keep (it stays cached);
    # the kept change comes as a diff after it.
    first, second = (r.json["messages"][0]["content"] for r in (w_api.requests[0], later))
    assert first[0]["text"] == second[0]["text"] and "LR = 0.5" in first[0]["text"]
    # The notes come after the files, behind a breakpoint of their own, so a new
    # agenda does not rewrite the cached files; the kept change comes after both.
    assert second[1]["text"].startswith('<notes path="notes.md">') and second[1]["cache_control"]["ttl"] == "1h"
    assert "## Kept since these files were shown" in second[2]["text"] and "+LR = 0.4" in second[2]["text"]
    assert all(json.dumps(r.json).count('"cache_control"') <= 4 for r in w_api.requests)  # the API's limit

    # Per role, per model, per row: exact.
    costs = role_costs(events)
    assert costs.cost_by_role == {"planner": 0.009, "reviewer": 0.00096, "worker": 0.009}
    assert costs.cost_by_model == {PLANNER: 0.009, REVIEWER: 0.00096, WORKER: 0.009}
    assert costs.tokens_by_role["worker"]["input"] == 8000
    by_row = {r.exp: Decimal(str(r.cost_usd)) for r in rows(run_dir)}
    assert by_row[1] == Decimal("0.009") + Decimal("0.0045") + Decimal("0.00048")
    assert by_row[2] == Decimal("0.0045") + Decimal("0.00048")
    # Every agent event says who spoke.
    assert {e.role for e in events if isinstance(e, (ev.AgentText, ev.AgentToolCall, ev.Usage))} == {
        "planner", "worker", "reviewer"}
    # The persisted events replay with their roles.
    replayed = [e for e in read_events(run_dir / "events.jsonl") if isinstance(e, ev.Usage)]
    assert {e.role for e in replayed} == {"planner", "worker", "reviewer"}


async def test_a_rejected_proposal_spends_no_training_and_is_in_the_events_and_the_notes(target, tmp_path):
    run_dir = tmp_path / "run"
    with FakeMessagesAPI() as api:
        answer_roles(api)
        api.script(verdict("reject", "LR 0.4 was tried in an earlier run"), model=REVIEWER)
        stopped, events = await run_engine(target, run_dir, team_for(run_dir, base_url=api.base_url),
                                           max_experiments=1)
    assert not stopped.error, stopped.reason
    # Only the approved proposal trained; the rejected one has no row and no run.
    assert [(e.exp, e.description) for e in started(events)] == [(1, "set LR = 0.3")]
    assert [(r.exp, r.description) for r in rows(run_dir)] == [(0, "baseline"), (1, "set LR = 0.3")]
    reviews = [(e.verdict, e.description) for e in events if isinstance(e, ev.Review)]
    assert reviews == [("reject", "set LR = 0.4"), ("approve", "set LR = 0.3")]
    failed = [e for e in events if isinstance(e, ev.ProposalFailed)]
    assert len(failed) == 1 and failed[0].reason.startswith("rejected by the reviewer before training")
    notes = (run_dir / "notes.md").read_text()
    do_not_repeat = notes.split("## Do not repeat")[1].split("##")[0]
    assert "set LR = 0.4: rejected by the reviewer before training (LR 0.4 was tried" in do_not_repeat
    assert role_costs(read_events(run_dir / "events.jsonl")).rejected_before_training == 1
    # The row's cost carries the rejected attempt too: planner 2, worker 4, reviewer 2 requests.
    assert Decimal(str(rows(run_dir)[1].cost_usd)) == 2 * Decimal("0.0045") + 4 * Decimal("0.00225") + 2 * Decimal("0.00048")


async def test_a_revise_goes_back_to_the_worker_once_with_the_critique(target, tmp_path):
    run_dir = tmp_path / "run"

    def reviser(request: RecordedRequest):
        last = request.messages()[-1]["content"]
        if any(b.get("type") == "text" and "asked for a revision" in b["text"] for b in last):
            return reply(edit("str_replace", path="train.py", old_str="LR = 0.4", new_str="LR = 0.3"),
                         usage=WORKER_USAGE)
        return worker(request)

    with FakeMessagesAPI() as api:
        answer_roles(api)
        api.responders[WORKER] = reviser
        api.script(verdict("revise", "go further: 0.3"), verdict("revise", "still unsure"), model=REVIEWER)
        stopped, events = await run_engine(target, run_dir, team_for(run_dir, base_url=api.base_url),
                                           max_experiments=1)
    assert not stopped.error, stopped.reason
    worker_requests = api.requests_for(WORKER)
    assert len(worker_requests) == 4 and len(api.requests_for(REVIEWER)) == 2
    back = worker_requests[2]
    results = back.tool_results()
    assert [r["content"] for r in results] == ["submitted"]
    assert "The reviewer asked for a revision before training: go further: 0.3" in back.text()
    # The second "revise" does not send it back again: it trains, as revised.
    assert [e.verdict for e in events if isinstance(e, ev.Review)] == ["revise", "approve"]
    assert [e.description for e in started(events)] == ["set LR = 0.3"]
    assert "+LR = 0.3" in (run_dir / "diffs" / "1.diff").read_text()


async def test_resume_keeps_the_notes_and_the_agenda(target, tmp_path):
    run_dir = tmp_path / "run"
    with FakeMessagesAPI() as api:
        answer_roles(api)
        await run_engine(target, run_dir, team_for(run_dir, base_url=api.base_url), max_experiments=1)
        notes = (run_dir / "notes.md").read_text()
        assert TeamMemory(run_dir).state.taken == [AGENDA[0]]
        before = len(api.requests_for(PLANNER))
        # A new process: a new team object on the same run dir.
        stopped, events = await run_engine(target, run_dir, team_for(run_dir, base_url=api.base_url),
                                           max_experiments=2)
    assert not stopped.error, stopped.reason
    assert len(api.requests_for(PLANNER)) == before  # not due: the agenda was kept
    assert (run_dir / "notes.md").read_text() == notes
    assert [e.description for e in started(events)] == ["set LR = 0.3"]
    assert "## Your hypothesis\nlower LR to 0.3" in api.requests_for(WORKER)[-1].text()


async def test_a_planner_outage_does_not_stop_the_workers_using_the_current_agenda(target, tmp_path):
    run_dir = tmp_path / "run"
    with FakeMessagesAPI() as api:
        answer_roles(api)
        await run_engine(target, run_dir, team_for(run_dir, base_url=api.base_url), max_experiments=1)
        # The planner's server goes down for good; it is due after every experiment.
        api.responders[PLANNER] = lambda request: error(529, "overloaded_error")
        team = team_for(run_dir, base_url=api.base_url, plan_every=1)
        stopped, events = await run_engine(target, run_dir, team, max_experiments=3)
    assert not stopped.error, stopped.reason
    assert [e.description for e in started(events)] == ["set LR = 0.3", "set LR = 0.2"]
    assert team._plan_task is None  # the planner, still waiting out the outage, ended with the run
    waits = [e for e in events if isinstance(e, ev.ApiWaiting)]
    assert waits and {e.role for e in waits} == {"planner"}
    assert "## Your hypothesis\nlower LR to 0.2" in api.requests_for(WORKER)[-1].text()


async def test_the_team_under_a_budget_starts_no_request_once_the_cap_is_reached(target, tmp_path):
    run_dir = tmp_path / "run"
    with FakeMessagesAPI() as api:
        answer_roles(api)
        stopped, events = await run_engine(target, run_dir, team_for(run_dir, base_url=api.base_url),
                                           max_experiments=10, budget_usd=0.02)
    assert not stopped.error and "budget" in stopped.reason
    prices = {PLANNER: Decimal("0.0045"), WORKER: Decimal("0.00225"), REVIEWER: Decimal("0.00048")}
    spent = Decimal(0)
    for request in api.requests:  # one server: in the order they were made
        assert spent < Decimal("0.02"), "a request started after the budget was spent"
        spent += prices[request.json["model"]]
    # Planner 2 + (worker 2 + reviewer 1) x 2 = $0.01896; exp 3's first worker request crosses the cap.
    assert len(api.requests) == 9 and spent == Decimal("0.02121")
    assert [e.exp for e in started(events)] == [1, 2]
    assert stopped.cost_usd == pytest.approx(0.02121, abs=1e-12)


async def test_a_rejected_key_stops_the_team_with_one_line(target, tmp_path):
    run_dir = tmp_path / "run"
    with FakeMessagesAPI() as api:
        answer_roles(api)
        api.responders[WORKER] = lambda request: error(401, "authentication_error", "invalid x-api-key")
        stopped, events = await run_engine(target, run_dir, team_for(run_dir, base_url=api.base_url),
                                           max_experiments=2)
    assert stopped.error and "rejected the key (401 authentication_error)" in stopped.reason
    assert "\n" not in stopped.reason and not started(events)
    assert json.loads((run_dir / "team.json").read_text())["planned_at"] == 0


async def test_a_worker_pool_tries_each_model_then_the_bandit_picks_and_the_assignments_persist(target, tmp_path):
    run_dir = tmp_path / "run"
    other = "claude-haiku-4-5-20251001"  # a second worker model (dated id, same prices)
    with FakeMessagesAPI() as api:
        answer_roles(api)
        api.responders[other] = worker
        spec = f"planner={PLANNER},worker={WORKER},worker={other},reviewer={REVIEWER}"
        stopped, _ = await run_engine(target, run_dir, team_for(run_dir, spec, base_url=api.base_url),
                                      max_experiments=3)
    assert not stopped.error, stopped.reason
    state = TeamMemory(run_dir).state
    picked = [state.assignments[exp].model for exp in (1, 2, 3)]
    assert picked[:2] == [f"worker={WORKER}", f"worker={other}"]
    # exp 1 improved by 0.03 (1.04 -> 1.01), exp 2 by 0.01 at the same cost: the first model again.
    assert picked[2] == f"worker={WORKER}"
    assert [state.assignments[exp].cost_usd for exp in (1, 2, 3)] == [0.0045] * 3
    assert len(api.requests_for(other)) == 2


async def test_the_planner_may_search_the_web_edits_only_its_notes_and_proposes_program_changes_aside(target, tmp_path):
    from tests.fake_messages_api import web_search

    run_dir = tmp_path / "run"
    (target / "program.md").write_text("the human's program\n")

    def searching_planner(request: RecordedRequest):
        if request.tool_results():
            return reply(text("Done."), usage=PLANNER_USAGE)
        return reply(*web_search("learning rate warmup small transformers", [("https://arxiv.org/abs/1", "LR paper")]),
                     edit("create", path="notes.md", file_text=agenda_notes() + "\nSource: LR paper https://arxiv.org/abs/1\n"),
                     edit("create", path="program.proposed.md", file_text="the human's program, sharper\n"),
                     edit("create", path="../target/train.py", file_text="pwned"),
                     edit("create", path="program.md", file_text="pwned"),
                     usage=PLANNER_USAGE)

    with FakeMessagesAPI() as api:
        answer_roles(api)
        api.responders[PLANNER] = searching_planner
        stopped, events = await run_engine(target, run_dir, team_for(run_dir, base_url=api.base_url, web_search=True),
                                           max_experiments=1)
    assert not stopped.error, stopped.reason
    assert [t["name"] for t in api.requests_for(PLANNER)[0].json["tools"]] == ["str_replace_based_edit_tool",
                                                                              "web_search"]
    assert "web_search" not in json.dumps(api.requests_for(WORKER)[0].json["tools"])
    refused = [r for r in api.requests_for(PLANNER)[1].tool_results() if r.get("is_error")]
    assert len(refused) == 2
    assert (run_dir / "program.proposed.md").read_text() == "the human's program, sharper\n"
    assert (target / "program.md").read_text() == "the human's program\n"
    assert "pwned" not in (target / "train.py").read_text() and not (run_dir / "program.md").exists()
    costs = role_costs(events)
    assert costs.web_searches == 1
    assert costs.cost_by_role["planner"] == 0.019  # two requests at $0.0045, one search at $0.01


def test_the_anchored_files_are_shown_again_once_the_changes_since_outgrow_the_cap(tmp_path):
    from ar_tui.agents.llm.prompt import FilesAnchor
    from ar_tui.core.workspace import Workspace

    (tmp_path / "train.py").write_text("LR = 0.5\n" + "x = 1\n" * 50)
    workspace = Workspace(tmp_path, ["train.py"], [])
    anchor = FilesAnchor(max_diff_chars=400)
    files, since = anchor.texts(workspace)
    assert since == "" and "LR = 0.5" in files
    workspace.str_replace("train.py", "LR = 0.5", "LR = 0.4")
    again, since = anchor.texts(workspace)
    assert again == files and "-LR = 0.5\n+LR = 0.4" in since
    workspace.create("train.py", "LR = 0.4\n" + "y = 2\n" * 50)
    fresh, since = anchor.texts(workspace)
    assert since == "" and "y = 2" in fresh and fresh != files


async def test_the_planner_runs_again_when_the_open_hypotheses_run_low(target, tmp_path):
    run_dir = tmp_path / "run"
    plans: list[int] = []

    def short_agenda_planner(request: RecordedRequest):
        if request.tool_results():
            return reply(text("Agenda written."), usage=PLANNER_USAGE)
        plans.append(len(plans))
        items = AGENDA[:2] if len(plans) == 1 else AGENDA[1:]
        return reply(edit("create", path="notes.md", file_text=agenda_notes(items)), usage=PLANNER_USAGE)

    with FakeMessagesAPI() as api:
        answer_roles(api)
        api.responders[PLANNER] = short_agenda_planner
        stopped, events = await run_engine(target, run_dir, team_for(run_dir, base_url=api.base_url),
                                           max_experiments=2)
    assert not stopped.error, stopped.reason
    # Two hypotheses, one taken after exp 1: fewer than two open, so it planned again before exp 2.
    assert plans == [0, 1]
    assert [e.description for e in started(events)] == ["set LR = 0.4", "set LR = 0.3"]
    state = TeamMemory(run_dir).state
    assert state.taken == AGENDA[:2] and state.planned_at == 1 and state.plans == 2


async def test_a_budget_stop_leaves_the_hypothesis_open_for_the_resumed_run(target, tmp_path):
    run_dir = tmp_path / "run"
    with FakeMessagesAPI() as api:
        answer_roles(api)
        # Planner $0.009, then the first worker request crosses $0.01: no more requests.
        stopped, _ = await run_engine(target, run_dir, team_for(run_dir, base_url=api.base_url),
                                      max_experiments=3, budget_usd=0.01)
    assert "budget" in stopped.reason and not stopped.error
    assert TeamMemory(run_dir).open_hypotheses() == AGENDA
