"""What runs beside an engine (its control socket, the morning report): async
context managers, entered once the run dir is claimed and opened, and left
after the run has stopped. A service that fails to start, or to stop, is a
warning to the viewers; it never stops the night's research nor hides its
result."""

from __future__ import annotations

import contextlib
from typing import Any, AsyncContextManager, Callable, Iterable

from ar_tui.core import events as ev
from ar_tui.core.control.handle import Observer

# A service is handed the engine (`ar_tui.core.engine.Engine`) once its run dir is claimed and opened.
Service = Callable[[Any], AsyncContextManager[object]]


async def enter_services(stack: contextlib.AsyncExitStack, services: Iterable[Service], engine: Any,
                         observers: list[Observer], emit: Callable[[ev.Event], None]) -> None:
    for service in services:
        try:
            await stack.enter_async_context(_guarded(observers, service(engine)))
        except Exception as exc:
            emit(ev.Notice(level="warning", message=f"a service did not start: {exc}"))


@contextlib.asynccontextmanager
async def _guarded(observers: list[Observer], manager: AsyncContextManager[object]):
    """Enter a service (a failure to start propagates, and is reported by the
    caller); a failure on the way out is reported to the observers and never
    hides the run's result."""
    await manager.__aenter__()
    try:
        yield
    except BaseException as exc:
        await manager.__aexit__(type(exc), exc, exc.__traceback__)
        raise
    try:
        await manager.__aexit__(None, None, None)
    except Exception as exc:
        for observer in list(observers):
            with contextlib.suppress(Exception):
                observer(ev.Notice(level="warning", message=f"{exc}"))
