"""Shared pieces of the fault tests: a small tmpfs, the engine on a tiny target, what it wrote."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest

from ar_tui.agents.scripted import ScriptedProposer, ScriptStep
from ar_tui.core import events as ev
from ar_tui.core.engine import Engine, EngineOptions
from ar_tui.core.records.ledger import read_events, read_results

FAST_CONFIG = "[target]\ntime_budget = 1\ntimeout = 3\n"


@contextlib.contextmanager
def tmpfs(where: Path, size: str):
    """A real small disk: a tmpfs of `size` at `where` (CI runs as root)."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def engine_for(target: Path, run_dir: Path, steps: list[ScriptStep], **kw) -> Engine:
    opts = dict(target_dir=target, tag="f", run_dir=run_dir, attended=False, lookahead=0, baseline_runs=1,
                max_experiments=len(steps))
    opts.update(kw)
    return Engine(EngineOptions(**opts), ScriptedProposer(steps))


def events_of(run_dir: Path) -> list[ev.Event]:
    return list(read_events(run_dir / "events.jsonl"))


def assert_records_whole(run_dir: Path) -> None:
    """Every line of events.jsonl is a whole event, results.tsv has no torn row."""
    for line in (run_dir / "events.jsonl").read_bytes().splitlines(keepends=True):
        assert line.endswith(b"\n")
        ev.event_from_json(line.decode())
    _, _, torn = read_results(run_dir / "results.tsv")
    assert not torn and (run_dir / "results.tsv").read_bytes().endswith(b"\n")


def rows(run_dir: Path):
    return read_results(run_dir / "results.tsv")[1]


def notices(run_dir: Path) -> list[str]:
    return [e.message for e in events_of(run_dir) if isinstance(e, ev.Notice)]
