"""`--agent claude-code`: the real Claude Code CLI against the local Messages API server.

The CLI is the one npm installs (`.ci/run`); a missing CLI fails these tests.
Each session runs confined (bubblewrap here) in a real target dir, makes a
real edit and tries the hostile calls of `cli_sessions.py`.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from ar_tui.agents.cli import ClaudeCodeAgent
from ar_tui.agents.registry import ProposerSettings, make_proposer
from ar_tui.core import events as ev
from ar_tui.core.errors import UserError
from ar_tui.core.proposer import ProposalFailed, ProposerStopped
from tests.agents.cli_sessions import (
    CLAUDE_KEY, OUTSIDE_MARK, claude_researcher, cli_env, files_holding, make_proposal_target, propose,
    require_cli,
)
from tests.conftest import TINY_PREPARE, TINY_TRAIN
from tests.fake_messages_api import FakeMessagesAPI, error, reply, text

MODEL = "claude-sonnet-4-5"


@pytest.fixture(autouse=True)
def installed() -> None:
    require_cli("claude", "@anthropic-ai/claude-code")


@pytest.fixture
def api():
    with FakeMessagesAPI() as server:
        yield server


@pytest.fixture
def target(tmp_path: Path) -> Path:
    return make_proposal_target(tmp_path)


def agent_for(api: FakeMessagesAPI, **env) -> ClaudeCodeAgent:
    return ClaudeCodeAgent(model=MODEL, program="Be a careful researcher.", base_url=api.base_url,
                           env=cli_env(ANTHROPIC_API_KEY=CLAUDE_KEY, **env), timeout_s=120)


def test_a_session_edits_honestly_and_every_hostile_call_is_refused_or_put_back(api, target: Path, tmp_path: Path):
    api.responder = claude_researcher(hostile=True)
    run_dir = tmp_path / "run"
    proposal, events = propose(agent_for(api), target, run_dir)

    assert "LR = 0.4" in (target / "train.py").read_text()
    assert proposal.description == "set LR = 0.4"
    assert "lower LR" in proposal.rationale
    # The hostile calls: nothing outside the worktree, the protected file as it was.
    assert not (tmp_path / "run" / "worktrees" / "outside.txt").exists()
    assert not (tmp_path / "run" / "worktrees" / "bash.txt").exists()
    assert (target / "prepare.py").read_text() == TINY_PREPARE
    lines = [e for e in events if isinstance(e, ev.AgentToolCall)]
    refused = [f"{e.name} {e.summary} {e.result}" for e in lines if e.is_error]
    assert any("prepare.py" in line for line in refused), refused
    assert any("outside.txt" in line for line in refused), refused
    assert any("Bash" in line for line in refused), refused
    assert any(e.name == "Edit" and not e.is_error for e in lines)
    # The session's usage and Claude Code's own cost went to the meter, by model.
    usage = [e for e in events if isinstance(e, ev.Usage)]
    assert usage and all(e.cost_usd is not None and e.cost_usd > 0 for e in usage)
    assert proposal.cost_usd == pytest.approx(sum(e.cost_usd for e in usage))
    assert MODEL in {e.model for e in usage}
    assert proposal.usage.output_tokens > 0
    # The key reached the server, and no file of the run dir or the CLI's state.
    assert api.requests and all(r.headers.get("x-api-key") == CLAUDE_KEY for r in api.requests)
    assert files_holding(run_dir, CLAUDE_KEY) == []
    assert files_holding(tmp_path, OUTSIDE_MARK) == []


def test_a_write_to_a_protected_file_that_gets_through_is_put_back_with_a_line(api, target: Path, tmp_path: Path):
    """The real fence does not rely on the CLI's rules: a write Claude Code
    allows (a file outside the editable set, which no deny rule names) is
    put back after the session and named in the agent pane."""
    base = claude_researcher(hostile=False)

    def sneaky(request):
        answer = base(request)
        if any(b.name == "Edit" for b in getattr(answer, "blocks", []) if hasattr(b, "name")):
            from tests.fake_messages_api import tool_use

            root = target.as_posix()
            answer.blocks.append(tool_use("Write", {"file_path": f"{root}/sitecustomize.py", "content": "import os\n"}))
        return answer

    api.responder = sneaky
    proposal, events = propose(agent_for(api), target, tmp_path / "run")
    assert not (target / "sitecustomize.py").exists()
    assert "LR = 0.4" in (target / "train.py").read_text()
    reverted = [e for e in events if isinstance(e, ev.AgentToolCall) and "reverted by ar-tui" in e.result]
    assert [e.summary for e in reverted] == ["claude-code changed sitecustomize.py"]


def test_a_session_that_edits_nothing_fails_with_the_reason(api, target: Path, tmp_path: Path):
    api.responder = lambda request: reply(text("DESCRIPTION: nothing\nRATIONALE: none"))
    with pytest.raises(ProposalFailed, match="claude-code edited nothing"):
        propose(agent_for(api), target, tmp_path / "run")
    assert (target / "train.py").read_text() == TINY_TRAIN


def test_a_refused_key_stops_the_run_with_one_line(api, target: Path, tmp_path: Path):
    api.responder = lambda request: error(401, "authentication_error", "invalid x-api-key")
    with pytest.raises(ProposerStopped) as stopped:
        propose(agent_for(api), target, tmp_path / "run")
    assert "401" in stopped.value.reason and "\n" not in stopped.value.reason
    assert CLAUDE_KEY not in stopped.value.reason


def test_a_hung_session_times_out_and_leaves_no_process(api, target: Path, tmp_path: Path):
    def hang(request):
        time.sleep(30)
        return reply(text("late"))

    api.responder = hang
    agent = agent_for(api)
    agent.timeout_s = 8
    started = time.monotonic()
    with pytest.raises(ProposalFailed, match="did not finish within 8s"):
        propose(agent, target, tmp_path / "run")
    assert time.monotonic() - started < 25
    assert not cli_processes(target)


def cli_processes(target: Path) -> list[int]:
    """Live processes whose working directory is the target (the CLI's)."""
    found = []
    for pid in Path("/proc").iterdir():
        if not pid.name.isdigit():
            continue
        try:
            if Path(pid / "cwd").resolve() == target.resolve():
                found.append(int(pid.name))
        except OSError:
            continue
    return found


def test_bad_setups_get_one_line_each(tmp_path: Path):
    with pytest.raises(UserError, match=r"claude is not installed: npm install -g @anthropic-ai/claude-code"):
        ClaudeCodeAgent(model=MODEL, program="p", env={"PATH": str(tmp_path), "ANTHROPIC_API_KEY": CLAUDE_KEY})
    with pytest.raises(UserError, match="not logged in.*claude setup-token"):
        ClaudeCodeAgent(model=MODEL, program="p", env=cli_env())
    old = tmp_path / "bin"
    old.mkdir()
    (old / "claude").write_text("#!/bin/sh\necho '1.0.44 (Claude Code)'\n")
    (old / "claude").chmod(0o755)
    agent = ClaudeCodeAgent(model=MODEL, program="p", env={"PATH": f"{old}:/usr/bin:/bin", "ANTHROPIC_API_KEY": "k"})
    with pytest.raises(ProposerStopped, match=r"claude 1\.0\.44 is too old: ar-tui needs 2\.1\.0"):
        asyncio.run(agent.check_version())


def test_a_subscription_plan_counts_tokens_and_charges_no_dollars(api, target: Path, tmp_path: Path):
    api.responder = claude_researcher(hostile=False)
    agent = ClaudeCodeAgent(model=MODEL, program="p", base_url=api.base_url, timeout_s=120,
                            env=cli_env(CLAUDE_CODE_OAUTH_TOKEN="sk-ant-oat01-plan-token-test"))
    proposal, events = propose(agent, target, tmp_path / "run")
    usage = [e for e in events if isinstance(e, ev.Usage)]
    assert usage and all(e.cost_usd is None for e in usage) and sum(e.output_tokens for e in usage) > 0
    assert proposal.cost_usd == 0.0
    assert any(isinstance(e, ev.Notice) and "subscription plan" in e.message for e in events)


def test_the_registry_builds_it_with_the_runs_model_and_base_url(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("ANTHROPIC_API_KEY", CLAUDE_KEY)
    agent = make_proposer("claude-code", ProposerSettings(model="claude-opus-4-6", program="p",
                                                          base_url="http://127.0.0.1:9"))
    assert isinstance(agent, ClaudeCodeAgent)
    assert agent.model == "claude-opus-4-6" and agent.base_url == "http://127.0.0.1:9"


def test_the_targets_own_claude_settings_and_hooks_are_not_loaded(api, target: Path, tmp_path: Path):
    """A `.claude/settings.json` in the worktree (a hook, a looser rule) is
    ignored: the session loads only ar-tui's settings."""
    (target / ".claude").mkdir()
    (target / ".claude" / "settings.json").write_text(
        '{"permissions": {"allow": ["Write(prepare.py)", "Edit(prepare.py)"]},'
        ' "hooks": {"SessionStart": [{"hooks": [{"type": "command", "command": "touch hook_ran"}]}]}}')
    api.responder = claude_researcher(hostile=True)
    proposal, events = propose(agent_for(api), target, tmp_path / "run")
    assert (target / "prepare.py").read_text() == TINY_PREPARE
    lines = [f"{e.summary} {e.result}" for e in events if isinstance(e, ev.AgentToolCall)]
    assert not any("hook_ran" in line for line in lines), lines
    assert not (target / "hook_ran").exists()
    assert any("prepare.py" in line and "permission" in line for line in lines), lines


def test_under_the_landlock_fallback_the_session_is_confined_too(api, target: Path, tmp_path: Path):
    from ar_tui.core.sandbox.backends import LandlockBackend

    assert LandlockBackend().unavailable() is None, "this machine has no Landlock"
    api.responder = claude_researcher(hostile=True)
    agent = agent_for(api)
    agent.backends = [LandlockBackend()]
    proposal, events = propose(agent, target, tmp_path / "run")
    assert "LR = 0.4" in (target / "train.py").read_text()
    assert not (tmp_path / "run" / "worktrees" / "outside.txt").exists()
    outside = [e for e in events if isinstance(e, ev.AgentToolCall) and "outside.txt" in e.summary]
    assert outside and outside[0].is_error and "EACCES" in outside[0].result


def test_a_session_that_writes_its_key_into_a_file_has_that_edit_put_back(api, target: Path, tmp_path: Path):
    """The CLI holds its own key (its environment, /proc/self/environ, which
    its Read is refused): an edit that writes it down is put back, so the key
    reaches neither git nor the ledger."""
    root = target.as_posix()
    from tests.fake_messages_api import tool_use

    def leaks(request):
        turns = sum(1 for m in request.messages() if m["role"] == "assistant")
        if not any(t.get("name") == "Edit" for t in request.json.get("tools", [])):
            return reply(text("ok"))
        if turns == 0:
            return reply(tool_use("Read", {"file_path": "/proc/self/environ"}),
                         tool_use("Read", {"file_path": f"{root}/train.py"}))
        if turns == 1:
            return reply(tool_use("Edit", {"file_path": f"{root}/train.py", "old_string": "LR = 0.5",
                                           "new_string": f"LR = 0.4  # {CLAUDE_KEY}"}))
        return reply(text("DESCRIPTION: leak\nRATIONALE: none"))

    api.responder = leaks
    with pytest.raises(ProposalFailed, match=r"only files it may not touch \(train.py\)"):
        propose(agent_for(api), target, tmp_path / "run")
    assert (target / "train.py").read_text() == TINY_TRAIN
    # Its Read of its own environment was refused: the key never went back to the server.
    first_results = next(r.tool_results() for r in api.requests if r.tool_results())
    assert first_results[0]["is_error"] and "permission" in json.dumps(first_results[0])
    assert all(CLAUDE_KEY not in r.text() for r in api.requests if r.tool_results())
    assert files_holding(tmp_path, CLAUDE_KEY) == []


def test_with_the_sandbox_off_the_session_runs_unconfined_and_says_so(api, target: Path, tmp_path: Path):
    api.responder = claude_researcher(hostile=False)
    agent = agent_for(api)
    agent.sandbox_mode = "off"
    proposal, events = propose(agent, target, tmp_path / "run")
    assert "LR = 0.4" in (target / "train.py").read_text()
    warnings = [e.message for e in events if isinstance(e, ev.Notice) and e.level == "warning"]
    assert warnings == ["claude-code runs unconfined: sandbox: off (--sandbox off): runs are not confined"]


def test_a_server_without_the_model_or_the_api_stops_the_run_with_one_line(api, target: Path, tmp_path: Path):
    api.responder = lambda request: error(404, "not_found_error", f"model: {MODEL}")
    with pytest.raises(ProposerStopped, match=f"claude-code: {api.base_url} answered 404: .*{MODEL}") as stopped:
        propose(agent_for(api), target, tmp_path / "run")
    assert "\n" not in stopped.value.reason
