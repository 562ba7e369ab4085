"""The notifications of a night, as a service of the engine (see
`ar_tui.core.engine.facade.Service`): it observes the events, turns the
moments worth a message into messages (`rules.NightWatch`) and hands them to
the `Outbox`, which sends them in the background. Nothing here can block or
stop the engine: an observer only queues, and a destination that is down
costs its own retries and a count of what never arrived (`ev.Delivery`,
which the app's status line shows).

Listed before the report's service, it is left after it: the end message
names the report that has just been written.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, AsyncIterator, Callable

from ar_tui.core import events as ev
from ar_tui.core.records.rundir import RunDir
from ar_tui.notify.delivery import Outbox, destinations
from ar_tui.notify.rules import NightWatch
from ar_tui.notify.settings import NotifySettings

STALL_CHECK_S = 1.0


def notify_service(settings: NotifySettings) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def service(engine: Any) -> AsyncIterator[None]:
        watch = NightWatch(crash_streak=settings.crash_streak, stall_after=settings.stall_after)

        def undelivered(total: int, label: str, why: str) -> None:
            engine.emit(ev.Delivery(undelivered=total, destination=label, reason=why))

        outbox = Outbox(destinations(settings.urls), attempts=settings.attempts, backoff_s=settings.backoff_s,
                        timeout_s=settings.timeout_s, on_undelivered=undelivered)
        outbox.start()

        def observe(event: ev.Event) -> None:
            for message in watch.observe(event):
                outbox.post(message)

        async def watch_for_stalls() -> None:
            while True:
                await asyncio.sleep(STALL_CHECK_S)
                for message in watch.stalled(time.time()):
                    outbox.post(message)

        unsubscribe = engine.subscribe(observe)
        stalls = asyncio.create_task(watch_for_stalls(), name="notify stalls")
        try:
            yield
        finally:
            stalls.cancel()
            unsubscribe()
            report = RunDir(engine.run_dir.path).report
            for message in watch.end(str(report) if report.is_file() else None):
                outbox.post(message)
            await outbox.close(settings.grace_s)

    return service
