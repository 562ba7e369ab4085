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
from tests.fake_messages_api import FakeMessagesAPI, RecordedRequest, edit, error, reply, run_experiment, text

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
