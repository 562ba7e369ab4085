"""Verification fills every slot: the night's closing confirmations and an
ablation's runs train on both slots at once, and an ablation killed with
kill -9 resumes from what it recorded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ar_tui.core import events as ev
from ar_tui.core.records.ledger import read_events
from tests.finalize.synthetic import finalize, finalize_command, finalize_env, flip, night


def overlapping_slots(run_dir: Path, description_starts: str) -> tuple[set[int], bool]:
    """The slots that ran runs whose description starts so, and whether a run
    on one slot started before a run on the other had finished (by the order
    of the events, not by clocks)."""
    running: dict[int, int] = {}  # slot -> exp of the run it holds
    slots: set[int] = set()
    overlapped = False
    for event in read_events(run_dir / "events.jsonl"):
        if isinstance(event, ev.ExperimentStarted) and event.description.startswith(description_starts):
            slots.add(event.slot)
            if any(slot != event.slot for slot in running):
                overlapped = True
            running[event.slot] = event.exp
        elif isinstance(event, ev.ExperimentFinished) and running.get(event.slot) == event.exp:
            del running[event.slot]
    return slots, overlapped


async def test_confirmations_and_ablation_train_on_both_slots(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYN_SLEEP", "0.4")
    _, run_dir, engine = await night(tmp_path, steps=[flip("GAIN_A"), flip("GAIN_B")], devices=["cpu", "cpu"],
                                     baseline_runs=4)
    confirmations = [e for e in read_events(run_dir / "events.jsonl")
                     if isinstance(e, ev.ExperimentStarted) and e.description.startswith("confirming ")]
    assert len(confirmations) >= 2
    assert len({e.attempt for e in confirmations}) == len(confirmations)  # each its own seed and log
    assert overlapping_slots(run_dir, "confirming ") == ({0, 1}, True)
    result = finalize(run_dir, "--ablate", "--repeats", "2", SYN_SLEEP="0.4")
    assert result.returncode == 0, result.stderr + result.stdout
    assert overlapping_slots(run_dir, "ablation: ") == ({0, 1}, True)


def run_lines(run_dir: Path) -> list[dict]:
    path = run_dir / "ablation.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["kind"] == "run"]


async def test_an_ablation_killed_with_kill_9_resumes_where_it_stopped(tmp_path: Path) -> None:
    _, run_dir, _ = await night(tmp_path, steps=[flip("GAIN_A"), flip("NO_EFFECT"), flip("GAIN_B")])
    process = subprocess.Popen(finalize_command(run_dir, "--ablate", "--repeats", "3"),
                               env=finalize_env(SYN_SLEEP="0.3"), start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(run_lines(run_dir)) < 4 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = run_lines(run_dir)
    assert 4 <= len(before) < 15  # 5 variants x 3 repeats: it was killed half way
    result = finalize(run_dir, "--ablate", "--repeats", "3")
    assert result.returncode == 0, result.stderr + result.stdout
    after = run_lines(run_dir)
    assert after[:len(before)] == before  # nothing recorded was run again
    counts = {name: sum(1 for r in after if r["variant"] == name and r["metric"] is not None)
              for name in {r["variant"] for r in after}}
    assert counts == {"full": 3, "baseline": 3, "without 1": 3, "without 2": 3, "without 3": 3}
    for name in counts:  # fresh seeds only: a resumed variant never repeats one
        seeds = [r["seed"] for r in after if r["variant"] == name and r["metric"] is not None]
        assert len(set(seeds)) == len(seeds)
    marks = (run_dir / "ablation.tsv").read_text()
    assert "still matters\t" in marks and "no measurable effect" in marks
