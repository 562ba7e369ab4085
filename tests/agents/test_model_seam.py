"""The model seam: the tool loop, the single agent and the team run on any
`ModelClient`. A toy client, written here and registered from this file
alone, drives them; it has no Anthropic (or OpenAI) type in it."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ar_tui.agents.llm import MODEL_CLIENTS, model_spec, tools
from ar_tui.agents.llm.client import (
    END_TURN,
    FATAL,
    TOOL_USE,
    AgentConfigError,
    Call,
    Meter,
    Reply,
    ToolCall,
    Turn,
    Verdict,
)
from ar_tui.agents.llm.loop import ToolLoop, submission_handler
from ar_tui.agents.single import SingleAgent
from ar_tui.agents.team import TeamProposer, parse_team
from ar_tui.core import events as ev
from ar_tui.core.engine import Engine, EngineOptions
from ar_tui.core.records.ledger import read_results
from ar_tui.core.proposer import Proposal, TokenUsage
from ar_tui.core.workspace import EDITOR_TOOL_NAME, Workspace
from tests.conftest import ROOT, make_target


class ToyClient:
    """A model that lowers LR by 0.1 in train.py, then submits: it reads the
    file through the editor, as a model would, and answers from what it saw."""

    api = "toy"

    def __init__(self, *, model: str, **settings: Any) -> None:
        self.model = model
        self.settings = settings
        self.turns: list[Turn] = []

    @property
    def base_url(self) -> str:
        return "toy://"

    async def send(self, call: Call, turn: Turn) -> Reply:
        self.turns.append(turn)
        last = turn.messages[-1]["content"]
        results = [b for b in last if b.get("type") == "tool_result"]
        if not results:
            step = [ToolCall(f"t{len(self.turns)}", EDITOR_TOOL_NAME, {"command": "view", "path": "train.py"})]
        elif "LR = " in results[0]["content"] and "new_str" not in str(turn.messages[-2]):
            lr = float(results[0]["content"].split("LR = ")[1].split()[0])
            step = [ToolCall(f"t{len(self.turns)}", EDITOR_TOOL_NAME,
                             {"command": "str_replace", "path": "train.py", "old_str": f"LR = {lr}",
                              "new_str": f"LR = {lr - 0.1:.1f}"})]
        else:
            step = [ToolCall(f"t{len(self.turns)}", tools.RUN_TOOL_NAME, {"description": "lower LR by 0.1"})]
        call.emit(ev.AgentText(exp=call.exp, text="thinking", role=call.role))
        usage = TokenUsage(input_tokens=100, output_tokens=10, cache_read_tokens=None)
        cost = self.price(usage, 0, call.prices)
        call.cost += cost
        call.meter.since += cost
        call.usage.add(usage)
        call.emit(ev.Usage(exp=call.exp, model=self.model, input_tokens=100, output_tokens=10,
                           cache_write_5m_tokens=0, cache_write_1h_tokens=0, cache_read_tokens=0,
                           cost_usd=float(cost), role=call.role))
        return Reply([c.param() for c in step], step, TOOL_USE if step else END_TURN, usage)

    def classify(self, exc: BaseException) -> Verdict:
        return Verdict(FATAL, f"toy failure: {exc}")

    def price(self, usage: TokenUsage, web_searches: int, prices: dict[str, Any]) -> Decimal:
        return Decimal("0.001")

    def redact(self, text: str) -> str:
        return text.replace("toy-secret", "[redacted]")


@pytest.fixture
def toy_api(monkeypatch: pytest.MonkeyPatch) -> list[ToyClient]:
    """Registers the toy API for this test; the list holds the clients built."""
    built: list[ToyClient] = []

    def factory(**settings: Any) -> ToyClient:
        built.append(ToyClient(**settings))
        return built[-1]

    monkeypatch.setitem(MODEL_CLIENTS, "toy", factory)
    return built


async def test_the_tool_loop_runs_on_a_toy_client(tmp_path: Path):
    (tmp_path / "train.py").write_text("LR = 0.5\n")
    workspace = Workspace(tmp_path, ["train.py"], [])
    client = ToyClient(model="tiny")
    events: list[ev.Event] = []
    call = Call(exp=1, role="agent", emit=events.append, meter=Meter())
    loop = ToolLoop(client, call, system=[{"type": "text", "text": "improve"}],
                    tools=tools.worker_tools("custom"),
                    messages=[{"role": "user", "content": [{"type": "text", "text": "go"}]}],
                    workspace=workspace, handler=submission_handler(workspace, tools.snapshot(workspace), call),
                    finish_tool=tools.RUN_TOOL_NAME)
    proposal = await loop.run()

    assert isinstance(proposal, Proposal) and proposal.description == "lower LR by 0.1"
    assert (tmp_path / "train.py").read_text() == "LR = 0.4\n"
    # Each turn carried the previous one's results, in the seam's blocks.
    assert len(client.turns) == 3
    second = client.turns[1].messages
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[-1]["content"][0]["type"] == "tool_result" and "LR = 0.5" in second[-1]["content"][0]["content"]
    assert [t["name"] for t in client.turns[0].tools] == [EDITOR_TOOL_NAME, tools.RUN_TOOL_NAME]
    calls = [e for e in events if isinstance(e, ev.AgentToolCall)]
    assert [c.summary for c in calls] == ["view train.py", "str_replace train.py", "run_experiment: lower LR by 0.1"]
    # The toy's usage: an unknown cache count stays unknown in the sum.
    assert proposal.cost_usd == pytest.approx(0.003)
    assert proposal.usage.input_tokens == 300 and proposal.usage.cache_read_tokens is None


def test_a_registered_api_is_named_in_a_model_spec(toy_api):
    assert model_spec("toy:tiny@http://127.0.0.1:9/v1").api == "toy"
    # A prefix that is no API is part of the model's name (Ollama's tags).
    assert model_spec("qwen2.5-coder:7b").api is None
    assert model_spec("qwen2.5-coder:7b").model == "qwen2.5-coder:7b"
    assert model_spec("openai:qwen2.5-coder:7b").api == "openai-chat"
    assert str(parse_team("worker=toy:tiny").workers[0]) == "worker=toy:tiny"
    with pytest.raises(AgentConfigError, match="names no model"):
        model_spec("toy:")


async def test_the_single_agent_and_a_team_role_run_through_the_engine_on_the_toy(toy_api, tmp_path: Path):
    for kind in ("single", "team"):
        target = make_target(tmp_path / kind / "target")
        run_dir = tmp_path / kind / "run"
        if kind == "single":
            proposer = SingleAgent(api="toy", model="tiny", program="improve val_bpb")
        else:
            proposer = TeamProposer(parse_team("worker=toy:tiny"), program="improve val_bpb", run_dir=run_dir)
        options = EngineOptions(target_dir=target, tag="t", run_dir=run_dir, attended=False, lookahead=0,
                                baseline_runs=1, write_report=False, max_experiments=2)
        engine = Engine(options, proposer)
        await engine.run()
        body = read_results(run_dir / "results.tsv")[1]
        assert [(r.status, r.description) for r in body] == [
            ("keep", "baseline"), ("keep", "lower LR by 0.1"), ("keep", "lower LR by 0.1")], kind
        assert [float(r.cost_usd) for r in body[1:]] == [pytest.approx(0.003)] * 2
    # Built through the registry, once per run: the team's role from its spec.
    assert [c.model for c in toy_api] == ["tiny", "tiny"]


def test_the_loop_the_agent_the_team_and_the_hybrid_load_no_model_sdk():
    code = ("import sys\n"
            "import ar_tui.agents.llm.loop, ar_tui.agents.single, ar_tui.agents.team, ar_tui.agents.hybrid\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('anthropic', 'openai')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
