"""The Claude agent against a local server that speaks the Messages API.

Every test drives the real `anthropic` SDK over HTTP (streaming included) to
`tests/fake_messages_api.py`, and edits a real file through a real Workspace.
"""

from __future__ import annotations

import json
import os
import time
from decimal import Decimal
from pathlib import Path

import pytest

from ar_tui.agents.single import SingleAgent
from ar_tui.core import events as ev
from ar_tui.core.config import ConfigError, TargetConfig
from ar_tui.core.proposer import (
    ProposalContext,
    ProposalFailed,
    ProposerStopped,
    ResultRow,
)
from ar_tui.core.workspace import Workspace
from tests.conftest import TINY_PREPARE, TINY_TRAIN
from tests.fake_messages_api import (
    FakeMessagesAPI,
    drop,
    edit,
    error,
    outage,
    reply,
    run_experiment,
    stream_error,
    text,
    tool_use,
    usage,
)

# The SDK warns that claude-sonnet-4-5 nears its end of life; the price table still covers it.
pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")

KEY = "sk-ant-test-5f1c0ffee5ecret0key"
LOWER_LR = edit("str_replace", path="train.py", old_str="LR = 0.5", new_str="LR = 0.4")


@pytest.fixture
def api():
    with FakeMessagesAPI() as server:
        yield server


@pytest.fixture
def target(tmp_path: Path) -> Path:
    root = tmp_path / "target"
    root.mkdir()
    (root / "train.py").write_text(TINY_TRAIN)
    (root / "prepare.py").write_text(TINY_PREPARE)
    (tmp_path / "outside.txt").write_text("not yours\n")
    return root


@pytest.fixture
def workspace(target: Path) -> Workspace:
    return Workspace(target, ["train.py"], ["prepare.py"])


def make_agent(api: FakeMessagesAPI, **options) -> SingleAgent:
    settings = dict(model="claude-sonnet-4-5", program="Be a careful researcher.", api_key=KEY,
                    base_url=api.base_url, retry_base_s=0.001, retry_cap_s=0.01)
    settings.update(options)
    return SingleAgent(**settings)


def make_ctx(target: Path, exp: int = 1, **fields) -> ProposalContext:
    history = fields.pop("history", [ResultRow(0, "abc1234", 1.04, "keep", "baseline")])
    return ProposalContext(exp=exp, target=TargetConfig(root=target), best_metric=1.04, baseline_metric=1.04,
                           history=history, **fields)


def tree_state(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def of_kind(events: list[ev.Event], cls: type) -> list:
    return [e for e in events if isinstance(e, cls)]


async def test_a_streamed_edit_then_run_experiment_yields_a_proposal(api, target, workspace):
    api.script(
        reply(text("The learning rate looks high for this loss surface; lowering it."), LOWER_LR),
        reply(run_experiment("lower LR to 0.4", rationale="the optimum is below 0.5")),
    )
    events: list[ev.Event] = []
    proposal = await make_agent(api).propose(make_ctx(target), workspace, events.append)

    assert proposal.description == "lower LR to 0.4"
    assert proposal.rationale == "the optimum is below 0.5"
    assert "LR = 0.4" in (target / "train.py").read_text()
    # The text arrived as several streamed deltas that add up to the whole.
    texts = of_kind(events, ev.AgentText)
    assert len(texts) > 1
    assert "".join(t.text for t in texts) == "The learning rate looks high for this loss surface; lowering it."
    calls = of_kind(events, ev.AgentToolCall)
    assert [(c.name, c.summary, c.is_error, c.result) for c in calls] == [
        ("str_replace_based_edit_tool", "str_replace train.py", False, "edited train.py"),
        ("run_experiment", "run_experiment: lower LR to 0.4", False, "submitted"),
    ]
    # The second request sent the assistant turn back and answered its tool call by id.
    assistant = api.requests[1].messages()[-2]
    tool_id = [b for b in assistant["content"] if b["type"] == "tool_use"][0]["id"]
    results = api.requests[1].tool_results()
    assert len(results) == 1 and not results[0].get("is_error")
    assert (results[0]["tool_use_id"], results[0]["content"]) == (tool_id, "edited train.py")
    # One final Usage per request, and the proposal's cost is their sum.
    finals = [u for u in of_kind(events, ev.Usage) if not u.streaming]
    assert len(finals) == 2
    assert proposal.cost_usd == pytest.approx(sum(u.cost_usd for u in finals), rel=1e-12)
    assert proposal.usage.output_tokens == sum(u.output_tokens for u in finals)


async def test_requests_carry_only_the_two_tools_and_cache_breakpoints_on_the_stable_prefix(api, target, workspace):
    api.script(reply(LOWER_LR), reply(run_experiment("lower LR")))
    await make_agent(api).propose(make_ctx(target), workspace, lambda e: None)

    for request in api.requests:
        body = request.json
        assert body["stream"] is True
        tools = body["tools"]
        assert tools[0].get("type") == "text_editor_20250728"
        assert [t["name"] for t in tools] == ["str_replace_based_edit_tool", "run_experiment"]
        assert tools[1]["input_schema"]["required"] == ["description"]
        # Tools and system prompt (program.md) end at one-hour breakpoints.
        assert tools[-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
        assert body["system"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
        assert "Be a careful researcher." in body["system"][0]["text"]
        # The files block is cached for the hour; the newest turn for five minutes.
        opening = body["messages"][0]["content"]
        assert opening[0]["cache_control"]["ttl"] == "1h" and "LR = 0.5" in opening[0]["text"]
        assert body["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "5m"}
        breakpoints = json.dumps(body).count('"cache_control"')
        assert breakpoints <= 4
    # The stable prefix is byte-identical between the turns, so the cache can hit.
    first, second = (r.json for r in api.requests)
    assert first["tools"] == second["tools"] and first["system"] == second["system"]
    assert first["messages"][0]["content"][0] == second["messages"][0]["content"][0]


async def test_other_models_get_the_editor_as_a_tool_with_a_schema(api, target, workspace, monkeypatch):
    monkeypatch.delenv("AR_TUI_EDITOR_TOOL", raising=False)
    api.script(reply(LOWER_LR, run_experiment("lower LR")), reply(LOWER_LR, run_experiment("again")))
    await make_agent(api, model="qwen3-coder:30b").propose(make_ctx(target), workspace, lambda e: None)
    editor = api.requests[0].json["tools"][0]
    assert "type" not in editor and editor["name"] == "str_replace_based_edit_tool"
    assert editor["input_schema"]["properties"]["command"]["enum"] == ["view", "str_replace", "create", "insert"]
    assert "LR = 0.4" in (target / "train.py").read_text()
    # The environment can insist on the built-in tool type, e.g. for a gateway to Claude.
    monkeypatch.setenv("AR_TUI_EDITOR_TOOL", "builtin")
    (target / "train.py").write_text(TINY_TRAIN)
    await make_agent(api, model="my-gateway-model").propose(make_ctx(target), workspace, lambda e: None)
    assert api.requests[1].json["tools"][0] == {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"}


async def test_a_tool_input_sent_whole_at_block_start_is_accepted(api, target, workspace):
    whole = edit("str_replace", path="train.py", old_str="LR = 0.5", new_str="LR = 0.4")
    whole.whole = True
    api.script(reply(whole, run_experiment("lower LR")))
    await make_agent(api).propose(make_ctx(target), workspace, lambda e: None)
    assert "LR = 0.4" in (target / "train.py").read_text()


async def test_insert_accepts_insert_text_and_new_str(api, target, workspace):
    api.script(
        reply(edit("insert", path="train.py", insert_line=0, insert_text="# first")),
        reply(edit("insert", path="train.py", insert_line=1, new_str="# second")),
        reply(run_experiment("comments")),
    )
    await make_agent(api).propose(make_ctx(target), workspace, lambda e: None)
    assert (target / "train.py").read_text().startswith("# first\n# second\nimport os")


HOSTILE = [
    ("parent path", edit("create", path="../outside.txt", file_text="pwned"), "outside the target"),
    ("absolute path", None, "outside the target"),
    ("protected file", edit("str_replace", path="prepare.py", old_str="DATA = 42", new_str="DATA = 0"), "protected"),
    ("unknown tool", tool_use("bash", {"command": "rm -rf /"}), "unknown tool 'bash'"),
    ("invalid JSON", tool_use("str_replace_based_edit_tool", raw_json='{"command": "create", "path": "train.py", "file_text": "x'),
     "not valid JSON"),
    ("input not an object", tool_use("str_replace_based_edit_tool", raw_json="[1, 2]"), "must be a JSON object"),
    ("path not a string", edit("view", path=7), "`path` must be a string"),
    ("insert_line not an int", edit("insert", path="train.py", insert_line="3", insert_text="x"), "insert_line must be an integer"),
    ("missing old_str", edit("str_replace", path="train.py", new_str="x"), "needs `old_str`"),
    ("old_str missing from file", edit("str_replace", path="train.py", old_str="LR = 9", new_str="x"), "not found"),
    ("old_str not unique", edit("str_replace", path="train.py", old_str="print(", new_str="x("), "occurs 4 times"),
    ("file grown past the cap", edit("create", path="train.py", file_text="x" * 600_000), "over the cap"),
    ("unknown command", edit("undo_edit", path="train.py"), "undo_edit is not available"),
    ("not an editable file", edit("create", path="evil.py", file_text="x"), "not editable"),
    ("NUL byte in the path", edit("create", path="train.py\x00", file_text="x"), "not editable"),
]


@pytest.mark.parametrize("label, call, message", HOSTILE, ids=[h[0] for h in HOSTILE])
async def test_hostile_or_broken_tool_calls_get_an_error_result_and_change_nothing(
    api, target, workspace, tmp_path, label, call, message
):
    if call is None:
        call = edit("create", path=str(tmp_path / "outside.txt"), file_text="pwned")
    before = tree_state(tmp_path)
    api.script(reply(call), reply(LOWER_LR, run_experiment("lower LR")))
    events: list[ev.Event] = []
    proposal = await make_agent(api).propose(make_ctx(target), workspace, events.append)

    result = api.requests[1].tool_results()[0]
    assert result["is_error"] is True
    assert message in result["content"]
    assert "\n" not in result["content"]
    first_call = of_kind(events, ev.AgentToolCall)[0]
    assert first_call.is_error and message in first_call.result
    # Only the later, valid edit changed anything, and only train.py.
    after = tree_state(tmp_path)
    changed = {name for name in set(before) | set(after) if before.get(name) != after.get(name)}
    assert changed == {"target/train.py"}
    assert proposal.description == "lower LR"


async def test_a_symlinked_editable_file_is_refused(api, tmp_path):
    root = tmp_path / "t"
    root.mkdir()
    (root / "train.py").write_text(TINY_TRAIN)
    (tmp_path / "secret.txt").write_text("keep out\n")
    os.symlink(tmp_path / "secret.txt", root / "link.py")
    workspace = Workspace(root, ["train.py", "link.py"], [])
    before = tree_state(tmp_path)
    api.script(
        reply(edit("create", path="link.py", file_text="pwned"), edit("view", path="link.py")),
        reply(LOWER_LR, run_experiment("lower LR")),
    )
    await make_agent(api).propose(make_ctx(root), workspace, lambda e: None)
    results = api.requests[1].tool_results()
    assert all(r["is_error"] and "symbolic link" in r["content"] for r in results)
    assert (tmp_path / "secret.txt").read_text() == "keep out\n"
    after = tree_state(tmp_path)
    assert {n for n in after if before.get(n) != after[n]} == {"t/train.py"}


async def test_run_experiment_is_refused_until_something_changed(api, target, workspace):
    api.script(
        reply(run_experiment("nothing at all")),
        reply(LOWER_LR, run_experiment("lower LR")),
    )
    proposal = await make_agent(api).propose(make_ctx(target), workspace, lambda e: None)
    refused = api.requests[1].tool_results()[0]
    assert refused["is_error"] and "unchanged" in refused["content"]
    assert proposal.description == "lower LR"


async def test_run_experiment_after_a_failed_edit_in_the_same_reply_is_not_submitted(api, target, workspace):
    api.script(
        reply(edit("str_replace", path="train.py", old_str="no such text", new_str="x"), LOWER_LR,
              run_experiment("two edits")),
        reply(run_experiment("lower LR only")),
    )
    proposal = await make_agent(api).propose(make_ctx(target), workspace, lambda e: None)
    first, second, third = api.requests[1].tool_results()
    assert first["is_error"] and not second.get("is_error")
    assert third["is_error"] and "an edit in this reply failed" in third["content"]
    assert proposal.description == "lower LR only"


async def test_a_proposal_that_never_calls_run_experiment_fails_without_stopping_the_loop(api, target, workspace):
    api.script(
        reply(text("I think the model is fine as it is."), usage=usage(input=100, output=10)),
        reply(text("Really, nothing to change."), usage=usage(input=120, output=10)),
    )
    with pytest.raises(ProposalFailed) as info:
        await make_agent(api).propose(make_ctx(target), workspace, lambda e: None)
    assert "without calling run_experiment" in info.value.reason
    # It was reminded once, and the money spent is on the failure.
    assert "call run_experiment" in api.requests[1].messages()[-1]["content"][-1]["text"]
    assert info.value.cost_usd == pytest.approx((220 * 3 + 20 * 15) / 1e6)


async def test_the_tool_call_cap_ends_a_proposal_as_failed(api, target, workspace):
    api.script(*[reply(edit("view", path="train.py")) for _ in range(3)])
    with pytest.raises(ProposalFailed) as info:
        await make_agent(api, max_tool_calls=3).propose(make_ctx(target), workspace, lambda e: None)
    assert "cap of 3 tool calls" in info.value.reason
    assert len(api.requests) == 3


@pytest.mark.parametrize("stop_reason, fragment", [
    ("refusal", "refused"),
    ("model_context_window_exceeded", "context window"),
])
async def test_terminal_stop_reasons_fail_the_proposal(api, target, workspace, stop_reason, fragment):
    api.script(reply(text("I can't help with that."), stop_reason=stop_reason))
    with pytest.raises(ProposalFailed) as info:
        await make_agent(api).propose(make_ctx(target), workspace, lambda e: None)
    assert fragment in info.value.reason
    assert len(api.requests) == 1


async def test_max_tokens_with_a_truncated_tool_call_gets_an_error_and_a_second_chance(api, target, workspace):
    api.script(
        reply(text("Rewriting the whole file"),
              tool_use("str_replace_based_edit_tool", raw_json='{"command": "create", "path": "train.py", "file_te'),
              stop_reason="max_tokens"),
        reply(LOWER_LR, run_experiment("lower LR")),
    )
    proposal = await make_agent(api).propose(make_ctx(target), workspace, lambda e: None)
    content = api.requests[1].messages()[-1]["content"]
    assert content[0]["type"] == "tool_result" and content[0]["is_error"]
    assert "output limit" in content[-1]["text"]
    assert proposal.description == "lower LR"


async def test_pause_turn_sends_the_turn_back_to_be_continued(api, target, workspace):
    api.script(
        reply(text("Thinking about the schedule..."), stop_reason="pause_turn"),
        reply(LOWER_LR, run_experiment("lower LR")),
    )
    await make_agent(api).propose(make_ctx(target), workspace, lambda e: None)
    last = api.requests[1].messages()[-1]
    assert last["role"] == "assistant"
    assert last["content"][0]["text"] == "Thinking about the schedule..."


# --- failure overnight ------------------------------------------------------


async def test_a_429_with_retry_after_is_obeyed_then_the_proposal_goes_on(api, target, workspace):
    api.script(error(429, "rate_limit_error", retry_after=1), reply(LOWER_LR, run_experiment("lower LR")))
    events: list[ev.Event] = []
    proposal = await make_agent(api).propose(make_ctx(target), workspace, events.append)
    assert proposal.description == "lower LR"
    waits = of_kind(events, ev.ApiWaiting)
    assert [(w.attempt, w.retry_in_s) for w in waits] == [(1, 1.0)]
    assert "429 rate_limit_error" in waits[0].reason
    assert api.requests[1].at - api.requests[0].at >= 1.0
    states = [e.state for e in of_kind(events, ev.StateChanged)]
    assert states == [ev.STATE_WAITING_API, ev.STATE_PROPOSING]


async def test_a_long_529_storm_is_waited_out(api, target, workspace):
    storm = 120
    api.script(*[error(529, "overloaded_error")] * storm, reply(LOWER_LR, run_experiment("lower LR")))
    events: list[ev.Event] = []
    proposal = await make_agent(api).propose(make_ctx(target), workspace, events.append)
    assert proposal.description == "lower LR"
    waits = of_kind(events, ev.ApiWaiting)
    assert [w.attempt for w in waits] == list(range(1, storm + 1))
    # Backoff doubles up to the cap (0.01 s here) and stays there, with jitter, for as long as it takes.
    assert all(0 < w.retry_in_s <= 0.01 for w in waits)
    assert all(w.retry_in_s >= 0.005 for w in waits[10:])
    assert [w.waited_s for w in waits] == sorted(w.waited_s for w in waits)
    # One visible waiting state for the whole outage, then back to proposing.
    assert [e.state for e in of_kind(events, ev.StateChanged)] == [ev.STATE_WAITING_API, ev.STATE_PROPOSING]
    assert len(api.requests) == storm + 1


async def test_retry_after_zero_does_not_make_a_tight_loop(api, target, workspace):
    api.script(*[error(429, "rate_limit_error", retry_after=0)] * 4, reply(LOWER_LR, run_experiment("lower LR")))
    events: list[ev.Event] = []
    await make_agent(api, retry_base_s=0.02, retry_cap_s=1.0).propose(make_ctx(target), workspace, events.append)
    waits = [w.retry_in_s for w in of_kind(events, ev.ApiWaiting)]
    assert len(waits) == 4 and all(w >= 0.01 for w in waits)
    assert waits[-1] >= 0.08  # the backoff grew: 0.02 * 2**3 / 2 at least


def test_retry_after_headers_are_read_in_all_their_forms():
    from email.utils import formatdate

    from ar_tui.agents.llm.client import retry_after as _retry_after

    assert _retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert _retry_after({"retry-after": "7"}) == 7.0
    in_a_minute = _retry_after({"retry-after": formatdate(time.time() + 60, usegmt=True)})
    assert 55 <= in_a_minute <= 61
    assert _retry_after({"retry-after": "soon"}) is None
    assert _retry_after({}) is None
    assert _retry_after({"retry-after": "999999"}) == 3600.0


async def test_an_outage_measured_in_time_is_survived(api, target, workspace):
    api.script(outage(1.0, status=503, type="api_error"), reply(LOWER_LR, run_experiment("lower LR")))
    events: list[ev.Event] = []
    proposal = await make_agent(api, retry_cap_s=0.05).propose(make_ctx(target), workspace, events.append)
    assert proposal.description == "lower LR"
    waits = of_kind(events, ev.ApiWaiting)
    # Retried, attempt after attempt, for as long as the server was down: it
    # answered only once its outage had lasted a second (its own clock; how
    # many attempts fit in that second depends on the machine's load).
    assert len(waits) >= 2 and [w.attempt for w in waits] == list(range(1, len(waits) + 1))
    assert all(a.waited_s <= b.waited_s for a, b in zip(waits, waits[1:]))
    assert api.requests[-1].at - api.requests[0].at >= 1.0
    assert "503" in waits[0].reason


@pytest.mark.parametrize("broken", [
    drop(text("Half a thought"), LOWER_LR, after=1),
    stream_error(text("Half a thought"), LOWER_LR, after=1),
], ids=["connection dropped mid-stream", "error event mid-stream"])
async def test_a_stream_that_breaks_midway_is_retried(api, target, workspace, broken):
    api.script(broken, reply(LOWER_LR, run_experiment("lower LR")))
    events: list[ev.Event] = []
    proposal = await make_agent(api).propose(make_ctx(target), workspace, events.append)
    assert proposal.description == "lower LR"
    assert len(of_kind(events, ev.ApiWaiting)) == 1
    # The broken attempt's edit was never applied: only the retry's.
    assert (target / "train.py").read_text().count("LR = 0.4") == 1


async def test_a_mid_stream_error_that_waiting_cannot_fix_stops(api, target, workspace):
    api.script(stream_error(text("Half"), LOWER_LR, after=1, error_type="invalid_request_error"))
    with pytest.raises(ProposerStopped) as info:
        await make_agent(api).propose(make_ctx(target), workspace, lambda e: None)
    assert "invalid_request_error" in info.value.reason
    assert len(api.requests) == 1


@pytest.mark.parametrize("status, kind, code, fragment", [
    (401, "authentication_error", None, "rejected the key"),
    (403, "permission_error", None, "may not use this model"),
    (400, "invalid_request_error", None, "refused the request"),
    (429, "rate_limit_error", "enforced_spend_limit_reached", "spend limit"),
    (402, "billing_error", None, "spend limit"),
])
async def test_errors_that_waiting_cannot_fix_stop_with_one_line(api, target, workspace, status, kind, code, fragment):
    # The server echoes the key in its message: the reason must not repeat it.
    api.script(error(status, kind, f"bad credentials {KEY}", error_code=code))
    before = tree_state(target)
    events: list[ev.Event] = []
    with pytest.raises(ProposerStopped) as info:
        await make_agent(api).propose(make_ctx(target), workspace, events.append)
    reason = info.value.reason
    assert fragment in reason and str(status) in reason
    assert "\n" not in reason and KEY not in reason
    assert len(api.requests) == 1
    assert not of_kind(events, ev.ApiWaiting)
    assert tree_state(target) == before


async def test_no_request_starts_once_the_budget_is_spent(api, target, workspace):
    api.script(reply(LOWER_LR, run_experiment("lower LR")))
    with pytest.raises(ProposerStopped) as info:
        await make_agent(api).propose(make_ctx(target, spent_usd=2.0, budget_usd=2.0), workspace, lambda e: None)
    assert "budget" in info.value.reason
    assert api.requests == []


async def test_the_budget_is_checked_before_each_request_of_a_proposal(api, target, workspace):
    # The first request costs 100k input tokens * $3/M = $0.30 and crosses $1.00.
    api.script(reply(LOWER_LR, usage=usage(input=100_000, output=0)), reply(run_experiment("lower LR")))
    with pytest.raises(ProposerStopped) as info:
        await make_agent(api).propose(make_ctx(target, spent_usd=0.75, budget_usd=1.0), workspace, lambda e: None)
    assert "$1.0500 spent" in info.value.reason
    assert len(api.requests) == 1


async def test_the_gate_is_awaited_before_every_request(api, target, workspace):
    calls: list[int] = []

    async def gate() -> None:
        calls.append(len(api.requests))

    api.script(reply(LOWER_LR), reply(run_experiment("lower LR")))
    await make_agent(api).propose(make_ctx(target, gate=gate), workspace, lambda e: None)
    assert calls == [0, 1]


# --- cost ------------------------------------------------------------------


async def test_usage_adds_up_to_the_exact_expected_cost(api, target, workspace):
    api.script(
        reply(LOWER_LR, usage=usage(input=1200, output=350, cache_write_5m=100, cache_write_1h=2000)),
        reply(run_experiment("lower LR"), usage=usage(input=150, output=80, cache_write_5m=420, cache_read=3300)),
    )
    events: list[ev.Event] = []
    proposal = await make_agent(api).propose(make_ctx(target), workspace, events.append)
    finals = [u for u in of_kind(events, ev.Usage) if not u.streaming]
    # claude-sonnet-4-5: input 3, 5m write 3.75, 1h write 6, read 0.30, output 15 ($ per million).
    # 1200*3 + 350*15 + 100*3.75 + 2000*6 = 21225; 150*3 + 80*15 + 420*3.75 + 3300*0.30 = 4215.
    assert [u.cost_usd for u in finals] == [0.021225, 0.004215]
    assert proposal.cost_usd == float(Decimal("0.025440"))
    # message_delta repeats the input counts cumulatively: they were not added twice.
    assert [(u.input_tokens, u.output_tokens, u.cache_write_5m_tokens, u.cache_write_1h_tokens, u.cache_read_tokens)
            for u in finals] == [(1200, 350, 100, 2000, 0), (150, 80, 420, 0, 3300)]
    assert proposal.usage.input_tokens == 1350 and proposal.usage.cache_read_tokens == 3300


async def test_cache_writes_without_a_ttl_split_count_as_five_minute_writes(api, target, workspace):
    api.script(reply(LOWER_LR, run_experiment("x"), usage=usage(input=10, output=10, cache_write_5m=1000, split=False)))
    events: list[ev.Event] = []
    await make_agent(api).propose(make_ctx(target), workspace, events.append)
    final = [u for u in of_kind(events, ev.Usage) if not u.streaming][0]
    assert (final.cache_write_5m_tokens, final.cache_write_1h_tokens) == (1000, 0)
    assert final.cost_usd == (10 * 3 + 10 * 15 + 1000 * 3.75) / 1e6


async def test_an_unknown_model_shows_tokens_and_warns_once_without_a_price(api, target, workspace):
    api.script(reply(LOWER_LR, run_experiment("a")), reply(edit("str_replace", path="train.py", old_str="LR = 0.4",
                                                                 new_str="LR = 0.3"), run_experiment("b")))
    agent = make_agent(api, model="qwen3-coder:30b")
    events: list[ev.Event] = []
    first = await agent.propose(make_ctx(target), workspace, events.append)
    second = await agent.propose(make_ctx(target, exp=2), workspace, events.append)
    finals = [u for u in of_kind(events, ev.Usage) if not u.streaming]
    assert len(finals) == 2 and all(u.cost_usd is None and u.input_tokens > 0 for u in finals)
    warnings = [n for n in of_kind(events, ev.Notice) if n.level == "warning"]
    assert len(warnings) == 1 and "qwen3-coder:30b" in warnings[0].message
    assert first.cost_usd == 0.0 and second.cost_usd == 0.0


async def test_price_overrides_price_a_new_model(api, target, workspace):
    api.script(reply(LOWER_LR, run_experiment("a"), usage=usage(input=1000, output=1000)))
    agent = make_agent(api, model="claude-new-9", prices={"claude-new-9": [1, 1.25, 2, 0.1, 5]})
    proposal = await agent.propose(make_ctx(target), workspace, lambda e: None)
    assert proposal.cost_usd == 0.006


async def test_prices_from_autoresearch_toml_price_a_new_model(api, target, workspace):
    (target / "autoresearch.toml").write_text('[prices."claude-new-9"]\ninput = 1\ncache_write_5m = 1.25\n'
                                              'cache_write_1h = 2\ncache_read = 0.1\noutput = 5\n')
    from ar_tui.core.config import load_target

    api.script(reply(LOWER_LR, run_experiment("a"), usage=usage(input=2000, cache_read=10_000)))
    ctx = make_ctx(target)
    ctx.target = load_target(target)
    proposal = await make_agent(api, model="claude-new-9").propose(ctx, workspace, lambda e: None)
    assert proposal.cost_usd == 0.003


def test_bad_configuration_is_a_one_line_error(api, monkeypatch, tmp_path):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("ANTHROPIC_PROFILE", raising=False)
    monkeypatch.delenv("ANTHROPIC_CONFIG_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / ".config"))
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        SingleAgent(model="claude-sonnet-4-5", program="p", base_url=api.base_url)
    with pytest.raises(ConfigError, match=r"prices\.m"):
        make_agent(api, prices={"m": [1, 2]})


async def test_the_key_is_sent_as_a_header_and_appears_in_no_event(api, target, workspace):
    api.script(error(529, "overloaded_error", f"echo {KEY}"), reply(text("ok"), LOWER_LR, run_experiment("lower LR")))
    events: list[ev.Event] = []
    await make_agent(api).propose(make_ctx(target), workspace, events.append)
    headers = api.requests[0].headers
    assert KEY in headers.get("x-api-key", "") + headers.get("authorization", "")
    assert KEY.encode() not in b"".join(r.body for r in api.requests)
    assert all(KEY not in e.to_json() for e in events)
    assert any("[redacted]" in e.to_json() for e in events)


async def test_the_key_from_the_environment_is_used(api, target, workspace, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
    api.script(reply(LOWER_LR, run_experiment("lower LR")))
    agent = SingleAgent(model="claude-sonnet-4-5", program="p")
    await agent.propose(make_ctx(target), workspace, lambda e: None)
    headers = api.requests[0].headers
    assert KEY in headers.get("x-api-key", "") + headers.get("authorization", "")
