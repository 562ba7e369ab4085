"""The team cost benchmark runs, and what it measures holds together: the
reviewer stops exactly the duplicates that the single agent trains."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_team_benchmark_runs_and_the_reviewer_stops_every_duplicate(tmp_path):
    out = tmp_path / "team.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "team_cost.py"), "--json", str(out)],
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "training seconds saved by the reviewer" in done.stdout
    data = json.loads(out.read_text())
    results = {(r["session"], r["proposer"].split()[0]): r for r in data["results"]}
    agent, team = results[("duplicates", "one")], results[("duplicates", "team")]
    duplicates = agent["training_s_on_duplicates"] / 300.0
    assert duplicates >= 3 and team["rejected"] == duplicates
    assert team["trained"] + team["rejected"] == agent["trained"] == 20
    assert team["training_s_on_duplicates"] == 0 and data["saved_training_s"] == agent["training_s_on_duplicates"]
    plain = results[("plain", "team")]
    assert set(plain["tokens_by_role"]) == {"planner", "worker", "reviewer"}
    assert abs(sum(plain["cost_by_role"].values()) - plain["total_usd"]) < 1e-12
    assert results[("plain", "one")]["cost_by_role"].keys() == {"agent"}
