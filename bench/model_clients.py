"""The two model clients on the same scripted session: seconds, tokens, dollars.

The real single agent (`SingleAgent`) proposes N experiments on a copy of
nanochat/train.py, once through the Anthropic client against
tests/fake_messages_api.py and once through the OpenAI Chat Completions
client against tests/fake_openai_api.py. Each proposal is two requests: an
edit, then `run_experiment`. Both servers estimate tokens from bytes (3.5 per
token) and simulate their API's caching (Anthropic: `cache_control`
breakpoints with TTLs; OpenAI: automatic prefix caching), so the tokens and
dollars compare the request shapes and the caching, not real models. The
seconds are the client's own: SDK, HTTP on 127.0.0.1, streaming, the editor,
measured here from the proposal's start to its edit applied and to its end.

    .venv/bin/python bench/model_clients.py              # 10 experiments each
    .venv/bin/python bench/model_clients.py -n 20
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ar_tui.agents.single import SingleAgent  # noqa: E402
from ar_tui.core import events as ev  # noqa: E402
from ar_tui.core.config import TargetConfig  # noqa: E402
from ar_tui.core.proposer import ProposalContext, ResultRow  # noqa: E402
from ar_tui.core.workspace import Workspace  # noqa: E402
from tests import fake_messages_api as anthropic_fake  # noqa: E402
from tests import fake_openai_api as openai_fake  # noqa: E402

KEY = "sk-bench-not-a-key"
CLIENTS = {"anthropic": ("claude-haiku-4-5", anthropic_fake), "openai-chat": ("gpt-4.1-mini", openai_fake)}
CONSTANT = re.compile(r"(MATRIX_LR) = ([0-9.e-]+)")


def researcher(fake):
    """Turn 1: change one constant of the files it is shown; turn 2: submit."""

    def answer(request):
        if request.json and any(m.get("role") == "tool" for m in request.json.get("messages", [])) \
                or fake is anthropic_fake and request.tool_results():
            return fake.reply(fake.run_experiment("nudge a constant"))
        shown = str(request.json["messages"][-1]["content"])
        name, value = CONSTANT.search(shown).groups()
        new = f"{float(value) * 0.9:.6g}"
        return fake.reply(fake.text(f"Trying {name} = {new}."),
                          fake.edit("str_replace", path="train.py", old_str=f"{name} = {value}",
                                    new_str=f"{name} = {new}"))

    return answer


async def session(api: str, experiments: int, root: Path) -> dict:
    model, fake = CLIENTS[api]
    (root / "train.py").write_text((ROOT / "nanochat" / "train.py").read_text())
    workspace = Workspace(root, ["train.py"], [])
    server = fake.FakeMessagesAPI() if fake is anthropic_fake else fake.FakeChatAPI()
    edit_s, total_s, usages = [], [], []
    with server:
        server.responder = researcher(fake)
        agent = SingleAgent(api=api, model=model, program=(ROOT / "program.md").read_text(), api_key=KEY,
                            base_url=server.base_url)
        history = [ResultRow(0, "abc1234", 1.0, "keep", "baseline")]
        for exp in range(1, experiments + 1):
            events: list[ev.Event] = []
            start = time.perf_counter()
            edited: list[float] = []

            def emit(event: ev.Event) -> None:
                events.append(event)
                if isinstance(event, ev.AgentToolCall) and event.name == "str_replace_based_edit_tool":
                    edited.append(time.perf_counter())

            ctx = ProposalContext(exp=exp, target=TargetConfig(root=root), best_metric=1.0, baseline_metric=1.0,
                                  history=list(history))
            proposal = await agent.propose(ctx, workspace, emit)
            total_s.append(time.perf_counter() - start)
            edit_s.append(edited[0] - start)
            usages.append([e for e in events if isinstance(e, ev.Usage) and not e.streaming])
            history.append(ResultRow(exp, f"c{exp}", 1.0, "keep", proposal.description))
    fresh = [sum(u.input_tokens for u in us) for us in usages]
    read = [sum(u.cache_read_tokens for u in us) for us in usages]
    written = [sum(u.cache_write_5m_tokens + u.cache_write_1h_tokens for u in us) for us in usages]
    output = [sum(u.output_tokens for u in us) for us in usages]
    cost = [sum(u.cost_usd or 0.0 for u in us) for us in usages]
    return {"api": api, "model": model, "edit_s": statistics.median(edit_s), "total_s": statistics.median(total_s),
            "fresh": statistics.mean(fresh), "read": statistics.mean(read), "written": statistics.mean(written),
            "output": statistics.mean(output), "usd": statistics.mean(cost), "first_usd": cost[0]}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--experiments", type=int, default=10)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    rows = []
    for api in CLIENTS:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(await session(api, args.experiments, Path(tmp)))
    print(f"{args.experiments} experiments per client, 2 requests each; tokens estimated at 3.5 bytes per token")
    print("client       model              to edit s  total s  fresh in  cache read  cache write  out  "
          "$/exp (mean)  $ exp 1")
    for r in rows:
        print(f"{r['api']:<12} {r['model']:<18} {r['edit_s']:>9.3f}  {r['total_s']:>7.3f}  {r['fresh']:>8.0f}  "
              f"{r['read']:>10.0f}  {r['written']:>11.0f}  {r['output']:>3.0f}  {r['usd']:>12.5f}  "
              f"{r['first_usd']:>7.5f}")
    print("seconds: medians, proposal start to the edit applied and to run_experiment; tokens and $: means")


if __name__ == "__main__":
    asyncio.run(main())
