"""The OpenAI Chat Completions client behind the model seam: the real
`openai` SDK over HTTP to tests/fake_openai_api.py (and, for the wrong-API
lines, to tests/fake_messages_api.py)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from ar_tui.agents.llm.client import Call, Meter
from ar_tui.agents.single import SingleAgent
from ar_tui.agents.team import TeamProposer, parse_team
from ar_tui.core import events as ev
from ar_tui.core.config import TargetConfig
from ar_tui.core.proposer import ProposalContext, ProposerStopped, ResultRow
from ar_tui.core.workspace import Workspace
from tests.conftest import TINY_PREPARE, TINY_TRAIN
from tests.fake_messages_api import FakeMessagesAPI
from tests.fake_openai_api import (
    FakeChatAPI,
    drop,
    edit,
    error,
    outage,
    reply,
    run_experiment,
    text,
    tool_call,
    usage,
)

KEY = "sk-openai-test-4b2e9d7c1a0f"
MODEL = "gpt-4.1-mini"  # $0.40 input, $0.10 cached input, $1.60 output per million tokens
LOWER_LR = edit("str_replace", path="train.py", old_str="LR = 0.5", new_str="LR = 0.4")


@pytest.fixture
def api():
    with FakeChatAPI() as server:
        yield server


@pytest.fixture
def target(tmp_path: Path) -> Path:
    root = tmp_path / "target"
    root.mkdir()
    (root / "train.py").write_text(TINY_TRAIN)
    (root / "prepare.py").write_text(TINY_PREPARE)
    return root


@pytest.fixture
def workspace(target: Path) -> Workspace:
    return Workspace(target, ["train.py"], ["prepare.py"])


def make_agent(base_url: str, **options) -> SingleAgent:
    settings = dict(api="openai-chat", model=MODEL, program="Be a careful researcher.", api_key=KEY,
                    base_url=base_url, retry_base_s=0.001, retry_cap_s=0.01)
    settings.update(options)
    return SingleAgent(**settings)


def make_ctx(target: Path, exp: int = 1) -> ProposalContext:
    return ProposalContext(exp=exp, target=TargetConfig(root=target), best_metric=1.04, baseline_metric=1.04,
                           history=[ResultRow(0, "abc1234", 1.04, "keep", "baseline")])


def of_kind(events: list[ev.Event], cls: type) -> list:
    return [e for e in events if isinstance(e, cls)]


async def test_a_streamed_edit_then_run_experiment_yields_a_priced_proposal(api, target, workspace):
    api.script(
        reply(text("LR 0.5 is high; "), text("trying 0.4."), LOWER_LR,
              usage=usage(prompt=3000, completion=60, cached=0)),
        reply(run_experiment("lower LR to 0.4", rationale="noisy loss"),
              usage=usage(prompt=3200, completion=20, cached=2944)),
    )
    agent = make_agent(api.base_url)
    assert agent.name == "openai" and agent.editor_tool == "custom"
    events: list[ev.Event] = []
    proposal = await agent.propose(make_ctx(target), workspace, events.append)

    assert proposal.description == "lower LR to 0.4" and proposal.rationale == "noisy loss"
    assert "LR = 0.4" in (target / "train.py").read_text()
    assert "".join(e.text for e in of_kind(events, ev.AgentText)) == "LR 0.5 is high; trying 0.4."

    first, second = (r.json for r in api.requests)
    assert first["stream"] is True and first["stream_options"] == {"include_usage": True}
    assert first["max_tokens"] == 8192  # a local server's word; OpenAI's own gets max_completion_tokens
    assert first["messages"][0]["role"] == "system" and "Be a careful researcher." in first["messages"][0]["content"]
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    assert [t["function"]["name"] for t in first["tools"]] == ["str_replace_based_edit_tool", "run_experiment"]
    assert all(t["type"] == "function" and "parameters" in t["function"] for t in first["tools"])
    assert "cache_control" not in json.dumps(first)  # the server caches by itself
    # The assistant's call went back as tool_calls, its result as a tool message.
    assistant = second["messages"][2]
    assert assistant["content"] == "LR 0.5 is high; trying 0.4."
    call = assistant["tool_calls"][0]
    assert json.loads(call["function"]["arguments"])["new_str"] == "LR = 0.4"
    tool = api.requests[1].tool_messages()
    assert [t["tool_call_id"] for t in tool] == [call["id"]] and "edited" in tool[0]["content"].lower()

    # Usage from the stream's last chunk; cached tokens priced as cache reads.
    finals = [u for u in of_kind(events, ev.Usage) if not u.streaming]
    assert [(u.input_tokens, u.cache_read_tokens, u.output_tokens) for u in finals] == [(3000, 0, 60), (256, 2944, 20)]
    expected = (Decimal(3000) * Decimal("0.40") + 60 * Decimal("1.60")
                + 256 * Decimal("0.40") + 2944 * Decimal("0.10") + 20 * Decimal("1.60")) / 1_000_000
    assert Decimal(str(proposal.cost_usd)) == expected
    assert proposal.usage.cache_read_tokens == 2944
    assert proposal.usage.cache_write_5m_tokens is None  # Chat Completions reports no cache writes


async def test_the_servers_own_prefix_cache_is_read_on_the_second_turn(target, workspace):
    with FakeChatAPI(min_cache_tokens=256) as api:
        api.script(reply(LOWER_LR), reply(run_experiment("lower LR")))
        events: list[ev.Event] = []
        await make_agent(api.base_url).propose(make_ctx(target), workspace, events.append)
    finals = [u for u in of_kind(events, ev.Usage) if not u.streaming]
    assert finals[0].cache_read_tokens == 0
    # The second turn starts with the whole first prompt (tools, system, opening): that prefix is
    # read, in the cache's steps of 128 tokens.
    first_prompt = finals[0].input_tokens
    assert first_prompt - 128 < finals[1].cache_read_tokens <= first_prompt
    assert finals[1].cache_read_tokens % 128 == 0
    assert finals[1].input_tokens < finals[1].cache_read_tokens


async def test_a_429_with_retry_after_waits_as_told_then_goes_on(api, target, workspace):
    api.script(error(429, "rate_limit_exceeded", "Rate limit reached for requests", retry_after=0.2,
                     type="requests"),
               reply(LOWER_LR), reply(run_experiment("lower LR")))
    events: list[ev.Event] = []
    proposal = await make_agent(api.base_url).propose(make_ctx(target), workspace, events.append)
    assert proposal.description == "lower LR"
    waits = of_kind(events, ev.ApiWaiting)
    assert len(waits) == 1 and waits[0].retry_in_s >= 0.2
    assert "rate limited (429 rate_limit_exceeded): Rate limit reached" in waits[0].reason
    assert api.requests[1].at - api.requests[0].at >= 0.2


async def test_an_outage_and_a_dropped_stream_are_waited_out(api, target, workspace):
    api.script(outage(0.3), drop(text("half a tho"), LOWER_LR), reply(LOWER_LR), reply(run_experiment("lower LR")))
    events: list[ev.Event] = []
    proposal = await make_agent(api.base_url).propose(make_ctx(target), workspace, events.append)
    assert proposal.description == "lower LR"
    reasons = [w.reason for w in of_kind(events, ev.ApiWaiting)]
    assert any(r.startswith("503 server_error") for r in reasons)
    assert reasons[-1].startswith("connection error") or "ended before" in reasons[-1]
    states = [e.state for e in of_kind(events, ev.StateChanged)]
    assert states[0] == ev.STATE_WAITING_API and states[-1] == ev.STATE_PROPOSING


@pytest.mark.parametrize("status, code, message, fragment", [
    (401, "invalid_api_key", f"Incorrect API key provided: {KEY}",
     "the server rejected the key (401 invalid_api_key): Incorrect API key provided: [redacted]; fix OPENAI_API_KEY"),
    (429, "insufficient_quota", "You exceeded your current quota", "quota or spend limit reached (429 insufficient_quota)"),
    (404, "model_not_found", f"The model `{MODEL}` does not exist", f"has no model {MODEL} (404 model_not_found)"),
    (400, "context_length_exceeded", "too long", "the server refused the request (400 context_length_exceeded): too long"),
])
async def test_errors_that_waiting_cannot_fix_stop_with_one_line(api, target, workspace, status, code, message,
                                                                 fragment):
    api.script(error(status, code, message))
    with pytest.raises(ProposerStopped) as stopped:
        await make_agent(api.base_url).propose(make_ctx(target), workspace, lambda e: None)
    assert fragment in stopped.value.reason and "\n" not in stopped.value.reason
    assert len(api.requests) == 1


async def test_a_server_that_speaks_another_api_gets_one_clear_line(target, workspace):
    # An Anthropic Messages API server named as an OpenAI one: a 404 on /chat/completions.
    with FakeMessagesAPI() as messages_api:
        url = messages_api.base_url + "/v1"
        with pytest.raises(ProposerStopped) as stopped:
            await make_agent(url).propose(make_ctx(target), workspace, lambda e: None)
    reason = stopped.value.reason
    assert f"{url} does not speak the OpenAI Chat Completions API" in reason
    assert "/v1/chat/completions" in reason and "\n" not in reason
    # And the other way round: the Anthropic client at an OpenAI-compatible server.
    with FakeChatAPI() as chat_api:
        agent = SingleAgent(model="claude-sonnet-4-5", program="p", api_key=KEY, base_url=chat_api.base_url)
        with pytest.raises(ProposerStopped) as stopped:
            await agent.propose(make_ctx(target), workspace, lambda e: None)
    assert "does not speak the Anthropic Messages API" in stopped.value.reason


async def test_a_url_without_v1_is_told_where_the_api_usually_is(api, target, workspace):
    root = api.base_url.removesuffix("/v1")
    with pytest.raises(ProposerStopped, match=r"does not speak the OpenAI Chat Completions API \(404.*try .*/v1\)"):
        await make_agent(root).propose(make_ctx(target), workspace, lambda e: None)


async def test_a_server_that_reports_no_usage_leaves_the_cost_unknown_and_says_so(api, target, workspace):
    api.script(reply(LOWER_LR, report_usage=False), reply(run_experiment("lower LR"), report_usage=False))
    events: list[ev.Event] = []
    proposal = await make_agent(api.base_url).propose(make_ctx(target), workspace, events.append)
    assert proposal.cost_usd == 0.0 and proposal.usage.input_tokens is None
    assert all(u.cost_usd is None for u in of_kind(events, ev.Usage))
    notices = [n.message for n in of_kind(events, ev.Notice)]
    assert len(notices) == 1 and "did not report the tokens" in notices[0]


async def test_an_unpriced_local_model_shows_tokens_and_prices_from_overrides(api, target, workspace):
    api.script(reply(LOWER_LR, usage=usage(prompt=1000, completion=100, cached=None)),
               reply(run_experiment("lower LR"), usage=usage(prompt=1000, completion=100, cached=None)))
    events: list[ev.Event] = []
    agent = make_agent(api.base_url, model="qwen2.5-coder:7b",
                       prices={"qwen2.5-coder:7b": [1, 1, 1, "0.5", 2]})
    proposal = await agent.propose(make_ctx(target), workspace, events.append)
    # Unreported cached tokens: all input priced in full (an upper bound).
    assert Decimal(str(proposal.cost_usd)) == Decimal(2) * (1000 * 1 + 100 * 2) / 1_000_000
    assert proposal.usage.cache_read_tokens is None
    assert api.requests[0].json["model"] == "qwen2.5-coder:7b"


async def test_broken_tool_json_gets_an_error_result_and_a_second_chance(api, target, workspace):
    api.script(reply(tool_call("str_replace_based_edit_tool", raw_json='{"command": "str_replace", "pa')),
               reply(LOWER_LR), reply(run_experiment("lower LR")))
    proposal = await make_agent(api.base_url).propose(make_ctx(target), workspace, lambda e: None)
    assert proposal.description == "lower LR"
    result = api.requests[1].tool_messages()[0]["content"]
    assert result.startswith("error: the tool input is not valid JSON")


async def test_the_key_goes_only_in_the_authorization_header(api, target, workspace):
    api.script(reply(LOWER_LR), reply(run_experiment("lower LR")))
    events: list[ev.Event] = []
    await make_agent(api.base_url).propose(make_ctx(target), workspace, events.append)
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in api.requests)
    assert all(KEY not in json.dumps(r.json) for r in api.requests)
    assert all(KEY not in repr(e) for e in events)


def test_no_key_is_one_line(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="no OpenAI API key: set OPENAI_API_KEY"):
        SingleAgent(api="openai-chat", model=MODEL, program="p", base_url="http://127.0.0.1:9/v1")


async def test_a_team_worker_on_an_openai_server_beside_an_anthropic_reviewer(api, target, workspace, tmp_path,
                                                                               monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    api.script(reply(LOWER_LR, usage=usage(prompt=2000, completion=50)),
               reply(run_experiment("lower LR"), usage=usage(prompt=2100, completion=10, cached=1900)))
    anthropic_key = "sk-ant-team-reviewer-key"
    with FakeMessagesAPI() as reviewer_api:
        from tests.fake_messages_api import reply as a_reply, tool_use

        reviewer_api.script(a_reply(tool_use("review", {"verdict": "approve", "reason": "new idea"})))
        spec = parse_team(f"worker=openai-chat:{MODEL}@{api.base_url},reviewer=claude-haiku-4-5")
        team = TeamProposer(spec, program="p", run_dir=tmp_path / "run", api_key=anthropic_key,
                            base_url=reviewer_api.base_url, retry_base_s=0.001, retry_cap_s=0.01)
        events: list[ev.Event] = []
        proposal = await team.propose(make_ctx(target), workspace, events.append)
        reviewed = reviewer_api.requests
    assert proposal.proposer == f"worker={MODEL}"
    assert [r.json["model"] for r in api.requests] == [MODEL, MODEL]
    assert len(reviewed) == 1 and reviewed[0].json["tool_choice"] == {"type": "tool", "name": "review"}
    # Each API got its own key: the Anthropic key never reached the OpenAI server.
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in api.requests)
    assert all(anthropic_key not in json.dumps(r.headers) for r in api.requests)
    assert [(u.role, u.model) for u in of_kind(events, ev.Usage) if not u.streaming] == [
        ("worker", MODEL), ("worker", MODEL), ("reviewer", "claude-haiku-4-5")]


async def test_a_builtin_tool_of_another_api_is_refused_with_one_line(api):
    from ar_tui.agents.llm import make_model_client, tools
    from ar_tui.agents.llm.client import Turn

    client = make_model_client("openai-chat", model=MODEL, api_key=KEY, base_url=api.base_url)
    call = Call(exp=1, role="planner", emit=lambda e: None, meter=Meter())
    turn = Turn(system=[], tools=tools.planner_tools("custom", web_search=True),
                messages=[{"role": "user", "content": "plan"}])
    with pytest.raises(ProposerStopped, match="web_search tool .* is built into the Anthropic API"):
        await client.send(call, turn)
    assert api.requests == []


async def test_the_hybrids_structural_side_can_be_an_openai_model(api, target, workspace, monkeypatch):
    from ar_tui.agents.hybrid import HybridProposer
    from ar_tui.agents.registry import ProposerSettings, make_proposer

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    hybrid = make_proposer("hybrid", ProposerSettings(model=f"openai-chat:{MODEL}", program="p",
                                                      base_url=api.base_url))
    assert isinstance(hybrid, HybridProposer)
    structural = hybrid.structural
    assert (structural.name, structural.client.api, structural.model) == ("openai", "openai-chat", MODEL)
    api.script(reply(LOWER_LR), reply(run_experiment("lower LR")))
    proposal = await structural.propose(make_ctx(target), workspace, lambda e: None)
    assert proposal.description == "lower LR" and len(api.requests) == 2


@pytest.mark.parametrize("api_name", ["openai-chat", "anthropic"])
async def test_both_clients_sort_failures_into_the_same_three_kinds(api_name):
    """A 429 is rate-limited (with the server's wait), a 503 an outage to retry,
    a 401 fatal: the same verdicts from either API's server."""
    from ar_tui.agents.llm import make_model_client
    from ar_tui.agents.llm.client import FATAL, RATE_LIMITED, RETRY, AttemptFailed, Turn
    from tests import fake_messages_api as messages_fake

    if api_name == "openai-chat":
        server, model = FakeChatAPI(), MODEL
        script = [error(429, "rate_limit_exceeded", retry_after=7), error(503, "server_error"),
                  error(401, "invalid_api_key")]
    else:
        server, model = FakeMessagesAPI(), "claude-sonnet-4-5"
        script = [messages_fake.error(429, "rate_limit_error", retry_after=7),
                  messages_fake.error(503, "api_error"), messages_fake.error(401, "authentication_error")]
    with server:
        server.script(*script)
        client = make_model_client(api_name, model=model, api_key=KEY, base_url=server.base_url)
        call = Call(exp=1, role="agent", emit=lambda e: None, meter=Meter())
        turn = Turn(system=[{"type": "text", "text": "s"}], tools=[], messages=[{"role": "user", "content": "x"}])
        verdicts = []
        for _ in script:
            with pytest.raises(AttemptFailed) as failed:
                await client.attempt(call, turn)
            verdicts.append(client.classify(failed.value.cause))
    assert [(v.kind, v.retry) for v in verdicts] == [(RATE_LIMITED, True), (RETRY, True), (FATAL, False)]
    assert verdicts[0].retry_after == 7.0
