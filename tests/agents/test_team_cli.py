"""`ar-tui run --headless` with a team from autoresearch.toml's [team], as a real child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ar_tui.core.config import ConfigError, load_target
from tests.agents.test_team import PLANNER, REVIEWER, WORKER, answer_roles
from tests.conftest import make_target
from tests.fake_messages_api import FakeMessagesAPI

KEY = "sk-ant-test-team-cli-1f2e3d"
TEAM = f"planner={PLANNER},worker={WORKER},reviewer={REVIEWER}"


def team_env(api: FakeMessagesAPI) -> dict[str, str]:
    """A child's environment with the key and the local server standing in for the API."""
    return dict(os.environ, ANTHROPIC_API_KEY=KEY, ANTHROPIC_BASE_URL=api.base_url, TINY_SLEEP="0.05",
                PYTHONWARNINGS="ignore::DeprecationWarning")


def headless(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`ar-tui run --headless ARGS` as a child process."""
    return subprocess.run([sys.executable, "-m", "ar_tui.cli", "run", "--headless", *args], env=env,
                          capture_output=True, text=True, timeout=240)


def test_a_team_from_the_toml_table_runs_headless_and_the_flag_wins(tmp_path: Path):
    config = (f'[team]\nplanner = "{PLANNER}"\nworker = ["{WORKER}"]\nreviewer = "{REVIEWER}"\n'
              f'plan_every = 4\n')
    target = make_target(tmp_path / "target", config=config)
    run_dir = tmp_path / "run"
    with FakeMessagesAPI() as api:
        answer_roles(api)
        env = team_env(api)
        done = headless(env, "--target", str(target), "--run-dir", str(run_dir), "--tag", "t", "--agent", "team",
                        "--unattended", "--lookahead", "0", "--baseline-runs", "1", "--max-experiments", "1")
        models = {r.json["model"] for r in api.requests}
    assert done.returncode == 0, done.stdout + done.stderr
    assert models == {PLANNER, WORKER, REVIEWER}
    started = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert started[0]["kind"] == "run_started" and started[0]["agent"] == "team"
    assert "lower LR to 0.4" in (run_dir / "notes.md").read_text()
    assert KEY not in (run_dir / "notes.md").read_text() + (run_dir / "team.json").read_text()


def test_a_bad_team_table_is_one_line(tmp_path: Path):
    target = make_target(tmp_path / "t1", config='[team]\nplanner = "a"\nboss = "b"\n')
    with pytest.raises(ConfigError, match=r"team\.boss: unknown key"):
        load_target(target)
    target = make_target(tmp_path / "t2", config='[team]\nplanner = "a"\n')
    done = subprocess.run(
        [sys.executable, "-m", "ar_tui.cli", "run", "--headless", "--target", str(target), "--run-dir",
         str(tmp_path / "run"), "--agent", "team"],
        env=dict(os.environ, ANTHROPIC_API_KEY=KEY), capture_output=True, text=True, timeout=120,
    )
    assert done.returncode != 0
    assert "name at least one worker" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_a_team_with_the_offline_agent_is_refused(tmp_path: Path):
    target = make_target(tmp_path / "target")
    done = subprocess.run(
        [sys.executable, "-m", "ar_tui.cli", "run", "--headless", "--target", str(target), "--run-dir",
         str(tmp_path / "run"), "--agent", "offline", "--team", "worker=claude-haiku-4-5"],
        env=dict(os.environ, ANTHROPIC_API_KEY=KEY), capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    assert "not --agent offline" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_the_team_flags_are_stored_and_a_bare_resume_runs_the_same_team(tmp_path: Path):
    from ar_tui import run_options

    target = make_target(tmp_path / "target")
    run_dir = tmp_path / "run"
    with FakeMessagesAPI() as api:
        answer_roles(api)
        env = team_env(api)
        first = headless(env, "--target", str(target), "--run-dir", str(run_dir), "--tag", "t", "--team", TEAM,
                         "--plan-every", "3", "--unattended", "--lookahead", "0", "--baseline-runs", "1",
                         "--max-experiments", "1")
        assert first.returncode == 0, first.stdout + first.stderr
        stored = run_options.load(run_dir)
        assert stored.agent == "team" and stored.extra["team"] == TEAM and stored.extra["plan_every"] == 3
        again = headless(env, "--run-dir", str(run_dir), "--max-experiments", "2")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "set LR = 0.3" in (run_dir / "results.tsv").read_text()
        assert api.requests_for(WORKER)[-1].text().count("lower LR to 0.3") >= 1


def test_hybrid_with_a_team_has_the_team_propose_the_structure_and_the_sampler_the_knobs(tmp_path: Path):
    """`--agent hybrid --team ...`: the bandit splits the experiments between the
    offline search and the team (planner, worker, reviewer, each its own model
    on the local Messages API server); the ledger names who proposed each."""
    from ar_tui.core.records.ledger import read_results

    target = make_target(tmp_path / "target")
    run_dir = tmp_path / "run"
    with FakeMessagesAPI() as api:
        answer_roles(api)
        done = headless(team_env(api), "--target", str(target), "--run-dir", str(run_dir), "--tag", "t",
                        "--agent", "hybrid", "--team", TEAM, "--offline-search", "classic", "--unattended",
                        "--lookahead", "0", "--baseline-runs", "1", "--max-experiments", "4")
        models = {r.json["model"] for r in api.requests}
    assert done.returncode == 0, done.stdout + done.stderr
    assert models == {PLANNER, WORKER, REVIEWER}  # the team, not a lone Claude, proposed the structure
    rows = read_results(run_dir / "results.tsv")[1]
    proposers = [row.proposer for row in rows[1:]]
    assert len(proposers) == 4 and set(proposers) == {"offline", f"worker={WORKER}"}
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert events[0]["kind"] == "run_started" and events[0]["agent"] == "hybrid"
    said = "".join(e.get("text", "") for e in events if e["kind"] == "agent_text")
    assert "goes to the team (structure)" in said and "goes to the knob sampler" in said
    assert "lower LR to 0.4" in (run_dir / "notes.md").read_text()  # the planner's agenda, kept as for --agent team
