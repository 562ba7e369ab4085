"""Logging a night to a tracker as it runs, as a service of the engine:
after each decision it catches the tracker up from the run dir
(`sync.sync_night`, in a thread of its own: the clients block), and at the
end it adds the report and the chart and ends the night's run.

A tracker that is down costs the night nothing: one warning, and the next
decision (or the end, or `ar-tui track` the next morning) catches it up
from the ledger. Listed before the report's service, it is left after it,
so the report is there to be logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path
from typing import Any, AsyncIterator, Callable, TypeVar

from ar_tui.core import events as ev
from ar_tui.track.settings import TrackSettings, tracker_factory
from ar_tui.track.sync import SyncResult, TrackerDown, sync_night

T = TypeVar("T")


async def in_daemon_thread(work: Callable[[], T], name: str) -> T:
    """`work` in a daemon thread: unlike asyncio.to_thread's pool, a client
    stuck on a dead server cannot hold up the process's exit."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if not done.done():
            done.set_exception(error) if error is not None else done.set_result(result)

    def run() -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (work(), None)
        except BaseException as exc:
            outcome = (None, exc)
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await done


class LiveSync:
    """One tracker client for the night, used by one thread at a time."""

    def __init__(self, run_dir: Path, settings: TrackSettings, make: Callable[[], Any] | None = None) -> None:
        self.run_dir = run_dir
        self.name = settings.to or ""
        self._make = make or tracker_factory(settings)
        self._tracker: Any = None
        self._lock = threading.Lock()

    def sync(self, final: bool) -> SyncResult:
        with self._lock:
            try:
                if self._tracker is None:
                    self._tracker = self._make()
                return sync_night(self.run_dir, self._tracker, final=final)
            except TrackerDown:
                raise
            except Exception as exc:  # the client would not even start (a bad URI, say)
                raise TrackerDown(f"{self.name}: {type(exc).__name__}") from None


def track_service(settings: TrackSettings, make: Callable[[], Any] | None = None,
                  ) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """`make` builds the tracker's client (default: the one `settings.to` names)."""

    @contextlib.asynccontextmanager
    async def service(engine: Any) -> AsyncIterator[None]:
        live = LiveSync(engine.run_dir.path, settings, make)
        decided = asyncio.Event()
        down = False

        async def sync(final: bool) -> None:
            nonlocal down
            try:
                await in_daemon_thread(lambda: live.sync(final), f"track {live.name}")
            except TrackerDown as exc:
                if not down or final:
                    later = (f"`ar-tui track {engine.run_dir.path} --to {live.name}` sends the rest" if final
                             else "the night goes on; the next decision tries again")
                    engine.emit(ev.Notice(level="warning", message=f"tracker {exc}; {later}"))
                down = True
                return
            if down:
                engine.emit(ev.Notice(level="info", message=f"tracker {live.name} reached again: caught up"))
            down = False

        async def follow() -> None:
            while True:
                await decided.wait()
                decided.clear()
                await sync(final=False)

        def observe(event: ev.Event) -> None:
            if isinstance(event, ev.Decision) and event.status != "rerun":
                decided.set()

        unsubscribe = engine.subscribe(observe)
        follower = asyncio.create_task(follow(), name=f"track {live.name}")
        try:
            yield
        finally:
            unsubscribe()
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            try:
                await asyncio.wait_for(sync(final=True), settings.grace_s)
            except asyncio.TimeoutError:
                engine.emit(ev.Notice(level="warning", message=(
                    f"tracker {live.name}: no answer in {settings.grace_s:g} s at the end; "
                    f"`ar-tui track {engine.run_dir.path} --to {live.name}` sends the rest")))

    return service
