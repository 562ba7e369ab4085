"""A team whose worker is an agent CLI: `--team planner=M,worker=claude-code:M,reviewer=M`.

The planner and the reviewer are ar-tui's own loops; the worker is a real
Claude Code session given the notes and its hypothesis. All on the local
Messages API server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ar_tui.agents.llm.client import AgentConfigError
from ar_tui.agents.team import RoleModel, TeamProposer, parse_team
from ar_tui.core import events as ev
from ar_tui.core.config import TargetConfig
from ar_tui.core.proposer import ProposalContext, ResultRow
from ar_tui.core.workspace import Workspace
from tests.agents.cli_sessions import CLAUDE_KEY, claude_researcher, require_cli
from tests.agents.test_team import PLANNER, REVIEWER, approve, planner
from tests.conftest import TINY_PREPARE, TINY_TRAIN
from tests.fake_messages_api import FakeMessagesAPI

CODE_MODEL = "claude-sonnet-4-5"


def test_a_worker_role_names_its_runtime():
    spec = parse_team(f"planner={PLANNER},worker=claude-code:{CODE_MODEL},worker=codex:gpt-5@http://127.0.0.1:9/v1")
    assert spec.workers == [RoleModel("worker", CODE_MODEL, None, runtime="claude-code"),
                            RoleModel("worker", "gpt-5", "http://127.0.0.1:9/v1", runtime="codex")]
    assert str(spec.workers[0]) == f"worker=claude-code:{CODE_MODEL}"
    with pytest.raises(AgentConfigError, match="only a worker can be an agent CLI"):
        parse_team(f"planner=claude-code:{CODE_MODEL},worker={CODE_MODEL}")


def test_a_team_mixes_model_apis_and_agent_cli_workers():
    url = "http://127.0.0.1:9/v1"
    spec = parse_team(f"planner=openai-chat:gpt-4.1@{url},worker=claude-code:{CODE_MODEL},"
                      f"worker=openai:gpt-4.1-mini,reviewer=claude-haiku-4-5")
    assert spec.planner == RoleModel("planner", "gpt-4.1", url, api="openai-chat")
    assert spec.workers == [RoleModel("worker", CODE_MODEL, runtime="claude-code"),
                            RoleModel("worker", "gpt-4.1-mini", api="openai-chat")]
    assert str(spec) == (f"planner=openai-chat:gpt-4.1@{url},worker=claude-code:{CODE_MODEL},"
                         f"worker=openai-chat:gpt-4.1-mini,reviewer=claude-haiku-4-5")
    # A colon in a model's own name (an Ollama tag) names neither an API nor an agent CLI.
    assert parse_team("worker=qwen2.5-coder:7b").workers == [RoleModel("worker", "qwen2.5-coder:7b")]


def test_a_claude_code_worker_implements_the_planners_hypothesis(tmp_path: Path, monkeypatch):
    require_cli("claude", "@anthropic-ai/claude-code")
    monkeypatch.setenv("ANTHROPIC_API_KEY", CLAUDE_KEY)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    target = tmp_path / "run" / "worktrees" / "propose"
    target.mkdir(parents=True)
    (target / "train.py").write_text(TINY_TRAIN)
    (target / "prepare.py").write_text(TINY_PREPARE)
    with FakeMessagesAPI() as api:
        api.responders.update({PLANNER: planner, REVIEWER: approve})
        api.responder = claude_researcher(hostile=False)
        team = TeamProposer(parse_team(f"planner={PLANNER},worker=claude-code:{CODE_MODEL},reviewer={REVIEWER}"),
                            program="Be a careful researcher.", run_dir=tmp_path / "run", api_key=CLAUDE_KEY,
                            base_url=api.base_url, retry_base_s=0.001, retry_cap_s=0.01)
        ctx = ProposalContext(exp=1, target=TargetConfig(root=target), best_metric=1.04, baseline_metric=1.04,
                              history=[ResultRow(0, "abc1234", 1.04, "keep", "baseline")], run_dir=tmp_path / "run")
        events: list[ev.Event] = []

        async def go():
            try:
                return await team.propose(ctx, Workspace(target, ["train.py"], ["prepare.py"]), events.append)
            finally:
                await team.aclose()

        proposal = asyncio.run(go())
        session = [r for r in api.requests_for(CODE_MODEL)
                   if any(t.get("name") == "Edit" for t in r.json.get("tools", []))]
    assert "LR = 0.4" in (target / "train.py").read_text()
    assert proposal.proposer == f"worker=claude-code:{CODE_MODEL}"
    # The session was shown the planner's notes and its hypothesis.
    assert session and "## Your hypothesis" in session[0].text() and "lower LR to 0.4" in session[0].text()
    reviews = [e for e in events if isinstance(e, ev.Review)]
    assert [r.verdict for r in reviews] == ["approve"]
    roles = {e.role for e in events if isinstance(e, ev.Usage)}
    assert {"planner", "worker", "reviewer"} <= roles
    assert proposal.cost_usd == pytest.approx(sum(e.cost_usd for e in events if isinstance(e, ev.Usage)
                                                  and not e.streaming and e.role in ("worker", "reviewer")))
