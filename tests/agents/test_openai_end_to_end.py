"""`ar-tui run --headless --agent openai` as a real child process, against
the local Chat Completions server, on a tiny real target in a real git
repository; and a team whose worker is `openai-chat:MODEL@URL`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import TINY_TRAIN, git, make_target
from tests.fake_messages_api import FakeMessagesAPI
from tests.fake_messages_api import reply as messages_reply
from tests.fake_messages_api import tool_use
from tests.fake_openai_api import FakeChatAPI, RecordedRequest, edit, error, reply, run_experiment, text, usage

KEY = "sk-openai-e2e-8c1d2e3f4a5b6c7d"
MODEL = "gpt-4.1-mini"
CLI = [sys.executable, "-m", "ar_tui.cli"]
# The training script says whether the key reached it: it must not.
TRAIN = TINY_TRAIN.replace('print("---")', 'print("openai_key_in_env:", "OPENAI_API_KEY" in os.environ)\nprint("---")')


def researcher(request: RecordedRequest):
    """Reads LR from the files it is shown, lowers it by 0.1, then submits."""
    messages = request.messages()
    tool = request.tool_messages()
    if tool:
        arguments = json.loads(messages[-2]["tool_calls"][0]["function"]["arguments"])
        return reply(run_experiment(f"set {arguments['new_str']}"), usage=usage(prompt=4000, completion=30,
                                                                              cached=3500))
    opening = messages[1]["content"]
    lr = float(re.search(r"^LR = ([0-9.]+)", opening, re.MULTILINE).group(1))
    return reply(text(f"LR is {lr}."), edit("str_replace", path="train.py", old_str=f"LR = {lr}",
                                            new_str=f"LR = {lr - 0.1:.1f}"),
                 usage=usage(prompt=3600, completion=60, cached=0))


def run_cli(target: Path, run_dir: Path, *extra: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, "run", "--headless", "--target", str(target), "--run-dir", str(run_dir), "--tag", "t",
         "--unattended", "--lookahead", "0", "--baseline-runs", "1", *extra],
        env={**os.environ, "TINY_SLEEP": "0.05", "PYTHONWARNINGS": "ignore::DeprecationWarning", **env},
        capture_output=True, text=True, timeout=240,
    )


def events_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def assert_no_key_on_disk(*roots: Path, key: str = KEY) -> None:
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert key.encode() not in path.read_bytes(), path


def test_the_single_agent_runs_a_night_on_an_openai_compatible_server(tmp_path: Path):
    target = make_target(tmp_path / "target", train=TRAIN)
    run_dir = tmp_path / "run"
    with FakeChatAPI() as api:
        # A rate limit first: the run waits as told and carries on.
        api.script(error(429, "rate_limit_exceeded", "slow down", retry_after=0.1))
        api.responder = researcher
        done = run_cli(target, run_dir, "--agent", "openai", "--model", MODEL, "--base-url", api.base_url,
                       "--max-experiments", "2", env={"OPENAI_API_KEY": KEY})
        requests = list(api.requests)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output

    rows = [line.split("\t") for line in (run_dir / "results.tsv").read_text().splitlines()[1:]]
    assert [(r[5], r[3], r[4]) for r in rows] == [("0", "keep", "baseline"), ("1", "keep", "set LR = 0.4"),
                                                  ("2", "keep", "set LR = 0.3")]
    events = events_of(run_dir)
    assert any(e["kind"] == "api_waiting" and "429" in e["reason"] for e in events)
    started = [e for e in events if e["kind"] == "run_started"][-1]
    assert (started["agent"], started["model"]) == ("openai", MODEL)
    # Each experiment: 3600 fresh + 60 out, then 500 fresh + 3500 cached + 30 out, at gpt-4.1-mini's prices.
    per_experiment = (3600 * 0.40 + 60 * 1.60 + 500 * 0.40 + 3500 * 0.10 + 30 * 1.60) / 1e6
    for row in rows[1:]:
        assert abs(float(row[6]) - per_experiment) < 1e-6
        finals = [e for e in events if e["kind"] == "usage" and not e["streaming"] and e["exp"] == int(row[5])]
        assert [(u["input_tokens"], u["cache_read_tokens"]) for u in finals] == [(3600, 0), (500, 3500)]
    assert "LR = 0.3" in git(target, "log", "--all", "-p")

    # The key went to the server as a header and nowhere else: not to disk, not to the training run.
    assert all(r.headers.get("authorization") == f"Bearer {KEY}" for r in requests)
    assert KEY not in output
    logs = "".join(p.read_text(errors="replace") for p in run_dir.rglob("*.log"))
    assert "openai_key_in_env: False" in logs and "openai_key_in_env: True" not in logs
    assert_no_key_on_disk(run_dir, target)


def test_a_team_with_an_openai_worker_and_an_anthropic_reviewer(tmp_path: Path):
    target = make_target(tmp_path / "target")
    run_dir = tmp_path / "run"
    anthropic_key = "sk-ant-e2e-reviewer-0a1b2c"
    with FakeChatAPI() as chat, FakeMessagesAPI() as messages:
        chat.responder = researcher
        messages.responder = lambda request: messages_reply(tool_use("review", {"verdict": "approve",
                                                                               "reason": "a new idea"}))
        team = f"worker=openai-chat:{MODEL}@{chat.base_url},reviewer=claude-haiku-4-5@{messages.base_url}"
        done = run_cli(target, run_dir, "--team", team, "--max-experiments", "1",
                       env={"OPENAI_API_KEY": KEY, "ANTHROPIC_API_KEY": anthropic_key})
        chat_requests, reviews = list(chat.requests), list(messages.requests)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split("\t") for line in (run_dir / "results.tsv").read_text().splitlines()[1:]]
    assert [(r[3], r[4]) for r in rows] == [("keep", "baseline"), ("keep", "set LR = 0.4")]
    assert len(chat_requests) == 2 and len(reviews) == 1
    # Each server got its own API's key only.
    assert all(r.headers.get("authorization") == f"Bearer {KEY}" for r in chat_requests)
    assert anthropic_key in reviews[0].headers.get("x-api-key", "") + reviews[0].headers.get("authorization", "")
    usage_models = {(e["role"], e["model"]) for e in events_of(run_dir) if e["kind"] == "usage"}
    assert usage_models == {("worker", MODEL), ("reviewer", "claude-haiku-4-5")}
    assert_no_key_on_disk(run_dir, target)
    assert_no_key_on_disk(run_dir, target, key=anthropic_key)


def test_the_wrong_api_stops_the_run_with_one_line(tmp_path: Path):
    target = make_target(tmp_path / "target")
    with FakeMessagesAPI() as messages:
        url = messages.base_url + "/v1"
        done = run_cli(target, tmp_path / "run", "--agent", "openai", "--model", MODEL, "--base-url", url,
                       "--max-experiments", "1", env={"OPENAI_API_KEY": KEY})
    assert done.returncode != 0
    assert f"{url} does not speak the OpenAI Chat Completions API" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
