"""What a run stores of --track and --notify (the CLI's own resolution, no
engine): the tracker is a run option, kept for a resume and changeable at
one; the notify URLs are secrets and are never written with the options."""

from __future__ import annotations

from pathlib import Path

from ar_tui import run_options
from ar_tui.cli import build_parser, resolve_run, store_options
from ar_tui.core.records.rundir import RunDir
from tests.conftest import make_target

SECRET = "hook-s3cr3t"


def _resolve_and_store(*argv: object):
    args = build_parser().parse_args(["run", *map(str, argv)])
    run_dir, options = resolve_run(args)
    store_options(run_dir, options)
    return run_dir, options


def test_track_is_stored_with_the_run_and_notify_urls_are_not(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target")
    run_dir, options = _resolve_and_store("--target", target, "--run-dir", tmp_path / "run", "--agent", "offline",
                                          "--track", "wandb", "--notify", f"json://127.0.0.1:9/{SECRET}")
    assert options.extra["track"] == "wandb"
    assert "notify" not in options.extra
    assert run_options.load(run_dir).extra["track"] == "wandb"
    for path in RunDir(run_dir).path.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path


def test_a_resume_keeps_the_stored_tracker_and_may_change_it(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target")
    run_dir, _ = _resolve_and_store("--target", target, "--run-dir", tmp_path / "run", "--agent", "offline",
                                    "--track", "mlflow")
    RunDir(run_dir).ledger.write_text("")  # the run has records: its stored options bind
    _, resumed = _resolve_and_store("--run-dir", run_dir)
    assert resumed.extra["track"] == "mlflow"
    _, changed = _resolve_and_store("--run-dir", run_dir, "--track", "trackio")
    assert changed.extra["track"] == "trackio"
    assert run_options.load(run_dir).extra["track"] == "trackio"
