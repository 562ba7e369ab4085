"""Services: what runs beside an engine for the length of a run (the control
socket, the morning report), wired by whoever runs the engine rather than
started by the engine itself.

A service is a callable `service(engine) -> AbstractAsyncContextManager`. The
engine enters its services right after it has claimed and opened the run dir,
before RunStarted, and exits them after RunStopped has been emitted, in
reverse order. A service sees the engine as an `EngineHandle` plus `run_dir`
and `options`.

A service's failure never ends or hides the run: it is reported as a warning
Notice (persisted while the run is live; told to the observers only once the
run has stopped, since the event log then holds the run's last word) and the
other services go on. A service that raises an `ArTuiError` has worded the
line itself.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable, Iterable

from ar_tui.core import events as ev
from ar_tui.core.errors import ArTuiError

Service = Callable[[Any], contextlib.AbstractAsyncContextManager]


def _line(service: Service, exc: BaseException) -> str:
    if isinstance(exc, ArTuiError):
        return str(exc)
    name = getattr(service, "__name__", type(service).__name__)
    return f"{name} failed: {exc!r}"


class ServiceStack:
    def __init__(self, services: Iterable[Service]) -> None:
        self.services = list(services)
        self._entered: list[tuple[Service, contextlib.AbstractAsyncContextManager]] = []

    async def enter(self, engine: Any) -> None:
        for service in self.services:
            try:
                manager = service(engine)
                await manager.__aenter__()
            except Exception as exc:
                engine.emit(ev.Notice(level="warning", message=_line(service, exc)))
                continue
            self._entered.append((service, manager))

    async def exit(self, engine: Any) -> None:
        while self._entered:
            service, manager = self._entered.pop()
            try:
                await manager.__aexit__(None, None, None)
            except Exception as exc:
                notice = ev.Notice(level="warning", message=_line(service, exc))
                for observer in list(engine.observers):
                    try:
                        observer(notice)
                    except Exception as again:  # an observer's bug must not hide the run's result
                        print(f"ar-tui: an observer failed on {notice.kind}: {again!r}", file=sys.stderr)
