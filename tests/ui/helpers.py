"""Shared pieces of the UI tests: a tiny real target whose experiments can be
made slow, the engine wired to the app the way the CLI wires it, and a wait
that polls the app instead of sleeping a guessed time."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import Callable

from textual.pilot import Pilot

from ar_tui.agents.scripted import ScriptedProposer, ScriptStep
from ar_tui.core.control.server import control_service
from ar_tui.core.engine import Engine, EngineOptions
from ar_tui.core.records.ledger import read_events, read_results
from ar_tui.ui.app import ArTuiApp
from tests.conftest import make_target

# LR sets the metric; SLEEP sets how long an experiment "trains", printing a
# progress line every 20 ms, so a test can catch an experiment while it runs.
UI_TRAIN = textwrap.dedent(
    """\
    import time
    LR = 0.5
    SLEEP = 0.05
    deadline = time.time() + SLEEP
    step = 0
    while True:
        step += 1
        print(f"step {step} loss {LR:.3f}", flush=True)
        if time.time() >= deadline:
            break
        time.sleep(0.02)
    print("---")
    print(f"val_bpb: {(LR - 0.3) ** 2 + 1.0:.6f}")
    """
)
UI_CONFIG = "[target]\ntime_budget = 5\ntimeout = 120\n"


def step(description: str, lr: float, sleep: float = 0.05, on: tuple[float, float] = (0.5, 0.05)) -> ScriptStep:
    """Set LR and SLEEP, starting from the values `on` of the commit it applies to."""
    return ScriptStep(description, f"LR = {on[0]}\nSLEEP = {on[1]}", f"LR = {lr}\nSLEEP = {sleep}")


def ui_target(root: Path) -> Path:
    return make_target(root, train=UI_TRAIN, config=UI_CONFIG)


def engine_app(target: Path, run_dir: Path, steps: list[ScriptStep], **options) -> tuple[ArTuiApp, Engine]:
    base = dict(target_dir=target, tag="ui", run_dir=run_dir, attended=False, lookahead=0, baseline_runs=1,
                write_report=False, max_experiments=len(steps))
    base.update(options)
    engine = Engine(EngineOptions(**base), ScriptedProposer(steps), services=[control_service])
    replay = list(read_events(run_dir / "events.jsonl"))
    app = ArTuiApp(engine, run_engine=engine.run, replay=replay, log_dir=run_dir / "logs",
                   machine_sampler=lambda: ["cpu (test)"])
    return app, engine


async def redrawn(pilot: Pilot, timeout: float = 30.0) -> None:
    """Wait until everything the app has ingested so far is drawn: three
    redraws from now (the agent pane syncs every third), then the animations."""
    app = pilot.app
    target = app.redraws + 3
    await until(pilot, lambda: app.redraws >= target, timeout, what="the app to redraw")
    await pilot.wait_for_scheduled_animations()


async def until(pilot: Pilot, predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Let the app run until `predicate` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await pilot.pause(0.02)


def events_of(run_dir: Path, kind: type | None = None) -> list:
    events = list(read_events(run_dir / "events.jsonl"))
    return [e for e in events if kind is None or isinstance(e, kind)]


def ledger(run_dir: Path):
    return read_results(run_dir / "results.tsv")[1]
