"""The app shows how many notifications never arrived (ev.Delivery), on
the status line, naming no destination."""

from __future__ import annotations

from ar_tui.core import events as ev
from ar_tui.ui.app import ArTuiApp
from tests.ui.helpers import redrawn, until
from tests.ui.scripted_handle import T0, ScriptedHandle, session_events


def status_text(app: ArTuiApp) -> str:
    return str(app.status_line.render())


async def test_the_status_line_counts_undelivered_notifications() -> None:
    handle = ScriptedHandle()
    app = ArTuiApp(handle, replay=session_events(), clock=lambda: T0 + 330, machine_sampler=lambda: ["cpu"])
    async with app.run_test(size=(200, 60)) as pilot:
        await redrawn(pilot)
        assert "undelivered" not in status_text(app)
        handle.emit(ev.Delivery(undelivered=1, destination="json #1", reason="keep: refused after 4 tries"))
        handle.emit(ev.Delivery(undelivered=2, destination="slack #2", reason="end: refused after 4 tries"))
        await until(pilot, lambda: "· 2 undelivered" in status_text(app), timeout=10, what="the count on screen")
        assert "json" not in status_text(app) and "slack" not in status_text(app)
