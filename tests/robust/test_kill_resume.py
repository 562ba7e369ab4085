"""kill -9 of a real `ar-tui run --headless` during the baseline's last repeat
and during a candidate's third run: the resume counts every run that
finished, runs again only the cut one (with its seed), and decides as an
uninterrupted night does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ar_tui.core import events as ev
from ar_tui.core.records.ledger import read_events, read_results
from tests.conftest import ROOT, make_target

# Seed noise (sd about 1e-3) larger than the change's gain, so the candidate
# is run again; the run whose seed is KILL_SEED hangs until the engine is killed.
NOISY_TRAIN = textwrap.dedent(
    """\
    import os, time
    LR = 0.5
    WIDTH = 64
    seed = int(os.environ["AR_SEED"])
    if os.environ.get("KILL_SEED") == str(seed) and not os.path.exists(os.environ["RESUMED"]):
        open(os.environ["REACHED"], "w").close()
        time.sleep(120)
    noise = ((seed * 7919) % 101 - 50) * 4e-5
    print(f"val_bpb: {1.0 - 0.008 * (LR - 0.5) + (WIDTH - 64) * 1e-3 + noise:.6f}")
    """
)


def night(target: Path, run_dir: Path, env: dict) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ar_tui.cli", "run", "--headless", "--target", str(target), "--tag", "night",
           "--run-dir", str(run_dir), "--agent", "offline", "--unattended", "--baseline-runs", "3",
           "--lookahead", "0", "--max-experiments", "1", "--sandbox", "off"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def decisions(run_dir: Path) -> list[tuple]:
    return [(r.exp, r.status, r.metric) for r in read_results(run_dir / "results.tsv")[1]]


def started(run_dir: Path, exp: int) -> list[int]:
    return [e.attempt for e in read_events(run_dir / "events.jsonl") if isinstance(e, ev.ExperimentStarted)
            and e.exp == exp]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[list[tuple], list[int]]:
    root = tmp_path_factory.mktemp("whole")
    target = make_target(root / "target", train=NOISY_TRAIN)
    env = dict(os.environ, AR_TUI_HOME=str(root / "home"), RESUMED=str(root / "none"), REACHED=str(root / "r"))
    out, _ = night(target, root / "run", env).communicate(timeout=180)
    assert "stopped: max experiments (1) reached" in out, out
    return decisions(root / "run"), started(root / "run", 1)


@pytest.mark.parametrize("kill_seed, exp, attempt", [(3, 0, 3), (1003, 1, 3)],
                         ids=["baseline's last repeat", "candidate's third run"])
def test_a_kill_during_a_run_loses_only_that_run(tmp_path: Path, uninterrupted, kill_seed: int, exp: int,
                                                 attempt: int) -> None:
    whole, candidate_runs = uninterrupted
    assert len(candidate_runs) >= 3, "the candidate must be run at least three times for this test"
    target = make_target(tmp_path / "target", train=NOISY_TRAIN)
    run_dir = tmp_path / "run"
    env = dict(os.environ, AR_TUI_HOME=str(tmp_path / "home"), KILL_SEED=str(kill_seed),
               RESUMED=str(tmp_path / "resumed"), REACHED=str(tmp_path / "reached"))
    engine = night(target, run_dir, env)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "reached").exists() and time.monotonic() < deadline and engine.poll() is None:
            time.sleep(0.1)
        assert (tmp_path / "reached").exists(), engine.communicate()[0] if engine.poll() is not None else ""
        engine.send_signal(signal.SIGKILL)
        engine.wait(10)
    finally:
        if engine.poll() is None:
            engine.kill()
    before = started(run_dir, exp)
    assert before[-1] == attempt
    (tmp_path / "resumed").touch()
    out, _ = night(target, run_dir, env).communicate(timeout=180)
    assert "stopped: max experiments (1) reached" in out, out
    # Only the cut run ran again, with its attempt and so its seed.
    assert started(run_dir, exp)[len(before):][:1] == [attempt]
    assert started(run_dir, exp).count(attempt) == 2
    assert len(set(started(run_dir, exp))) == len(started(run_dir, exp)) - 1
    said = [e.message for e in read_events(run_dir / "events.jsonl") if isinstance(e, ev.Notice)]
    expected = ("the baseline's 2 finished run(s) count; 1 to go" if exp == 0 else
                "experiment 1 was interrupted; running it again (2 finished run(s) count; the cut one runs again")
    assert any(m.startswith(expected) for m in said), said
    assert decisions(run_dir) == whole
