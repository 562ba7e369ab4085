"""`--agent codex`: the real Codex CLI against the local Responses API server.

The CLI is the one npm installs (`.ci/run`); a missing CLI fails these tests.
Codex's shell commands run in its own `workspace-write` sandbox inside
ar-tui's confinement of the whole CLI.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ar_tui.agents.cli import CodexAgent
from ar_tui.agents.cli.codex import trains
from ar_tui.core import events as ev
from ar_tui.core.errors import UserError
from ar_tui.core.proposer import ProposalFailed, ProposerStopped
from tests.agents.cli_sessions import (
    CODEX_KEY, OUTSIDE_MARK, cli_env, codex_researcher, files_holding, make_proposal_target, propose, require_cli,
)
from tests.conftest import TINY_PREPARE
from tests.fake_responses_api import FakeResponsesAPI, fail, message, respond

MODEL = "gpt-test-codex"
PRICES = {MODEL: [1.25, 0, 0, 0.125, 10]}


@pytest.fixture(autouse=True)
def installed() -> None:
    require_cli("codex", "@openai/codex")


@pytest.fixture
def api():
    with FakeResponsesAPI() as server:
        yield server


@pytest.fixture
def target(tmp_path: Path) -> Path:
    return make_proposal_target(tmp_path)


def agent_for(api: FakeResponsesAPI, **options) -> CodexAgent:
    return CodexAgent(model=MODEL, program="Be a careful researcher.", base_url=api.base_url,
                      env=cli_env(OPENAI_API_KEY=CODEX_KEY), timeout_s=options.pop("timeout_s", 120), **options)


def test_a_session_edits_honestly_and_every_hostile_command_is_refused_or_put_back(api, target: Path, tmp_path: Path):
    api.responder = codex_researcher(hostile=True)
    run_dir = tmp_path / "run"
    proposal, events = propose(agent_for(api), target, run_dir, PRICES)

    assert "LR = 0.4" in (target / "train.py").read_text()
    assert proposal.description == "set LR = 0.4"
    assert not (run_dir / "worktrees" / "outside.txt").exists()
    assert (target / "prepare.py").read_text() == TINY_PREPARE
    assert not (target / "leaked.txt").exists()
    lines = [e for e in events if isinstance(e, ev.AgentToolCall)]
    reverted = {e.summary for e in lines if "reverted by ar-tui" in e.result}
    assert reverted == {"codex changed prepare.py", "codex changed leaked.txt"}
    # The write outside failed in Codex's own sandbox, and the model was told so. (Codex 0.171's --json
    # stream leaves out a command its sandbox denied, so the agent pane cannot show it.)
    outputs = " ".join(str(o.get("output")) for r in api.requests for o in r.function_outputs())
    assert "outside.txt: Read-only file system" in outputs
    assert not any("outside.txt" in e.summary for e in lines if not e.is_error)
    # The key stayed in Codex: the commands it ran did not see it.
    assert "PATH=" in outputs and CODEX_KEY not in outputs
    assert api.requests[0].headers.get("authorization") == f"Bearer {CODEX_KEY}"
    assert files_holding(run_dir, CODEX_KEY) == []
    assert files_holding(tmp_path, OUTSIDE_MARK) == []
    # Tokens from turn.completed, priced from the target's [prices].
    usage = [e for e in events if isinstance(e, ev.Usage)]
    assert [e.model for e in usage] == [MODEL]
    # Five requests, one a command: 3000 input tokens, then 3000 + 500 per tool output so far, of which
    # 2000 cached; Codex sums them in turn.completed.
    assert usage[0].cache_read_tokens == 4 * 2000 and usage[0].input_tokens == 20000 - 8000
    assert usage[0].cost_usd == pytest.approx((12000 * 1.25 + 8000 * 0.125 + 600 * 10) / 1e6)
    assert proposal.cost_usd == pytest.approx(usage[0].cost_usd)


def test_a_session_that_tries_to_train_is_stopped_and_its_edit_still_judged(api, target: Path, tmp_path: Path):
    api.responder = codex_researcher(hostile=False, train=True)
    proposal, events = propose(agent_for(api), target, tmp_path / "run", PRICES)
    assert "LR = 0.4" in (target / "train.py").read_text()
    stopped = [e for e in events if isinstance(e, ev.AgentToolCall) and "tried to train" in e.result]
    assert len(stopped) == 1 and "python train.py" in stopped[0].summary
    assert "tried to train" in proposal.rationale
    # Nothing of the session's training ran to the end (the run prints its metric).
    assert "val_bpb" not in " ".join(str(o) for r in api.requests for o in r.function_outputs())


def test_a_model_without_a_price_shows_tokens_and_warns_once(api, target: Path, tmp_path: Path):
    api.responder = codex_researcher(hostile=False)
    proposal, events = propose(agent_for(api), target, tmp_path / "run")
    usage = [e for e in events if isinstance(e, ev.Usage)]
    assert usage and usage[0].cost_usd is None and proposal.cost_usd == 0.0
    assert [e.message for e in events if isinstance(e, ev.Notice)][0].startswith(f"no price known for model {MODEL}")


def test_an_edit_of_nothing_fails_and_a_refused_key_stops_the_run(api, target: Path, tmp_path: Path):
    api.responder = lambda request: respond(message("DESCRIPTION: nothing"))
    with pytest.raises(ProposalFailed, match="codex edited nothing"):
        propose(agent_for(api), target, tmp_path / "run")
    api.responder = lambda request: fail(401, "Incorrect API key provided")
    with pytest.raises(ProposerStopped, match="codex: the endpoint refused the key") as stopped:
        propose(agent_for(api), target, tmp_path / "run")
    assert CODEX_KEY not in stopped.value.reason


def test_a_hung_session_times_out(api, target: Path, tmp_path: Path):
    def hang(request):
        time.sleep(30)
        return respond(message("late"))

    api.responder = hang
    started = time.monotonic()
    with pytest.raises(ProposalFailed, match="did not finish within 6s"):
        propose(agent_for(api, timeout_s=6), target, tmp_path / "run")
    assert time.monotonic() - started < 25


def test_bad_setups_get_one_line_each(tmp_path: Path):
    with pytest.raises(UserError, match=r"codex is not installed: npm install -g @openai/codex"):
        CodexAgent(model=MODEL, program="p", env={"PATH": str(tmp_path), "OPENAI_API_KEY": CODEX_KEY})
    with pytest.raises(UserError, match="codex has no key"):
        CodexAgent(model=MODEL, program="p", env=cli_env())
    with pytest.raises(UserError, match="wire API 'chat' is not supported"):
        CodexAgent(model=MODEL, program="p", env=cli_env(OPENAI_API_KEY="k"), wire_api="chat")


@pytest.mark.parametrize("command, expected", [
    ("/bin/bash -lc 'python train.py'", True),
    ("/bin/bash -lc 'cd . && uv run train.py > log'", True),
    ("/bin/bash -lc 'python -m train'", True),
    ("/bin/bash -lc 'cat train.py'", False),
    ("/bin/bash -lc \"sed -i 's/LR = 0.5/LR = 0.4/' train.py\"", False),
    ("/bin/bash -lc 'python3 -c \"print(1)\"'", False),
])
def test_what_counts_as_training(command: str, expected: bool):
    assert trains(command, ["train.py"], "python train.py") is expected


def test_under_the_landlock_fallback_codex_is_refused_with_one_line(api, target: Path, tmp_path: Path):
    from ar_tui.core.sandbox.backends import LandlockBackend

    agent = agent_for(api)
    agent.backends = [LandlockBackend()]
    with pytest.raises(ProposerStopped, match="codex needs bubblewrap"):
        propose(agent, target, tmp_path / "run")
    assert api.requests == []


def test_a_server_that_speaks_another_api_stops_the_run_with_one_line(api, target: Path, tmp_path: Path):
    api.responder = lambda request: fail(404, "Not Found: this server speaks /v1/chat/completions")
    with pytest.raises(ProposerStopped, match=r"does not speak the Responses API \(it answered 404 to /responses\)"):
        propose(agent_for(api), target, tmp_path / "run")
