"""The cost benchmark runs, and the prompt layout keeps paying off in it: after
the first experiment, proposals read their stable prefix from the cache."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_benchmark_replays_twenty_experiments_mostly_from_the_cache(tmp_path):
    out = tmp_path / "cost.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "agent_cost.py"), "--json", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "3.5 bytes per token" in done.stdout
    data = json.loads(out.read_text())
    experiments = data["experiments"]
    assert [e["exp"] for e in experiments] == list(range(1, 21))
    later = experiments[1:]
    # Every later proposal reads part of its prompt from the cache...
    assert all(e["cache_read_tokens"] > 0 for e in later)
    # ...and one that follows a discarded experiment rewrites none of the hour-long prefix.
    after_discard = [e for prev, e in zip(experiments, later) if prev["outcome"] != "keep"]
    assert after_discard and all(e["cache_write_1h_tokens"] == 0 for e in after_discard)
    # Caching makes the session cheaper than the same tokens uncached.
    assert data["total_usd"] < sum(e["uncached_cost_usd"] for e in experiments)
    assert data["mean_usd"] == data["total_usd"] / 20
