"""The boundary between the engine and whoever watches it.

`EngineHandle` is what the Textual app, the headless printer and the socket
server hold: a way to observe events and to send human decisions. The local
engine implements it directly; an attached app gets a remote implementation
over the run's Unix socket (`client.RemoteEngine`), so the app cannot tell the
two apart.
"""

from __future__ import annotations

from typing import Callable, Protocol

from ar_tui.core import events as ev

Observer = Callable[[ev.Event], None]


class EngineHandle(Protocol):
    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Call `observer` for every event from now on; returns an unsubscribe."""
        ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def set_attended(self, attended: bool) -> None: ...

    def veto(self, exp: int | None = None) -> bool:
        """Abort experiment `exp` (default: the one running or waiting in the
        veto window on the focused slot), or reject a prepared proposal.
        Returns False when there was nothing to veto."""
        ...

    def force_keep(self, exp: int | None = None) -> bool:
        """Keep `exp` (default: the running one) whatever its metric, unless it crashes."""
        ...

    def start_now(self, exp: int | None = None) -> bool:
        """End the veto window of `exp` early: run it now."""
        ...

    def request_stop(self, now: bool = False) -> None:
        """Stop after the running experiments finish; `now` aborts them."""
        ...
