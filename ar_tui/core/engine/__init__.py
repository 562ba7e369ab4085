"""The experiment engine: propose, commit, run, judge, keep or revert, record.

`Engine` (in `facade`) is the one entry point: it emits, takes human control
and runs. The parts behind it are small modules of their own, and none of
them holds the engine:

- `opening`: validate the target, claim the run dir, rebuild the state; the
  `Run` it returns is what the parts share (options, run dir, ledger, git,
  trial, slots, state, steering, emit, stop);
- `scheduler`: the proposer loop, the slots, the lookahead and veto window;
- `measuring`: the baseline's runs, the re-measures and the closing
  confirmations, spread over the scheduler's slots;
- `plateau`: noticing a night that stopped finding gains, and acting on it
  (`--on-plateau`); `combine`: near-misses tried together, as a proposal source;
- `trial`: one run of the target and its evaluation;
- `judging`: the noise band, the sequential design, the strategy's verdicts;
- `strategies`: what a finished run means (greedy, tree, islands);
- `recorder`: the whole write-up of a decision (row, diff, event, state
  file, node refs) and of the night;
- `accounting`: tokens, GPU time and dollars;
- `disk`: a full run-dir disk pauses the run until there is room (`Run.disk`);
- `finished_runs`: what a killed engine had measured, counted on resume;
- `services`: what runs beside the engine (the control socket, the report).
"""

from __future__ import annotations

from typing import Awaitable, Callable

from ar_tui.core import events as ev
from ar_tui.core.engine.facade import Engine, Service
from ar_tui.core.engine.parts import Candidate, EngineOptions
from ar_tui.core.engine.strategies.base import Strategy, Verdict
from ar_tui.core.engine.strategies.greedy import GreedyStrategy
from ar_tui.core.errors import UserError
from ar_tui.core.records.rundir import PID_FILE, engine_pid

RunEngine = Callable[[], Awaitable[ev.RunStopped]]

__all__ = ["Candidate", "Engine", "EngineOptions", "GreedyStrategy", "PID_FILE", "RunEngine", "Service", "Strategy",
           "UserError", "Verdict", "engine_pid"]
