"""How a signal stops a run: the same for `run --headless`, the detached
engine and the app, so a kill from a supervisor, a dropped SSH connection and
Ctrl-C all end a night the same resumable way.

Toolkit-free: the app and the CLI both install it, neither through the other.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Protocol

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


class Stoppable(Protocol):
    def request_stop(self, now: bool = False) -> None: ...


def install_stop_signals(engine: Stoppable) -> None:
    """SIGTERM, SIGHUP (the SSH connection dropped) and Ctrl-C stop the run
    cleanly: running experiments are interrupted and stay in flight, so the
    same command resumes them. Call it on the loop the engine runs on."""
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, engine.request_stop, True)
