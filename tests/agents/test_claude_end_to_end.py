"""`ar-tui run --headless --agent claude` as a real child process, against the
local Messages API server, on a tiny real target in a real git repository."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import git, make_target
from tests.fake_messages_api import (
    FakeMessagesAPI,
    RecordedRequest,
    edit,
    error,
    reply,
    run_experiment,
    text,
    usage,
)

KEY = "sk-ant-test-e2e-7d3a9b1f0c2e4d6a8b"
CLI = [sys.executable, "-m", "ar_tui.cli"]


def researcher(request: RecordedRequest):
    """A scripted model that reads the current LR from the files it is shown
    and lowers it by 0.1 (one edit, then run_experiment in a second turn)."""
    messages = request.messages()
    if request.tool_results():
        edited = [b for b in messages[-2]["content"] if b["type"] == "tool_use"][0]["input"]
        return reply(run_experiment(f"set {edited['new_str']}", rationale="the loss surface favours a lower LR"))
    files = messages[0]["content"][0]["text"]
    lr = float(re.search(r"^LR = ([0-9.]+)", files, re.MULTILINE).group(1))
    new = f"LR = {lr - 0.1:.1f}"
    return reply(text(f"LR is {lr}; trying {new}."),
                 edit("str_replace", path="train.py", old_str=f"LR = {lr}", new_str=new))


def test_three_experiments_end_to_end_with_costs_and_no_key_on_disk(tmp_path: Path):
    target = make_target(tmp_path / "target")
    run_dir = tmp_path / "run"
    with FakeMessagesAPI() as api:
        # One overload first: the run waits it out and carries on.
        api.script(error(529, "overloaded_error"))
        api.responder = researcher
        env = dict(os.environ, ANTHROPIC_API_KEY=KEY, ANTHROPIC_BASE_URL=api.base_url, TINY_SLEEP="0.1",
                   PYTHONWARNINGS="ignore::DeprecationWarning")
        done = subprocess.run(
            [*CLI, "run", "--headless", "--target", str(target), "--run-dir", str(run_dir), "--tag", "t",
             "--agent", "claude", "--model", "claude-sonnet-4-5", "--max-experiments", "3", "--unattended",
             "--lookahead", "0", "--baseline-runs", "1"],
            env=env, capture_output=True, text=True, timeout=240,
        )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output

    rows = [line.split("\t") for line in (run_dir / "results.tsv").read_text().splitlines()]
    header, body = rows[0], rows[1:]
    assert header[:7] == ["commit", "val_bpb", "memory_gb", "status", "description", "exp", "cost_usd"]
    # LR 0.5 -> 0.4 -> 0.3 improve (metric (LR - 0.3)^2 + 1); 0.3 -> 0.2 does not.
    assert [(r[5], r[3], r[4]) for r in body] == [
        ("0", "keep", "baseline"),
        ("1", "keep", "set LR = 0.4"),
        ("2", "keep", "set LR = 0.3"),
        ("3", "discard", "set LR = 0.2"),
    ]
    assert [r[1] for r in body] == ["1.040000", "1.010000", "1.000000", "1.010000"]

    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    kinds = {e["kind"] for e in events}
    assert {"agent_text", "agent_tool", "usage", "api_waiting"} <= kinds
    # The ledger's cost per experiment is the sum of that experiment's requests.
    for row in body[1:]:
        exp = int(row[5])
        spent = sum(e["cost_usd"] for e in events
                    if e["kind"] == "usage" and not e["streaming"] and e["exp"] == exp)
        assert spent > 0
        assert abs(float(row[6]) - spent) < 1e-6  # the ledger writes six decimals
    # The edits are in the history on the run's branch.
    log = git(target, "log", "--all", "-p")
    assert "LR = 0.3" in log

    # The key went to the server as a header and nowhere else.
    assert all(KEY in (r.headers.get("x-api-key", "") + r.headers.get("authorization", "")) for r in api.requests)
    assert KEY not in output
    assert KEY not in log
    for path in [*run_dir.rglob("*"), *target.rglob("*")]:
        if path.is_file() and not path.is_symlink():
            assert KEY.encode() not in path.read_bytes(), path


def run_cli(target: Path, run_dir: Path, api: FakeMessagesAPI, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANTHROPIC_API_KEY=KEY, ANTHROPIC_BASE_URL=api.base_url, TINY_SLEEP="0.05",
               PYTHONWARNINGS="ignore::DeprecationWarning")
    return subprocess.run(
        [*CLI, "run", "--headless", "--target", str(target), "--run-dir", str(run_dir), "--tag", "t",
         "--agent", "claude", "--model", "claude-sonnet-4-5", "--unattended", "--lookahead", "0",
         "--baseline-runs", "1", *extra],
        env=env, capture_output=True, text=True, timeout=240,
    )


def test_a_rejected_key_stops_the_run_with_one_line_and_the_run_resumes_after(tmp_path: Path):
    target = make_target(tmp_path / "target")
    run_dir = tmp_path / "run"
    with FakeMessagesAPI() as api:
        api.script(error(401, "authentication_error", "invalid x-api-key"))
        stopped = run_cli(target, run_dir, api, "--max-experiments", "1")
        assert len(api.requests) == 1
    assert stopped.returncode != 0
    assert "rejected the key (401 authentication_error): invalid x-api-key" in stopped.stdout
    assert "Traceback" not in stopped.stdout + stopped.stderr

    # The user fixes the key and runs the same command: the run carries on.
    with FakeMessagesAPI() as api:
        api.responder = researcher
        resumed = run_cli(target, run_dir, api, "--max-experiments", "1")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    rows = [line.split("\t") for line in (run_dir / "results.tsv").read_text().splitlines()[1:]]
    assert [(r[3], r[4]) for r in rows] == [("keep", "baseline"), ("keep", "set LR = 0.4")]


def test_the_budget_stops_the_run_cleanly_before_the_next_request(tmp_path: Path):
    target = make_target(tmp_path / "target")
    run_dir = tmp_path / "run"
    with FakeMessagesAPI() as api:
        # Each request costs 10,000 input tokens at $3/M = $0.03; the budget is $0.05.
        def priced(request: RecordedRequest):
            step = researcher(request)
            step.usage = usage(input=10_000, output=0)
            return step

        api.responder = priced
        done = run_cli(target, run_dir, api, "--max-experiments", "5", "--budget-usd", "0.05")
        requests = len(api.requests)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "budget" in done.stdout
    # Two requests ($0.06) reached the cap; none started after it.
    assert requests == 2
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    stop = [e for e in events if e["kind"] == "run_stopped"][-1]
    assert stop["cost_usd"] == 0.06 and "budget" in stop["reason"]
