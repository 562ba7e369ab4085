"""The shared Messages-API client and tool loop: server-side tools in the
stream, roles on events, money per request. The real SDK over HTTP against
tests/fake_messages_api.py."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from ar_tui.agents.llm import tools
from ar_tui.agents.llm.loop import ToolLoop
from ar_tui.agents.llm.anthropic import AnthropicClient
from ar_tui.agents.llm.client import Call, Meter
from ar_tui.core import events as ev
from ar_tui.core.workspace import Workspace
from tests.fake_messages_api import FakeMessagesAPI, edit, reply, text, usage, web_search

KEY = "sk-ant-test-client-0c1d2e3f"


@pytest.fixture
def api():
    with FakeMessagesAPI() as server:
        yield server


async def test_web_search_blocks_go_back_to_the_api_and_each_search_is_billed(api, tmp_path: Path):
    (tmp_path / "notes.md").write_text("# Notes\n")
    api.script(
        reply(text("Looking for prior work."),
              *web_search("muon optimizer learning rate", [("https://arxiv.org/abs/2502.16982", "Muon is scalable")]),
              text("Muon helps."), edit("str_replace", path="notes.md", old_str="# Notes", new_str="# Notes\n- Muon"),
              usage=usage(input=1000, output=100)),
        reply(text("Done."), usage=usage(input=200, output=10)),
    )
    client = AnthropicClient(model="claude-sonnet-4-6", api_key=KEY, base_url=api.base_url)
    events: list[ev.Event] = []
    call = Call(exp=3, role="planner", emit=events.append, meter=Meter())
    loop = ToolLoop(client, call, system=[{"type": "text", "text": "plan"}],
                    tools=tools.planner_tools("builtin", web_search=True),
                    messages=[{"role": "user", "content": [{"type": "text", "text": "go"}]}],
                    workspace=Workspace(tmp_path, ["notes.md"], []))
    assert await loop.run() is None

    sent = api.requests[0].json["tools"]
    assert [t["name"] for t in sent] == ["str_replace_based_edit_tool", "web_search"]
    assert sent[1]["type"] == "web_search_20250305"
    # The assistant turn went back with the server tool's blocks as they came.
    assistant = api.requests[1].messages()[1]["content"]
    kinds = [b["type"] for b in assistant]
    assert kinds == ["text", "server_tool_use", "web_search_tool_result", "text", "tool_use"]
    assert assistant[1]["input"] == {"query": "muon optimizer learning rate"}
    assert assistant[2]["tool_use_id"] == assistant[1]["id"]
    assert assistant[2]["content"][0]["url"] == "https://arxiv.org/abs/2502.16982"
    # Only the client tool was answered; the edit reached the notes.
    assert [r["tool_use_id"] for r in api.requests[1].tool_results()] == [assistant[4]["id"]]
    assert "- Muon" in (tmp_path / "notes.md").read_text()
    finals = [e for e in events if isinstance(e, ev.Usage) and not e.streaming]
    assert [(u.role, u.web_search_requests) for u in finals] == [("planner", 1), ("planner", 0)]
    # sonnet-4-6: $3 in, $15 out per million; one search $0.01.
    assert call.cost == Decimal("0.0045") + Decimal("0.01") + Decimal("0.00075")
    assert finals[0].cost_usd == 0.0145
    assert all(e.role == "planner" for e in events if isinstance(e, (ev.AgentText, ev.AgentToolCall)))


async def test_requests_by_model_reach_their_own_script(api):
    api.script(reply(text("from the small model")), model="claude-haiku-4-5")
    api.script(reply(text("from the large model")), model="claude-sonnet-4-6")
    said = {}
    for model in ("claude-sonnet-4-6", "claude-haiku-4-5"):
        client = AnthropicClient(model=model, api_key=KEY, base_url=api.base_url)
        events: list[ev.Event] = []
        loop = ToolLoop(client, Call(exp=1, role="worker", emit=events.append, meter=Meter()), system=[],
                        tools=tools.reviewer_tools(), messages=[{"role": "user", "content": "hi"}])
        await loop.run()
        said[model] = "".join(e.text for e in events if isinstance(e, ev.AgentText))
    assert said == {"claude-sonnet-4-6": "from the large model", "claude-haiku-4-5": "from the small model"}
    assert [len(api.requests_for(m)) for m in said] == [1, 1]


async def test_the_meter_refuses_a_request_once_the_shared_budget_is_spent(api):
    from ar_tui.core.proposer import ProposerStopped

    meter = Meter(spent_usd=0.5, budget_usd=0.51)
    client = AnthropicClient(model="claude-sonnet-4-6", api_key=KEY, base_url=api.base_url)
    api.script(reply(text("a"), usage=usage(input=10_000)), reply(text("b")))
    first = ToolLoop(client, Call(exp=1, role="planner", emit=lambda e: None, meter=meter), system=[],
                     tools=tools.reviewer_tools(), messages=[{"role": "user", "content": "hi"}])
    await first.run()
    second = ToolLoop(client, Call(exp=1, role="worker", emit=lambda e: None, meter=meter), system=[],
                      tools=tools.reviewer_tools(), messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(ProposerStopped, match="budget reached"):
        await second.run()
    assert len(api.requests) == 1
