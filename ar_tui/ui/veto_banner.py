"""The countdown of an attended experiment waiting in its veto window."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from ar_tui.core import events as ev
from ar_tui.core.control.view import RunView


class VetoBanner(Static):
    DEFAULT_CSS = """
    VetoBanner { display: none; }
    VetoBanner.-active { display: block; }
    """

    _shown: Text | None = None

    def show(self, view: RunView, slot_index: int, now: float) -> None:
        slot = view.slots[slot_index] if 0 <= slot_index < len(view.slots) else None
        waiting = slot is not None and slot.state == ev.STATE_VETO_WINDOW and slot.veto_deadline is not None
        if waiting != self.has_class("-active"):
            self.set_class(waiting, "-active")
        if not waiting:
            return
        left = max(0, int(slot.veto_deadline - now + 0.999))
        line = Text()
        line.append(f" exp {slot.exp} starts in {left} s ", style="bold reverse")
        line.append(f" {slot.description}  ")
        line.append("enter", style="bold")
        line.append(" start now · ")
        line.append("v", style="bold")
        line.append(" veto")
        if line != self._shown:
            self._shown = line
            self.update(line, layout=False)
