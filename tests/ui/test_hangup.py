"""The SSH connection drops under a running app: the run stops cleanly, the
process exits, and the same command resumes with nothing lost."""

from __future__ import annotations

import fcntl
import os
import pty
import subprocess
import sys
import termios
import time
from pathlib import Path

from ar_tui.core import events as ev
from ar_tui.core.records.ledger import read_events, read_results
from tests.conftest import ROOT, make_target


def _own_terminal() -> None:
    # In the child: a new session whose controlling terminal is the pty, as a
    # login shell over SSH has, so closing the master sends it SIGHUP.
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_hangup_of_the_app_stops_the_run_cleanly_and_it_resumes(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target")
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "ar_tui.cli", "run", "--target", str(target), "--tag", "hup", "--run-dir",
            str(run_dir), "--agent", "offline", "--unattended", "--baseline-runs", "1", "--max-experiments", "3"]
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, b"\x18\x00\x50\x00\x00\x00\x00\x00")  # 24 x 80
    env = dict(os.environ, TERM="xterm-256color", TINY_SLEEP="3")
    app = subprocess.Popen(args, cwd=ROOT, stdin=slave, stdout=slave, stderr=slave, env=env,
                           preexec_fn=_own_terminal)
    os.close(slave)
    os.set_blocking(master, False)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                while os.read(master, 65536):
                    pass
            except (BlockingIOError, OSError):
                pass
            events = list(read_events(run_dir / "events.jsonl"))
            if any(isinstance(e, ev.ExperimentStarted) and e.exp == 1 for e in events):
                break
            time.sleep(0.1)
        else:
            raise AssertionError("experiment 1 never started")
        os.close(master)  # the terminal hangs up
        master = -1
        returncode = app.wait(60)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
        if master >= 0:
            os.close(master)
    assert returncode == 0
    assert not (run_dir / "engine.pid").exists()
    events = list(read_events(run_dir / "events.jsonl"))
    assert isinstance(events[-1], ev.RunStopped) and events[-1].reason == "stopped by the user"
    _, rows, _ = read_results(run_dir / "results.tsv")
    assert [r.exp for r in rows] == [0]  # experiment 1 was interrupted, not decided

    resumed = subprocess.run([*args[:3], *args[3:], "--headless"], cwd=ROOT, capture_output=True, text=True,
                             timeout=120, env=dict(os.environ, TINY_SLEEP="0.05"))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "experiment 1 was interrupted; running it again" in resumed.stdout
    _, rows, _ = read_results(run_dir / "results.tsv")
    assert [r.exp for r in rows] == [0, 1, 2, 3]
