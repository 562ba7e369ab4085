"""`ar-tui run --headless --agent claude-code` and `--agent codex` as real child
processes: the real CLIs against the local scripted servers, on a tiny real
target in a real git repository. Each session makes an honest edit and tries
the hostile calls; the honest edits train, the hostile ones are refused, the
cost is in the meter and the ledger, and the key is in no file."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.agents.cli_sessions import (
    CLAUDE_KEY, CODEX_KEY, OUTSIDE_MARK, claude_researcher, cli_env, codex_researcher, files_holding, require_cli,
)
from tests.conftest import TINY_PREPARE, git, make_target
from tests.fake_messages_api import FakeMessagesAPI, RecordedRequest
from tests.fake_responses_api import FakeResponsesAPI

CLI = [sys.executable, "-m", "ar_tui.cli"]
CODEX_PRICES = '[prices."gpt-test-codex"]\ninput = 1.25\ncache_write_5m = 0\ncache_write_1h = 0\n' \
               'cache_read = 0.125\noutput = 10\n'


def run_args(target: Path, run_dir: Path, agent: str, model: str, *extra: str) -> list[str]:
    return [*CLI, "run", "--headless", "--target", str(target), "--run-dir", str(run_dir), "--tag", "t",
            "--agent", agent, "--model", model, "--unattended", "--lookahead", "0", "--baseline-runs", "1", *extra]


def results(run_dir: Path) -> list[list[str]]:
    return [line.split("\t") for line in (run_dir / "results.tsv").read_text().splitlines()[1:]]


def events_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def check_night(target: Path, run_dir: Path, tmp_path: Path, key: str, output: str,
                denials_in_stream: bool = True) -> list[dict]:
    """`denials_in_stream`: the CLI reports a write its sandbox denied (Codex
    0.171's --json stream leaves such a command out; the files say it all)."""
    rows = results(run_dir)
    assert [(r[5], r[3], r[4]) for r in rows] == [
        ("0", "keep", "baseline"), ("1", "keep", "set LR = 0.4"), ("2", "keep", "set LR = 0.3")]
    assert [r[1] for r in rows] == ["1.040000", "1.010000", "1.000000"]
    events = events_of(run_dir)
    refused = [e for e in events if e["kind"] == "agent_tool" and e["is_error"]]
    assert any("prepare.py" in e["summary"] + e["result"] for e in refused)
    if denials_in_stream:
        assert any("outside.txt" in e["summary"] + e["result"] for e in refused)
    # The ledger's cost per experiment is its sessions' usage, and it is not zero.
    for row in rows[1:]:
        spent = sum(e["cost_usd"] or 0 for e in events if e["kind"] == "usage" and e["exp"] == int(row[5]))
        assert spent > 0 and abs(float(row[6]) - spent) < 1e-6
    log = git(target, "log", "--all", "-p")
    assert "LR = 0.3" in log and OUTSIDE_MARK not in log
    assert git(target, "show", "autoresearch/t:prepare.py") == TINY_PREPARE
    assert key not in output and key not in log
    # The meter's line at the end of the night: the sessions' dollars, not zero.
    spent = re.search(r"cost: \$([0-9.]+)", output)
    assert spent and float(spent.group(1)) > 0
    assert float(spent.group(1)) == pytest.approx(sum(float(r[6]) for r in rows), abs=1e-4)
    # The run dir holds the CLI's state dir (its HOME and config): no key anywhere.
    assert (run_dir / "agents").is_dir()
    assert files_holding(tmp_path, key) == []
    # The hostile writes left nothing; only the event log names them (the agent pane's lines).
    assert [f for f in files_holding(tmp_path, OUTSIDE_MARK) if not f.endswith("events.jsonl")] == []
    return events


def test_a_claude_code_night_end_to_end(tmp_path: Path):
    require_cli("claude", "@anthropic-ai/claude-code")
    target = make_target(tmp_path / "target")
    run_dir = tmp_path / "run"
    with FakeMessagesAPI() as api:
        api.responder = claude_researcher(hostile=True)
        env = cli_env(ANTHROPIC_API_KEY=CLAUDE_KEY, ANTHROPIC_BASE_URL=api.base_url, TINY_SLEEP="0.05")
        done = subprocess.run(run_args(target, run_dir, "claude-code", "claude-sonnet-4-5", "--max-experiments", "2"),
                              env=env, capture_output=True, text=True, timeout=400)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    events = check_night(target, run_dir, tmp_path, CLAUDE_KEY, output)
    assert {e["model"] for e in events if e["kind"] == "usage"} >= {"claude-sonnet-4-5"}


def test_a_codex_night_end_to_end(tmp_path: Path):
    require_cli("codex", "@openai/codex")
    target = make_target(tmp_path / "target", config=None)
    # The model's prices, for the meter: OpenAI models are not in the built-in table.
    (target / "autoresearch.toml").write_text('[target]\neditable = ["train.py"]\n\n' + CODEX_PRICES)
    git(target, "add", "-A")
    git(target, "commit", "-q", "-m", "prices")
    run_dir = tmp_path / "run"
    with FakeResponsesAPI() as api:
        api.responder = codex_researcher(hostile=True)
        env = cli_env(OPENAI_API_KEY=CODEX_KEY, TINY_SLEEP="0.05")
        done = subprocess.run(run_args(target, run_dir, "codex", "gpt-test-codex", "--base-url", api.base_url,
                                       "--max-experiments", "2"),
                              env=env, capture_output=True, text=True, timeout=400)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    events = check_night(target, run_dir, tmp_path, CODEX_KEY, output, denials_in_stream=False)
    assert {e["model"] for e in events if e["kind"] == "usage"} == {"gpt-test-codex"}


def session_pids(marker: str) -> list[int]:
    """Processes whose command line names `marker` (the CLI's state dir is on it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_kill_9_mid_session_leaves_no_cli_and_the_proposal_is_redone(tmp_path: Path):
    require_cli("claude", "@anthropic-ai/claude-code")
    target = make_target(tmp_path / "target")
    run_dir = tmp_path / "run"
    state_dir = str(run_dir / "agents" / "claude-code")
    in_session = threading.Event()
    release = threading.Event()
    honest = claude_researcher(hostile=False)

    def stalls(request: RecordedRequest):
        if any(t.get("name") == "Edit" for t in (request.json or {}).get("tools", [])):
            in_session.set()
            release.wait(60)  # held until the engine is dead
        return honest(request)

    with FakeMessagesAPI() as api:
        api.responder = stalls
        env = cli_env(ANTHROPIC_API_KEY=CLAUDE_KEY, ANTHROPIC_BASE_URL=api.base_url, TINY_SLEEP="0.05")
        args = run_args(target, run_dir, "claude-code", "claude-sonnet-4-5", "--max-experiments", "1")
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert in_session.wait(120), "the session never reached the server"
        assert session_pids(state_dir), "no CLI process found mid-session"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        deadline = time.monotonic() + 15
        while session_pids(state_dir) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert session_pids(state_dir) == [], "the CLI outlived the engine"
        release.set()

        api.responder = honest
        resumed = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert [(r[5], r[3], r[4]) for r in results(run_dir)] == [("0", "keep", "baseline"), ("1", "keep", "set LR = 0.4")]
