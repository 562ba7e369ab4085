"""The engine's service seam, with a real engine on a tiny real target:
services are entered after the run dir is claimed and before RunStarted,
exited after RunStopped in reverse order, and a failing service is a warning
that never hides the run's result."""

from __future__ import annotations

import contextlib
from pathlib import Path

from ar_tui.agents.scripted import ScriptedProposer, ScriptStep
from ar_tui.core import events as ev
from ar_tui.core.engine import Engine, EngineOptions
from ar_tui.core.errors import RunError
from ar_tui.core.records.rundir import RunDir


async def test_services_wrap_the_run_and_their_failures_are_warnings(tiny_target: Path, run_dir: Path) -> None:
    seen: list[str] = []
    engine_events: list[ev.Event] = []

    def recorder(name: str):
        @contextlib.asynccontextmanager
        async def service(engine):
            # Entered with the run dir claimed by this process, before the run is announced.
            assert engine.run_dir.engine_pid() is not None
            seen.append(f"enter {name} after {[e.kind for e in engine_events if e.kind == 'run_started']}")
            yield
            seen.append(f"exit {name} after {[e.kind for e in engine_events if e.kind == 'run_stopped']}")
        return service

    def broken_on_enter(engine):
        raise OSError("no room for a socket")

    @contextlib.asynccontextmanager
    async def broken_on_exit(engine):
        yield
        raise RunError("could not write the report: disk full")

    options = EngineOptions(target_dir=tiny_target, tag="s", run_dir=run_dir, attended=False, lookahead=0,
                            baseline_runs=1, max_experiments=1)
    engine = Engine(options, ScriptedProposer([ScriptStep("LR 0.5 -> 0.4", "LR = 0.5", "LR = 0.4")]),
                    services=[recorder("first"), broken_on_enter, broken_on_exit, recorder("last")])
    engine.subscribe(engine_events.append)
    stopped = await engine.run()

    assert stopped.reason == "max experiments (1) reached" and not stopped.error
    assert seen == ["enter first after []", "enter last after []",
                    "exit last after ['run_stopped']", "exit first after ['run_stopped']"]
    warnings = [e.message for e in engine_events if isinstance(e, ev.Notice) and e.level == "warning"]
    assert warnings == ["a service did not start: no room for a socket", "could not write the report: disk full"]
    # The result came after the failing entry and before the failing exit.
    kinds = [e.kind for e in engine_events]
    assert kinds.index("run_started") < kinds.index("run_stopped") < len(kinds) - 1
    assert RunDir(run_dir).engine_pid() is None  # released as always
