"""The app attached to an engine in another process (`ar-tui attach`, and
each browser tab of `ar-tui serve`).

Everything is the plain app's, with the engine behind a `RemoteEngine`; what
differs is leaving. `q` detaches: the run goes on without this view. `x`
stops the run itself, as `q` does in a foreground run. A run whose engine is
gone (finished, or died) opens read-only from its events.jsonl.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Callable

from textual.binding import Binding

from ar_tui.core import events as ev
from ar_tui.core.control.client import EngineNotRunning, RemoteEngine
from ar_tui.core.control.handle import Observer
from ar_tui.core.control.server import read_history
from ar_tui.core.records.rundir import RunDir
from ar_tui.ui.app import ArTuiApp
from ar_tui.ui.confirm_screen import ConfirmScreen

# The keys that act on an engine; a read-only view shows them greyed out.
ENGINE_ACTIONS = ("toggle_pause", "veto", "force_keep", "toggle_attended", "start_now", "stop_run")


class NoEngine:
    """The `EngineHandle` of a run nobody runs any more: every request is
    answered with a notice, and nothing is touched."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.observers: list[Observer] = []

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        self.observers.append(observer)
        return lambda: self.observers.remove(observer)

    def _refuse(self) -> bool:
        notice = ev.Notice(level="warning", message=f"no engine runs {self.run_dir}: this view is read-only")
        for observer in list(self.observers):
            observer(notice)
        return False

    def pause(self) -> None:
        self._refuse()

    def resume(self) -> None:
        self._refuse()

    def set_attended(self, attended: bool) -> None:
        self._refuse()

    def veto(self, exp: int | None = None) -> bool:
        return self._refuse()

    def force_keep(self, exp: int | None = None) -> bool:
        return self._refuse()

    def start_now(self, exp: int | None = None) -> bool:
        return self._refuse()

    def request_stop(self, now: bool = False) -> None:
        self._refuse()


class AttachedApp(ArTuiApp):
    # Same keys as the plain app's, relabelled: the footer must still fit 80 columns.
    BINDINGS = [
        Binding("q", "request_quit", "detach"),
        Binding("x", "stop_run", "stop"),
    ]

    def __init__(self, *args, read_only: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.read_only = read_only
        if read_only:
            self.sub_title = "read-only: no engine runs this run"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.read_only and action in ENGINE_ACTIONS:
            return None
        if action == "stop_run":
            if self.screen is not self.screen_stack[0]:
                return None
            return True if self._live() else None
        return super().check_action(action, parameters)

    def action_stop_run(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self._stop_requested = True
                self._bindings_dirty = True
                self.handle.request_stop(now=True)
                self.notify("stopping: the running experiments are aborted; q leaves")

        self.push_screen(
            ConfirmScreen(
                "Stop the run?",
                "Running experiments are aborted and not recorded. Everything decided so far is kept; "
                f"the run can be resumed later with its tag ({self.view.tag}).",
                yes="Stop the run",
                no="Keep running",
            ),
            answered,
        )

    def action_request_quit(self) -> None:
        # After x the run is ending, and a read-only view leaves nothing
        # running: no question to ask.
        if (self._stop_requested or self.read_only) and not isinstance(self.screen, ConfirmScreen):
            self.exit()
            return
        super().action_request_quit()


async def open_run(run_dir: Path, *, read_only_if_gone: bool = True) -> bool:
    """Run the attached app on `run_dir` until it is left: on its engine when
    one answers (history replayed, then live), else read-only from the
    history on disk. Returns whether an engine was attached. Raises
    EngineNotRunning when no engine answers and `read_only_if_gone` is False."""
    run_dir = Path(run_dir)
    remote = RemoteEngine(run_dir)
    try:
        history = await remote.connect()
    except EngineNotRunning:
        if not read_only_if_gone:
            raise
        history = await asyncio.to_thread(lambda: list(read_history(RunDir(run_dir).events, 1 << 62)))
        await AttachedApp(NoEngine(run_dir), replay=history, log_dir=run_dir / "logs", read_only=True).run_async()
        return False
    try:
        await AttachedApp(remote, replay=history, log_dir=run_dir / "logs").run_async()
    finally:
        await remote.close()
    return True
