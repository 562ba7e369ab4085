"""kill -9 of a real `ar-tui run --headless`, then the same command again:
nothing lost, nothing doubled, nothing left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

from ar_tui.core import events as ev
from ar_tui.core.records.ledger import read_events, read_results
from tests.conftest import ROOT, git, make_target

# Each run starts a grandchild that outlives a killed engine unless someone ends it.
SPAWNING_TRAIN = textwrap.dedent(
    """\
    import os, subprocess, sys, time
    LR = 0.5  # learning rate
    WIDTH = 64  # model width
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    with open(os.environ["SPAWN_PIDS"], "a") as f:
        f.write(f"{child.pid}\\n")
    time.sleep(float(os.environ.get("TINY_SLEEP", "0.05")))
    child.kill()
    print(f"val_bpb: {(LR - 0.3) ** 2 + 1.0 + (WIDTH - 64) ** 2 * 1e-4:.6f}")
    """
)


def start(target: Path, run_dir: Path, env: dict, max_experiments: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ar_tui.cli", "run", "--headless", "--target", str(target), "--tag", "night",
           "--run-dir", str(run_dir), "--agent", "offline", "--unattended", "--baseline-runs", "1",
           "--lookahead", "0", "--max-experiments", str(max_experiments),
           # Unconfined, so the killed run really leaves a grandchild for the
           # orphan sweep to end (a sandbox ends it with the engine).
           "--sandbox", "off"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def running_exps(run_dir: Path) -> set[int]:
    events = list(read_events(run_dir / "events.jsonl"))
    started = {e.exp for e in events if isinstance(e, ev.ExperimentStarted)}
    done = {e.exp for e in events if isinstance(e, ev.ExperimentFinished)}
    return started - done


def test_kill_9_then_resume_loses_nothing_and_leaves_no_orphans(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target", train=SPAWNING_TRAIN)
    run_dir = tmp_path / "run"
    pids_file = tmp_path / "pids"
    env = dict(os.environ, TINY_SLEEP="1.5", SPAWN_PIDS=str(pids_file))
    engine = start(target, run_dir, env, max_experiments=3)
    try:
        wait_for(lambda: 2 in running_exps(run_dir), timeout=90)
        time.sleep(0.3)
        engine.send_signal(signal.SIGKILL)
        engine.wait(10)
    finally:
        if engine.poll() is None:
            engine.kill()
    def alive(pid: int) -> bool:
        return psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE

    # The killed engine's training run left a grandchild behind.
    assert any(alive(pid) for pid in map(int, pids_file.read_text().split()))
    _, rows_before, _ = read_results(run_dir / "results.tsv")
    assert [r.exp for r in rows_before] == [0, 1]

    resumed = start(target, run_dir, dict(env, TINY_SLEEP="0.05"), max_experiments=3)
    out, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out
    assert "resuming run night" in out

    _, rows, torn = read_results(run_dir / "results.tsv")
    assert not torn
    assert [r.exp for r in rows] == [0, 1, 2, 3]  # none lost, none doubled
    assert rows[:2] == rows_before
    events = list(read_events(run_dir / "events.jsonl"))
    assert any(isinstance(e, ev.Notice) and "experiment 2 was interrupted" in e.message for e in events)
    assert len([e for e in events if isinstance(e, ev.ExperimentStarted) and e.exp == 2]) == 2
    # Every grandchild the killed run left behind has been ended.
    assert not any(alive(pid) for pid in map(int, pids_file.read_text().split()))
    # The branch is the best kept state; the slot's worktree is clean.
    keeps = [r for r in rows if r.status == "keep"]
    assert git(target, "rev-parse", "autoresearch/night").startswith(keeps[-1].commit)
    assert git(run_dir / "worktrees" / "slot-0", "status", "--porcelain").strip() == ""
    assert not (run_dir / "engine.pid").exists()
