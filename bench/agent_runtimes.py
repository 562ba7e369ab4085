"""What each agent runtime costs per experiment, on the same scripted session.

Three runtimes propose the same change on a tiny real target (read the LR,
lower it by 0.1, finish), a few proposals in a row, each against a local
scripted server that estimates tokens from the bytes of each request
(3.5 bytes a token):

- `claude`: ar-tui's own tool loop (`SingleAgent`), Messages API;
- `claude-code`: the Claude Code CLI, headless, confined (`--agent claude-code`);
- `codex`: the Codex CLI, headless, confined (`--agent codex`), Responses API.

Per proposal it measures the seconds from the start of `propose` to the edit
being on disk (the CLI's start-up, its sandbox and its version check
included), the CLI's start-up alone (to the first event of its stream), the
tokens and the dollars. Claude Code prices its own session (its
`total_cost_usd`); ar-tui prices `claude`; Codex's tokens are priced at the
`--codex-price` given (dollars per million input, cached input, output),
since ar-tui's table holds no OpenAI model. The lookahead proposes the next
experiment while the current one trains, so a runtime's time is hidden when
it is shorter than a training run: the table says so for a 60 s run (the
bundled CPU target) and a 300 s run (the original's five minutes). Then it
measures it: four real `ar-tui run --headless` nights per CLI runtime, with
`--lookahead 0` and `--lookahead 1`, reading from the event log how long the
slot stood idle between one run's end and the next run's start.

    .venv/bin/python bench/agent_runtimes.py                 # 3 proposals per runtime
    .venv/bin/python bench/agent_runtimes.py --proposals 5 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ar_tui.agents.cli import ClaudeCodeAgent, CodexAgent  # noqa: E402
from ar_tui.agents.single import SingleAgent  # noqa: E402
from ar_tui.core.config import TargetConfig  # noqa: E402
from ar_tui.core.money.pricing import parse_price_overrides  # noqa: E402
from ar_tui.core.proposer import ProposalContext, ResultRow  # noqa: E402
from ar_tui.core.workspace import Workspace  # noqa: E402
from tests.agents.cli_sessions import CLAUDE_KEY, CODEX_KEY, claude_researcher, cli_env, codex_researcher  # noqa: E402
from tests.agents.test_claude_end_to_end import researcher as own_researcher  # noqa: E402
from tests.conftest import TINY_PREPARE, TINY_TRAIN  # noqa: E402
from tests.fake_messages_api import FakeMessagesAPI  # noqa: E402
from tests.fake_responses_api import FakeResponsesAPI  # noqa: E402

MODEL = "claude-sonnet-4-5"
CODEX_MODEL = "gpt-5-codex"
RUN_SECONDS = (60, 300)


def version(command: str) -> str:
    path = shutil.which(command)
    if path is None:
        return "not installed"
    return subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60).stdout.strip()


def make_target(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "train.py").write_text(TINY_TRAIN)
    (root / "prepare.py").write_text(TINY_PREPARE)
    return root


async def measure(name: str, agent, target: Path, run_dir: Path, proposals: int, prices: dict) -> list[dict]:
    rows = []
    config = TargetConfig(root=target)
    config.prices = prices
    for exp in range(1, proposals + 1):
        ctx = ProposalContext(exp=exp, target=config, best_metric=1.04, baseline_metric=1.04,
                              history=[ResultRow(0, "abc1234", 1.04, "keep", "baseline")], run_dir=run_dir)
        workspace = Workspace(target, ["train.py"], ["prepare.py"])
        before = (target / "train.py").read_text()
        started = time.perf_counter()
        proposal = await agent.propose(ctx, workspace, lambda event: None)
        seconds = time.perf_counter() - started
        assert (target / "train.py").read_text() != before, f"{name}: no edit"
        session = getattr(agent, "last_session", None)
        usage = proposal.usage
        rows.append({"runtime": name, "exp": exp, "seconds": seconds,
                     "startup_s": session.first_event_s if session is not None else None,
                     "input": usage.input_tokens, "cache_write": usage.cache_write_5m_tokens + usage.cache_write_1h_tokens,
                     "cache_read": usage.cache_read_tokens, "output": usage.output_tokens,
                     "usd": proposal.cost_usd, "description": proposal.description})
    return rows


async def main_async(args: argparse.Namespace) -> list[dict]:
    scratch = Path(tempfile.mkdtemp(prefix="ar-tui-bench-runtimes-", dir=args.scratch))
    rows: list[dict] = []
    codex_prices = parse_price_overrides({CODEX_MODEL: [args.codex_price[0], 0, 0, args.codex_price[1],
                                                        args.codex_price[2]]})
    with FakeMessagesAPI() as api:
        api.responder = own_researcher
        own = SingleAgent(model=MODEL, program="Be a careful researcher.", api_key=CLAUDE_KEY, base_url=api.base_url)
        rows += await measure("claude", own, make_target(scratch / "own" / "target"), scratch / "own", args.proposals, {})
    with FakeMessagesAPI() as api:
        api.responder = claude_researcher(hostile=False)
        code = ClaudeCodeAgent(model=MODEL, program="Be a careful researcher.", base_url=api.base_url,
                               env=cli_env(ANTHROPIC_API_KEY=CLAUDE_KEY))
        rows += await measure("claude-code", code, make_target(scratch / "cc" / "target"), scratch / "cc",
                              args.proposals, {})
    with FakeResponsesAPI() as api:
        api.responder = codex_researcher(hostile=False, scripted_usage=False)
        codex = CodexAgent(model=CODEX_MODEL, program="Be a careful researcher.", base_url=api.base_url,
                           env=cli_env(OPENAI_API_KEY=CODEX_KEY))
        rows += await measure("codex", codex, make_target(scratch / "codex" / "target"), scratch / "codex",
                              args.proposals, codex_prices)
    shutil.rmtree(scratch, ignore_errors=True)
    return rows


def slot_gaps(run_dir: Path) -> list[float]:
    """Seconds the slot stood idle between one run's end and the next run's start."""
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    runs = [e for e in events if e["kind"] in ("experiment_started", "experiment_finished")]
    gaps, finished = [], None
    for event in runs:
        if event["kind"] == "experiment_finished":
            finished = event["ts"]
        elif finished is not None:
            gaps.append(event["ts"] - finished)
            finished = None
    return gaps


def lookahead_night(runtime: str, lookahead: int, train_s: float, scratch: Path) -> list[float]:
    """A real `ar-tui run --headless` night of 4 experiments; the slot's idle gaps."""
    sys.path.insert(0, str(ROOT))
    from tests.conftest import make_target as git_target

    where = Path(tempfile.mkdtemp(prefix=f"{runtime}-la{lookahead}-", dir=scratch))
    target = git_target(where / "target")
    args = [sys.executable, "-m", "ar_tui.cli", "run", "--headless", "--target", str(target), "--run-dir",
            str(where / "run"), "--tag", "t", "--agent", runtime, "--unattended", "--baseline-runs", "1",
            "--lookahead", str(lookahead), "--max-experiments", "4"]
    env = dict(cli_env(TINY_SLEEP=str(train_s), AR_TUI_HOME=str(where / "home")), PYTHONPATH=str(ROOT))
    if runtime == "claude-code":
        server = FakeMessagesAPI().start()
        server.responder = claude_researcher(hostile=False)
        env.update(ANTHROPIC_API_KEY=CLAUDE_KEY, ANTHROPIC_BASE_URL=server.base_url)
        args += ["--model", MODEL]
    else:
        server = FakeResponsesAPI().start()
        server.responder = codex_researcher(hostile=False, scripted_usage=False)
        env.update(OPENAI_API_KEY=CODEX_KEY)
        args += ["--model", CODEX_MODEL, "--base-url", server.base_url]
    try:
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    finally:
        server.stop()
    if done.returncode != 0:
        raise SystemExit(f"{runtime} night failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    return slot_gaps(where / "run")


def table(rows: list[dict]) -> str:
    lines = ["| runtime | proposal to edit done, s (median, max) | CLI start-up, s (median) | tokens per "
             "experiment (in / cache write / cache read / out) | $ per experiment | hidden by the lookahead |",
             "|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["runtime"] for r in rows):
        mine = [r for r in rows if r["runtime"] == name]
        seconds = [r["seconds"] for r in mine]
        startup = [r["startup_s"] for r in mine if r["startup_s"] is not None]
        mean = {k: round(statistics.mean(r[k] for r in mine)) for k in ("input", "cache_write", "cache_read", "output")}
        usd = statistics.mean(r["usd"] for r in mine)
        hidden = ", ".join(f"{'yes' if max(seconds) < run else 'no'} for a {run} s run" for run in RUN_SECONDS)
        lines.append(f"| {name} | {statistics.median(seconds):.1f}, {max(seconds):.1f} | "
                     f"{statistics.median(startup):.1f} | " if startup else
                     f"| {name} | {statistics.median(seconds):.1f}, {max(seconds):.1f} | - | ")
        lines[-1] += (f"{mean['input']} / {mean['cache_write']} / {mean['cache_read']} / {mean['output']} | "
                      f"{usd:.4f} | {hidden} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proposals", type=int, default=3)
    parser.add_argument("--codex-price", type=float, nargs=3, default=(1.25, 0.125, 10.0),
                        metavar=("INPUT", "CACHED", "OUTPUT"), help="$ per million tokens for Codex's model")
    parser.add_argument("--scratch", help="where the targets and run dirs go (default: the temp dir)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--train-s", type=float, default=10.0,
                        help="the training run's length in the lookahead nights (the tiny target sleeps this long)")
    parser.add_argument("--no-nights", action="store_true", help="skip the lookahead nights")
    args = parser.parse_args()
    rows = asyncio.run(main_async(args))
    nights = {}
    if not args.no_nights:
        scratch = Path(tempfile.mkdtemp(prefix="ar-tui-bench-nights-", dir=args.scratch))
        for runtime in ("claude-code", "codex"):
            for lookahead in (0, 1):
                nights[(runtime, lookahead)] = lookahead_night(runtime, lookahead, args.train_s, scratch)
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}")
    print(f"claude: {version('claude')}; codex: {version('codex')}; models {MODEL} and {CODEX_MODEL} "
          f"(Codex priced at ${args.codex_price[0]:g} / ${args.codex_price[1]:g} / ${args.codex_price[2]:g} per M)")
    for row in rows:
        startup = f"{row['startup_s']:.2f}" if row["startup_s"] is not None else "-"
        print(f"{row['runtime']:12s} exp {row['exp']}: {row['seconds']:6.2f}s (start-up {startup}s) "
              f"in {row['input']} cw {row['cache_write']} cr {row['cache_read']} out {row['output']} "
              f"${row['usd']:.4f}  {row['description']}")
    print()
    print(table(rows))
    if nights:
        print()
        print(f"Lookahead, measured: `ar-tui run --headless` nights of 4 experiments, each run {args.train_s:g} s; "
              "the slot's idle seconds between one run's end and the next run's start:")
        print()
        print("| runtime | --lookahead 0: idle s per experiment (median, max) | --lookahead 1 (median, max) |")
        print("|---|---|---|")
        for runtime in ("claude-code", "codex"):
            cells = []
            for lookahead in (0, 1):
                gaps = nights[(runtime, lookahead)]
                cells.append(f"{statistics.median(gaps):.1f}, {max(gaps):.1f}" if gaps else "-")
            print(f"| {runtime} | {cells[0]} | {cells[1]} |")
    if args.json:
        args.json.write_text(json.dumps({"proposals": rows, "nights": {f"{r}/lookahead{l}": g
                                                                       for (r, l), g in nights.items()}}, indent=1))


if __name__ == "__main__":
    main()
