"""`ar-tui run --headless` on a terminal and in a pipe: on a terminal the
running experiment's progress shows on one updating line (step, loss,
tokens per second, time left, the baseline's repeat count); in a pipe only
plain lines come out. Real runs of a tiny target through a real
pseudo-terminal."""

from __future__ import annotations

import os
import pty
import select
import struct
import subprocess
import termios
import textwrap
import fcntl
from pathlib import Path

import pytest

from ar_tui.core import events as ev
from ar_tui.headless import HeadlessPrinter
from tests.conftest import ar_tui_command, make_target

# Prints nanochat's progress line shape for a second, then the metric.
PROGRESS_TRAIN = textwrap.dedent(
    """\
    import os, time
    LR = 0.5
    seed = int(os.environ.get("AR_SEED", "0"))
    for step in range(1, 6):
        time.sleep(0.2)
        print(f"step {step:5d} | loss {7.5 - step * 0.1:.4f} | {9000 + step:8d} tok/s | {step * 20:5.1f}% | "
              f"{1.0 - step * 0.2:4.1f}s left", flush=True)
    print("---")
    print(f"val_bpb: {(LR - 0.3) ** 2 + 1.0 + (seed % 7) * 1e-3:.6f}")
    """
)
ANSI_ERASE_LINE = "\x1b[2K"


def _command(target: Path, run_dir: Path) -> list[str]:
    return [*ar_tui_command(), "run", "--headless", "--unattended", "--agent", "offline", "--target", str(target),
            "--run-dir", str(run_dir), "--baseline-runs", "3", "--max-experiments", "1", "--max-runs", "2",
            "--time-budget", "1"]


def _run_on_terminal(command: list[str], columns: int = 120) -> tuple[int, str]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = dict(os.environ, TERM="xterm-256color", COLUMNS=str(columns))
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            proc.kill()
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode("utf-8", errors="replace")


@pytest.fixture
def progress_target(tmp_path: Path) -> Path:
    return make_target(tmp_path / "target", train=PROGRESS_TRAIN)


def test_on_a_terminal_progress_updates_one_line(progress_target: Path, tmp_path: Path) -> None:
    code, out = _run_on_terminal(_command(progress_target, tmp_path / "run"))
    assert code == 0, out[-3000:]
    # The live line: which run, step, loss, throughput and time left.
    assert "baseline 2 of 3" in out
    assert "step 4" in out and "loss 7.1000" in out and "9,004 tok/s" in out and "s left" in out
    # Drawn in place (rich erases and rewrites it), not a new line per update.
    assert ANSI_ERASE_LINE in out
    assert out.count("step 4") > out.count("exp 0 [slot 0] running: baseline (repeat 2 of 3)")
    # The plain lines are still there, each naming its experiment.
    assert "exp 0 [slot 0] running: baseline (repeat 3 of 3)" in out
    assert "exp 1 [slot 0] running: LR" in out
    assert "report: " in out


def test_in_a_pipe_only_plain_lines(progress_target: Path, tmp_path: Path) -> None:
    done = subprocess.run(_command(progress_target, tmp_path / "run"), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "\x1b" not in out and "\r" not in out
    assert "tok/s" not in out  # no progress line drawn into a log
    lines = out.splitlines()
    assert "exp 0 [slot 0] running: baseline (repeat 1 of 3)" in lines
    assert "exp 0 [slot 0] running: baseline (repeat 3 of 3)" in lines
    assert any(line.startswith("baseline: ") and "mean of 3 seed-varied runs" in line for line in lines)
    assert any(line.startswith("exp 1 [slot 0] running: LR") for line in lines)


def test_the_confirmation_names_the_experiment_it_confirms_and_why() -> None:
    started = ev.ExperimentStarted(exp=0, slot=0, device="cpu", commit="c", parent="c", attempt=10,
                                   description="confirming exp 5, the best, on fresh seeds: the runs that kept it "
                                               "were picked for looking good", repeat=2, repeats=8)
    line = HeadlessPrinter.format(started)
    assert line is not None and line.startswith("confirming exp 5, the best")
    assert "picked for looking good" in line and "(repeat 2 of 8)" in line and not line.startswith("exp 0")


def test_a_night_without_a_keep_says_so_rather_than_an_interval_of_zero() -> None:
    stopped = ev.RunStopped(reason="max experiments (2) reached", experiments=2, kept=0, best_metric=2.47,
                            baseline_metric=2.47, improvement_pct=0.0, cost_usd=0.0, improvement_ci_pct=[0.0, 0.0],
                            improvement_text="0.0% better (95% interval 0.0% to 0.0%)", noise_sd=0.03, noise_dof=2)
    summary = HeadlessPrinter.format(stopped)
    assert "improvement over baseline: none (no change was kept; the best is the baseline)" in summary
    assert "interval 0.0% to 0.0%" not in summary and "noise sd 0.030000 (2 dof)" in summary


def test_an_api_wait_names_the_experiment_it_holds_up() -> None:
    line = HeadlessPrinter.format(ev.ApiWaiting(exp=4, reason="rate limited", retry_in_s=30, attempt=2, waited_s=30))
    assert line == "exp 4 waiting for the API (rate limited); retrying in 30 s"
