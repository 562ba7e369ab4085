"""Slots and lookahead: proposing while training, several runs at once, and
decisions that stay honest when results arrive out of order."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from ar_tui.agents.scripted import ScriptedProposer, ScriptStep
from ar_tui.core import events as ev
from ar_tui.core.engine import Engine, EngineOptions
from ar_tui.core.records.ledger import read_events, read_results
from tests.conftest import ROOT, git, make_target

# Two independent knobs; SLEEP sets how long a run takes.
TWO_KNOBS = textwrap.dedent(
    """\
    import os, time
    LR = 0.5  # learning rate
    LR_SLEEP = 0.0  # seconds this change makes a run take
    #
    #
    #
    WIDTH = 64  # width
    WIDTH_SLEEP = 0.0  # seconds this change makes a run take
    #
    #
    #
    time.sleep(0.05 + LR_SLEEP + WIDTH_SLEEP + float(os.environ.get("TINY_SLEEP", "0")))
    print(f"val_bpb: {(LR - 0.3) ** 2 + (WIDTH - 32) ** 2 * 1e-4 + 1.0:.6f}")
    """
)


def lr(value: str, sleep: str = "0.0") -> tuple[str, str]:
    return ("LR = 0.5  # learning rate\nLR_SLEEP = 0.0", f"LR = {value}  # learning rate\nLR_SLEEP = {sleep}")


def width(value: str, sleep: str = "0.0") -> tuple[str, str]:
    return ("WIDTH = 64  # width\nWIDTH_SLEEP = 0.0", f"WIDTH = {value}  # width\nWIDTH_SLEEP = {sleep}")


def engine_for(tmp_path: Path, steps: list[ScriptStep], **kw) -> tuple[Engine, Path, Path]:
    target = make_target(tmp_path / "target", train=TWO_KNOBS)
    run_dir = tmp_path / "run"
    opts = dict(target_dir=target, tag="s", run_dir=run_dir, attended=False, lookahead=1, baseline_runs=1,
                max_experiments=len(steps))
    opts.update(kw)
    return Engine(EngineOptions(**opts), ScriptedProposer(steps)), target, run_dir


def events_of(run_dir: Path, kind: type) -> list:
    return [e for e in read_events(run_dir / "events.jsonl") if isinstance(e, kind)]


def step(description: str, edit: tuple[str, str]) -> ScriptStep:
    return ScriptStep(description, *edit)


async def test_prepared_proposal_is_reapplied_cleanly_on_a_new_best(tmp_path: Path) -> None:
    steps = [step("LR 0.4, slow", lr("0.4", "1.0")), step("WIDTH 40", width("40"))]
    engine, target, run_dir = engine_for(tmp_path, steps)
    await engine.run()
    ready = {e.exp: e for e in events_of(run_dir, ev.ProposalReady)}
    started = {e.exp: e for e in events_of(run_dir, ev.ExperimentStarted)}
    decisions = {e.exp: e for e in events_of(run_dir, ev.Decision)}
    # Exp 2 was prepared against the baseline while exp 1 trained ...
    assert ready[2].base_commit == started[1].parent
    assert ready[2].ts < decisions[1].ts
    # ... and, exp 1 kept, it ran on top of it, marked as prepared before exp 1's result.
    assert started[2].parent == decisions[1].commit
    assert started[2].prepared_before == [1]
    rows = read_results(run_dir / "results.tsv")[1]
    assert [(r.exp, r.status, r.prepared_before) for r in rows] == [(0, "keep", []), (1, "keep", []), (2, "keep", [1])]
    best = git(target, "show", "autoresearch/s:train.py")
    assert "LR = 0.4" in best and "WIDTH = 40" in best


async def test_a_conflicting_prepared_proposal_is_adapted_by_the_agent(tmp_path: Path) -> None:
    steps = [step("LR 0.4, slow", lr("0.4", "1.0")), step("LR 0.35", ("LR = 0.5  #", "LR = 0.35  #"))]
    engine, target, run_dir = engine_for(tmp_path, steps)
    await engine.run()
    notices = [e.message for e in events_of(run_dir, ev.Notice)]
    assert any("experiment 2 conflicts with the new best" in m for m in notices)
    adapt_call = engine.proposer.calls[-1]
    assert adapt_call.adapt_description == "LR 0.35" and "LR = 0.35" in adapt_call.adapt_diff
    assert adapt_call.adapt_conflict
    rows = read_results(run_dir / "results.tsv")[1]
    assert [(r.exp, r.status) for r in rows] == [(0, "keep"), (1, "keep"), (2, "keep")]
    assert "LR = 0.35" in git(target, "show", "autoresearch/s:train.py")


async def test_two_simultaneous_winners_are_not_both_kept_against_a_stale_best(tmp_path: Path) -> None:
    steps = [step("LR 0.4", lr("0.4", "0.5")), step("WIDTH 40", width("40", "1.5"))]
    engine, target, run_dir = engine_for(tmp_path, steps, devices=["cpu", "cpu"], lookahead=0)
    await engine.run()
    started = events_of(run_dir, ev.ExperimentStarted)
    first = {e.exp: e for e in started if e.attempt == 1}
    assert first[1].parent == first[2].parent  # both started from the baseline, in parallel
    assert {first[1].slot, first[2].slot} == {0, 1}
    decisions = [(e.exp, e.status) for e in events_of(run_dir, ev.Decision) if e.exp != 0]
    assert decisions == [(1, "keep"), (2, "rerun"), (2, "keep")]
    rerun = [e for e in started if e.exp == 2 and e.attempt == 2][0]
    assert rerun.parent != first[2].parent  # re-applied on the new best before it could be kept
    rows = read_results(run_dir / "results.tsv")[1]
    assert [(r.exp, r.status, r.metric) for r in rows] == [(0, "keep", 1.1424), (1, "keep", 1.1124),
                                                           (2, "keep", 1.0164)]
    best = git(target, "show", "autoresearch/s:train.py")
    assert "LR = 0.4" in best and "WIDTH = 40" in best


async def test_pause_with_two_slots_busy_lets_them_finish_and_starts_nothing(tmp_path: Path) -> None:
    steps = [step("slow A", lr("0.5", "1.5")), step("slow B", width("63", "1.5")), step("C", ("LR = 0.5", "LR = 0.45"))]
    engine, target, run_dir = engine_for(tmp_path, steps, devices=["cpu", "cpu"], lookahead=0)
    loop = asyncio.get_running_loop()
    paused_at: list[float] = []

    def observer(event: ev.Event) -> None:
        if isinstance(event, ev.ExperimentStarted) and event.exp == 2 and not paused_at:
            engine.pause()
            paused_at.append(time.time())
            loop.call_later(3.0, engine.resume)

    engine.subscribe(observer)
    await engine.run()
    finished = {e.exp: e for e in events_of(run_dir, ev.ExperimentFinished)}
    assert finished[1].outcome == finished[2].outcome == ev.OUTCOME_OK  # both ran to the end while paused
    resumed = [e for e in events_of(run_dir, ev.Paused) if not e.paused][0]
    later = [e for e in events_of(run_dir, ev.ExperimentStarted) if e.ts > paused_at[0] and e.exp != 2]
    assert later and all(e.ts >= resumed.ts for e in later)


async def test_veto_of_one_slot_leaves_the_other_training(tmp_path: Path) -> None:
    steps = [step("slow worse", lr("0.9", "30")), step("WIDTH 40", width("40", "1.0"))]
    engine, target, run_dir = engine_for(tmp_path, steps, devices=["cpu", "cpu"], lookahead=0)

    def observer(event: ev.Event) -> None:
        if isinstance(event, ev.ExperimentStarted) and event.exp == 2:
            engine.veto(1)

    engine.subscribe(observer)
    began = time.monotonic()
    await engine.run()
    assert time.monotonic() - began < 25
    finished = {e.exp: e for e in events_of(run_dir, ev.ExperimentFinished)}
    # Vetoed while it trained, or while its code was still being built (then it never started).
    assert 1 not in finished or finished[1].outcome == ev.OUTCOME_VETOED
    assert finished[2].outcome == ev.OUTCOME_OK
    assert sorted((r.exp, r.status) for r in read_results(run_dir / "results.tsv")[1]) == [
        (0, "keep"), (1, "veto"), (2, "keep")]


def test_kill_9_with_two_slots_busy_then_resume_loses_nothing(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target", train=TWO_KNOBS)
    run_dir = tmp_path / "run"

    def start(sleep: str) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "ar_tui.cli", "run", "--headless", "--target", str(target), "--tag", "two",
               "--run-dir", str(run_dir), "--agent", "offline", "--unattended", "--baseline-runs", "2",
               "--slots", "2", "--max-experiments", "4"]
        return subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, TINY_SLEEP=sleep), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    engine = start("2.0")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        starts = {e.exp for e in events_of(run_dir, ev.ExperimentStarted)} if (run_dir / "events.jsonl").exists() else set()
        ends = {e.exp for e in events_of(run_dir, ev.ExperimentFinished)} if starts else set()
        if len(starts - ends - {0}) == 2:
            break
        time.sleep(0.1)
    else:
        engine.kill()
        raise AssertionError("two experiments never ran at once")
    engine.send_signal(signal.SIGKILL)
    engine.wait(10)
    running = sorted(starts - ends - {0})
    before = read_results(run_dir / "results.tsv")[1]

    resumed = start("0.05")
    out, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out
    rows = read_results(run_dir / "results.tsv")[1]
    exps = [r.exp for r in rows]
    assert len(exps) == len(set(exps)) and sorted(exps) == list(range(len(exps)))
    assert rows[: len(before)] == before
    assert set(running) <= set(exps)
    for exp in running:
        assert f"experiment {exp} was interrupted" in out or any(
            f"experiment {exp} was interrupted" in e.message for e in events_of(run_dir, ev.Notice))
