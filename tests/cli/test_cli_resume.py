"""A run remembers how it was started, through real `ar-tui` child processes
on a tiny real target: `run --run-dir DIR` alone resumes it, budgets may be
raised, a conflicting option is refused in one line, and the headless
summary says where the report is and how to open the app."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ar_tui.core import events as ev
from ar_tui.core.records.ledger import read_events, read_results
from ar_tui.core.records.rundir import RunDir
from tests.conftest import ROOT, make_target


def ar_tui(*args: object, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ar_tui.cli", *map(str, args)], cwd=ROOT, env=dict(os.environ),
                          capture_output=True, text=True, timeout=timeout)


def refused(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ar-tui: ") and expected in lines[0], result.stderr


def test_run_dir_alone_resumes_with_the_stored_options(tiny_target: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = ar_tui("run", "--headless", "--target", tiny_target, "--tag", "night", "--run-dir", run_dir,
                   "--agent", "offline", "--seed", "5", "--unattended", "--baseline-runs", "1", "--lookahead", "0",
                   "--max-experiments", "1")
    assert first.returncode == 0, first.stdout + first.stderr
    stored = json.loads(RunDir(run_dir).options.read_text())
    assert (stored["target"], stored["tag"], stored["agent"], stored["seed"]) == (str(tiny_target.resolve()),
                                                                                  "night", "offline", 5)
    assert (stored["attended"], stored["baseline_runs"], stored["max_experiments"]) == (False, 1, 1)
    assert stored["executor"] == "local" and stored["devices"] == ["cpu"]

    # The headless summary ends with where to look next.
    tail = first.stdout.strip().splitlines()[-4:]
    assert tail == [f"report: {RunDir(run_dir.resolve()).report}", f"chart: {RunDir(run_dir.resolve()).chart}",
                    f"open it in the app (it goes on if a budget is left): ar-tui run --run-dir {run_dir.resolve()}",
                    f"next: ar-tui finalize {run_dir.resolve()} --ablate  (a clean branch and PR.md; which changes "
                    "still matter on top of the others)"]
    assert RunDir(run_dir).report.is_file() and RunDir(run_dir).chart.is_file()

    # Nothing but the run dir and a raised budget: same target, tag, agent, mode.
    again = ar_tui("run", "--headless", "--run-dir", run_dir, "--max-experiments", "2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"resuming run night on {tiny_target.resolve()} (offline, unattended" in again.stdout
    _, rows, _ = read_results(RunDir(run_dir).ledger)
    assert [r.exp for r in rows] == [0, 1, 2]
    started = [e for e in read_events(RunDir(run_dir).events) if isinstance(e, ev.RunStarted)]
    assert [(e.tag, e.agent, e.attended, e.max_experiments) for e in started] == [
        ("night", "offline", False, 1), ("night", "offline", False, 2)]
    assert json.loads(RunDir(run_dir).options.read_text())["max_experiments"] == 2

    # Another agent or another target would not be the same run: one line, nothing touched.
    before = RunDir(run_dir).options.read_text(), RunDir(run_dir).ledger.read_text()
    refused(ar_tui("run", "--headless", "--run-dir", run_dir, "--agent", "claude"),
            "was started with --agent offline, not --agent claude")
    other = make_target(tmp_path / "other")
    refused(ar_tui("run", "--headless", "--run-dir", run_dir, "--target", other),
            f"was started with --target {tiny_target.resolve()}, not --target {other.resolve()}")
    assert (RunDir(run_dir).options.read_text(), RunDir(run_dir).ledger.read_text()) == before


def test_an_unknown_executor_is_refused_before_anything_starts(tiny_target: Path, tmp_path: Path) -> None:
    result = ar_tui("run", "--headless", "--target", tiny_target, "--run-dir", tmp_path / "run", "--agent", "offline",
                    "--executor", "slurm")
    refused(result, "unknown executor 'slurm'; known: local, ray")
    assert not RunDir(tmp_path / "run").has_records()


def test_a_first_start_that_was_refused_binds_nothing(tiny_target: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (tiny_target / "train.py").write_text("LR = 0.1\n")  # a dirty tree: refused
    refused(ar_tui("run", "--headless", "--target", tiny_target, "--run-dir", run_dir, "--agent", "offline"),
            "uncommitted changes")
    clean = make_target(tmp_path / "clean")
    result = ar_tui("run", "--headless", "--target", clean, "--run-dir", run_dir, "--agent", "offline", "--unattended",
                    "--baseline-runs", "1", "--max-experiments", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(RunDir(run_dir).options.read_text())["target"] == str(clean.resolve())


def test_the_search_strategy_is_stored_and_cannot_change_at_resume(tiny_target: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = ar_tui("run", "--headless", "--target", tiny_target, "--run-dir", run_dir, "--agent", "offline",
                   "--unattended", "--baseline-runs", "1", "--lookahead", "0", "--max-experiments", "1",
                   "--strategy", "tree")
    assert first.returncode == 0, first.stdout + first.stderr
    # The engine's own defaults are stored beside the flag given, so none can switch at resume.
    assert json.loads(RunDir(run_dir).options.read_text())["extra"] == {
        "strategy": "tree", "migrate_every": 8, "max_runs": 4, "confidence": 0.95, "sandbox": "auto"}
    refused(ar_tui("run", "--headless", "--run-dir", run_dir, "--strategy", "islands"),
            "was started with --strategy tree, not --strategy islands")
    # A run started without --strategy stores the measured default, so it binds too.
    other = tmp_path / "other"
    plain = ar_tui("run", "--headless", "--target", make_target(tmp_path / "t2"), "--run-dir", other, "--agent",
                   "offline", "--unattended", "--baseline-runs", "1", "--max-experiments", "0")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert json.loads(RunDir(other).options.read_text())["extra"]["strategy"] == "tree"
    refused(ar_tui("run", "--headless", "--run-dir", other, "--strategy", "greedy"),
            "was started with --strategy tree, not --strategy greedy")


def test_example_and_target_are_one_target(tiny_target: Path, tmp_path: Path) -> None:
    refused(ar_tui("run", "--headless", "--target", tiny_target, "--example", "forecast", "--run-dir", tmp_path / "r"),
            "--target and --example name two targets; give one")
    refused(ar_tui("run", "--headless", "--example", "nope", "--run-dir", tmp_path / "r"), "no example 'nope'")
