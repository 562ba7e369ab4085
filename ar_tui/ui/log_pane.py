"""The training log of the running experiment: the tail of a bounded buffer.

A line-API widget that renders only the visible lines, so its cost per frame
does not grow with the output rate. It follows the tail unless the user has
scrolled up, and then keeps the lines they are reading in place while older
ones drop out of the buffer.
"""

from __future__ import annotations

import re

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ar_tui.ui.log_buffer import LogBuffer, SlotLog

# Escape sequences (colours, cursor moves) and other control characters would
# corrupt the screen; the log file keeps them verbatim.
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]")


def printable(text: str) -> str:
    return _CONTROL.sub("", text.expandtabs())


class TrainingLog(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    TrainingLog {
        scrollbar-size-horizontal: 0;
    }
    """

    def __init__(self, buffer: LogBuffer, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.buffer = buffer
        self.slot_index = 0
        self._seen_version = -1
        self._seen_dropped = 0
        self._seen_exp: int | None = None
        # Whether the view sticks to the newest line; cleared when the user
        # scrolls up, set again when they scroll back to the end.
        self.following = True

    @property
    def slot_log(self) -> SlotLog:
        return self.buffer.slot(self.slot_index)

    def show_slot(self, index: int) -> None:
        self.slot_index = index
        self._seen_version = -1
        self.sync(force_follow=True)

    def sync(self, force_follow: bool = False) -> None:
        """Catch up with the buffer; called on the app's refresh timer."""
        log = self.slot_log
        if log.version == self._seen_version and not force_follow:
            return
        following = force_follow or self.following or self._seen_exp != log.exp
        newly_dropped = log.dropped - self._seen_dropped if log.exp == self._seen_exp else 0
        self._seen_version, self._seen_dropped, self._seen_exp = log.version, log.dropped, log.exp
        self.virtual_size = Size(self.size.width, len(log.lines))
        if following:
            self.scroll_to(y=max(0, len(log.lines) - self.scrollable_content_region.height), animate=False, immediate=True)
            self.following = True
        elif newly_dropped > 0:
            self.scroll_to(y=max(0, self.scroll_y - newly_dropped), animate=False, immediate=True)
        self.refresh()

    def render_line(self, y: int) -> Strip:
        lines = self.slot_log.lines
        index = round(self.scroll_y) + y
        width = self.scrollable_content_region.width
        if not 0 <= index < len(lines):
            return Strip.blank(width, self.rich_style)
        text = printable(lines[index])
        if cell_len(text) > width:
            text = set_cell_size(text, max(0, width - 1)) + "…"
        return Strip([Segment(text, self.rich_style)]).adjust_cell_length(width, self.rich_style)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self.following = new >= self.max_scroll_y

    def on_resize(self) -> None:
        self.sync(force_follow=self.following)
