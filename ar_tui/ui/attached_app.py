"""The app attached to an engine in another process (`ar-tui attach`).

Everything is the plain app's, with the engine behind a `RemoteEngine`; what
differs is leaving. `q` detaches: the run goes on without this view. `x`
stops the run itself, as `q` does in a foreground run.
"""

from __future__ import annotations

from textual.binding import Binding

from ar_tui.ui.app import ArTuiApp
from ar_tui.ui.confirm_screen import ConfirmScreen


class AttachedApp(ArTuiApp):
    # Same keys as the plain app's, relabelled: the footer must still fit 80 columns.
    BINDINGS = [
        Binding("q", "request_quit", "detach"),
        Binding("x", "stop_run", "stop"),
    ]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
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
        # After x the run is ending: there is nothing to leave running.
        if self._stop_requested and not isinstance(self.screen, ConfirmScreen):
            self.exit()
            return
        super().action_request_quit()
