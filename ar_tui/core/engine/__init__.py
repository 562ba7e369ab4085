"""The experiment engine: propose, commit, run, judge, keep or revert, record.

`Engine` (in `facade`) is the one entry point; the parts behind it are small
modules of their own. See `facade` for the map.
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
