"""The GPU price through real `ar-tui` child processes on a tiny real target:
stored with the run so that `run --run-dir DIR` alone resumes at the same
rate, refused when changed, printed by the headless summary and by
`ar-tui report --json`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ar_tui.core import events as ev
from ar_tui.core.records.ledger import read_events, read_results
from ar_tui.core.records.rundir import RunDir
from tests.cli.test_cli_resume import ar_tui, refused

RATE = 7.5


def test_resume_keeps_the_rate_from_the_stored_options(tiny_target: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = ar_tui("run", "--headless", "--target", tiny_target, "--run-dir", run_dir, "--agent", "offline",
                   "--unattended", "--baseline-runs", "1", "--lookahead", "0", "--max-experiments", "1",
                   "--gpu-usd-per-hour", RATE)
    assert first.returncode == 0, first.stdout + first.stderr
    assert json.loads(RunDir(run_dir).options.read_text())["extra"]["gpu_usd_per_hour"] == RATE
    # The summary gives tokens, GPU time and their sum.
    whole = next(line for line in first.stdout.splitlines() if line.startswith("whole cost: "))
    assert whole.startswith("whole cost: tokens $0.0000 + GPU $") and "; per experiment $" in whole

    again = ar_tui("run", "--headless", "--run-dir", run_dir, "--max-experiments", "2", "--budget-usd", "5",
                   "--budget-covers", "all")  # what the budget covers may change, like the budget
    assert again.returncode == 0, again.stdout + again.stderr
    started = [e for e in read_events(RunDir(run_dir).events) if isinstance(e, ev.RunStarted)]
    assert [(e.gpu_usd_per_hour, e.budget_covers) for e in started] == [(RATE, "tokens"), (RATE, "all")]
    _, rows, _ = read_results(RunDir(run_dir).ledger)
    assert [r.exp for r in rows] == [0, 1, 2]
    held: dict[int, float] = {}
    for event in read_events(RunDir(run_dir).events):
        if isinstance(event, ev.ExperimentFinished):
            held[event.exp] = held.get(event.exp, 0.0) + event.held_seconds
    for row in rows:
        assert row.gpu_usd == pytest.approx(held[row.exp] * RATE / 3600, abs=2e-6)

    # Every row is priced at the rate the run started with: another is refused.
    refused(ar_tui("run", "--headless", "--run-dir", run_dir, "--gpu-usd-per-hour", "9"),
            "was started with --gpu-usd-per-hour 7.5, not --gpu-usd-per-hour 9.0")

    report = ar_tui("report", run_dir, "--json")
    assert report.returncode == 0, report.stderr
    figures = json.loads(report.stdout)
    gpu = sum(held.values()) * RATE / 3600
    assert figures["gpu_cost_usd"] == pytest.approx(gpu)
    assert figures["token_cost_usd"] == 0.0
    assert figures["total_cost_usd"] == pytest.approx(gpu)
    assert "| GPU cost | $" in RunDir(run_dir).report.read_text()


def test_a_bad_price_is_refused_in_one_line(tiny_target: Path, tmp_path: Path) -> None:
    result = ar_tui("run", "--headless", "--target", tiny_target, "--run-dir", tmp_path / "run", "--agent", "offline",
                    "--gpu-usd-per-hour", "-2")
    assert result.returncode == 2 and "--gpu-usd-per-hour" in result.stderr
    covers = ar_tui("run", "--headless", "--target", tiny_target, "--run-dir", tmp_path / "run2", "--agent",
                    "offline", "--unattended", "--budget-usd", "1", "--budget-covers", "all")
    refused(covers, "--budget-covers all needs a GPU price")
