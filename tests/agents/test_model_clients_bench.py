"""The two-client benchmark runs, and both clients read their prompts'
stable prefix from the cache: Anthropic's by breakpoints, OpenAI's by itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_benchmark_replays_the_same_session_on_both_clients():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "model_clients.py"), "-n", "3"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()
            if line.startswith(("anthropic ", "openai-chat "))}
    assert set(rows) == {"anthropic", "openai-chat"}
    for row in rows.values():
        cache_read, usd = float(row[5]), float(row[8])
        assert cache_read > 0 and usd > 0
