"""A terminal driver that survives its terminal hanging up.

When the SSH connection drops, writes to the terminal fail. Textual's writer
thread dies on the first failed write and its bounded queue then fills, so
the next write would block the event loop for ever and the engine could never
finish stopping. After a hang-up this driver drops writes instead.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Callable

from textual.drivers.linux_driver import LinuxDriver


class HangupSafeDriver(LinuxDriver):
    terminal_gone = False

    def write(self, data: str) -> None:
        if not HangupSafeDriver.terminal_gone:
            super().write(data)

    def close(self) -> None:
        # The writer thread may be dead with a full queue: do not wait on it.
        if not HangupSafeDriver.terminal_gone:
            super().close()


def on_hangup(loop: asyncio.AbstractEventLoop, stop: Callable[[], None]) -> None:
    """On SIGHUP: stop writing at once (a plain signal handler runs even while
    the loop is busy), then ask the engine to stop cleanly."""

    def handler(signum: int, frame: object) -> None:
        HangupSafeDriver.terminal_gone = True
        loop.call_soon_threadsafe(stop)

    signal.signal(signal.SIGHUP, handler)
