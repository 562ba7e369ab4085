"""`ar-tui track RUN_DIR --to mlflow`: a finished night into a tracker
after the fact, by the same code the live night uses (`sync.sync_night`):
run it again and it adds only what the tracker lacks."""

from __future__ import annotations

import argparse
from pathlib import Path

from ar_tui import exit_codes
from ar_tui.core.errors import RunError, UserError
from ar_tui.core.records.rundir import RunDir
from ar_tui.track.settings import TRACKERS


def add_track_command(sub) -> None:
    track = sub.add_parser("track", help="send a finished night to MLflow, W&B or Trackio")
    track.add_argument("run_dir", type=Path)
    track.add_argument("--to", choices=TRACKERS, help="the tracker (default: [track] to in your config)")
    track.add_argument("--uri", help="the tracker's server (MLflow's tracking URI; default: [track] uri, "
                                     "else the client's own default)")
    track.add_argument("--project", help="MLflow's experiment, or the W&B/Trackio project (default: ar-tui)")


def cmd_track(args: argparse.Namespace) -> int:
    from ar_tui.track.settings import resolve_track, tracker_factory
    from ar_tui.track.sync import sync_night

    paths = RunDir(args.run_dir.resolve())
    if not paths.ledger.is_file():
        raise UserError(f"{paths.path}: not a run dir (no results.tsv)")
    if paths.is_live():
        raise RunError(f"{paths.path}: the engine is running; start it with --track to log as it goes")
    settings = resolve_track(args.to)
    settings.uri = args.uri or settings.uri
    settings.project = args.project or settings.project
    if not settings:
        raise UserError("ar-tui track: which tracker? --to mlflow, wandb or trackio")
    tracker = tracker_factory(settings)()
    try:
        result = sync_night(paths.path, tracker, final=True)
    finally:
        tracker.close()
    print(f"{settings.to}: night {result.parent_id}: {result.logged} experiments logged now, "
          f"{result.total} in all")
    return exit_codes.EXIT_OK
