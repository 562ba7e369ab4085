"""The run dir's disk running full: the engine waits instead of stopping.

A write of a record that the disk refuses (`DiskFull`) writes nothing
(ar_tui.core.records.ledger), so it can simply be tried again later. Until then the
engine pauses: no run starts, no proposal is asked for, the events it emits
reach the views at once and wait in memory for the disk, in order, and the
one line `disk full: 0 MiB free on /mnt; waiting` is on every view. A watcher
tries again every `POLL_S` seconds; once every waiting record is written the
night goes on by itself. A stop (the user's, or the deadline of an
unattended night) ends the wait: what could not be written then is what a
resume runs again.

The guard belongs to the opened run (`Run.disk`); it waits with the
scheduler's waits (`bind`), so that a stop or space coming back wakes every
slot at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path
from typing import Awaitable, Callable, TypeVar

from ar_tui.core import events as ev
from ar_tui.core.engine.parts import Steering
from ar_tui.core.records.ledger import DiskFull, EventLog

# Below this much free space no run starts: its log, its worktree's files and
# the records of its decision would not fit.
MIN_FREE_BYTES = 4 << 20
POLL_S = 1.0

T = TypeVar("T")


def mount_point(path: Path) -> Path:
    path = Path(path).resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0


class DiskGuard:
    def __init__(self, path: Path, event_log: EventLog, steering: Steering, emit: Callable[[ev.Event], None],
                 stop: Callable[..., None]) -> None:
        self.path = path
        self.event_log = event_log
        self.steering = steering
        self.emit = emit
        self.stop = stop  # the facade's Engine.stop
        self.unwritten: list[ev.Event] = []
        self.unsaved_state: Callable[[], None] | None = None  # the state file's write, waiting for room
        self.full = False
        self._watcher: asyncio.Task | None = None
        self._notify: Callable[[], None] = lambda: None
        self._wait_for: Callable[[Callable[[], bool]], Awaitable[None]] | None = None

    def bind(self, notify: Callable[[], None], wait_for: Callable[[Callable[[], bool]], Awaitable[None]]) -> None:
        """The scheduler's wake-up and wait (Scheduler.__init__ binds them)."""
        self._notify, self._wait_for = notify, wait_for

    def line(self) -> str:
        return f"disk full: {free_bytes(self.path) >> 20} MiB free on {mount_point(self.path)}; waiting"

    # ------------------------------------------------------------------ writing

    def persist(self, event: ev.Event) -> None:
        """Write `event` to events.jsonl, or keep it (in order) for when the
        disk has room again."""
        if self.unwritten:
            self.unwritten.append(event)
            return
        try:
            self.event_log.write(event)
        except DiskFull:
            self.unwritten.append(event)
            self.hit()

    def save_state(self, write: Callable[[], None]) -> None:
        try:
            write()
        except DiskFull:
            self.unsaved_state = write
            self.hit()

    async def write_when_space(self, write: Callable[[], T]) -> T:
        """Run a write that must happen (a ledger row, a proposal's diff),
        waiting for space as often as the disk refuses it."""
        while True:
            try:
                return write()
            except DiskFull:
                self.hit()
                await self.wait()

    def _flush(self) -> None:
        """Write what waited; raises DiskFull when the disk still refuses."""
        while self.unwritten:
            self.event_log.write(self.unwritten[0])
            self.unwritten.pop(0)
        write, self.unsaved_state = self.unsaved_state, None
        if write is not None:
            try:
                write()
            except DiskFull:
                self.unsaved_state = write
                raise

    def close_log(self) -> None:
        """At the end of the run: write what still can be, and close events.jsonl."""
        with contextlib.suppress(DiskFull):
            self._flush()
        self.event_log.close()

    # ------------------------------------------------------------------ waiting

    def hit(self) -> None:
        """The disk refused a write: pause until it takes them again."""
        if self.full:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # opening the run dir, in a thread: nothing to wait in yet
            raise DiskFull(self.line()) from None
        self.full = True
        self.emit(ev.Notice(level="error", message=self.line()))
        self._watcher = loop.create_task(self._watch())
        self._notify()

    async def ready(self) -> bool:
        """Before a run starts: wait while the disk is (nearly) full. False:
        the engine stopped while it waited."""
        if not self.full and free_bytes(self.path) < MIN_FREE_BYTES:
            self.hit()
        try:
            await self.wait()
        except DiskFull:
            return False
        return True

    async def wait(self) -> None:
        """Return once the disk takes writes again; DiskFull when the engine
        stops first (a stop by the user, or an unattended night's deadline)."""
        while self.full:
            if self.steering.stopping:
                raise DiskFull(f"{self.line().removesuffix('; waiting')}; stopped while waiting")
            if self._wait_for is None:
                await asyncio.sleep(POLL_S)
                continue
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wait_for(lambda: not self.full or self.steering.stopping), POLL_S)

    async def _watch(self) -> None:
        try:
            while True:
                await asyncio.sleep(POLL_S)
                if self.steering.stopping:
                    return
                if free_bytes(self.path) < MIN_FREE_BYTES:
                    continue
                try:
                    self._flush()
                except DiskFull:
                    continue
                break
            self.full = False
            free = free_bytes(self.path) >> 20
            self.emit(ev.Notice(level="info", message=f"disk space is back: {free} MiB free on "
                                                      f"{mount_point(self.path)}; going on"))
            self._notify()
        except Exception as exc:  # the watcher must not die silently: the engine would wait forever
            self.full = False
            self.stop(f"waiting for disk space failed: {exc!r:.200}", now=True, error=True)

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
