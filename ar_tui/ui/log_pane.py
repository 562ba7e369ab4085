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
from rich.style import Style
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
        overflow-x: hidden;
    }
    """

    def __init__(self, buffer: LogBuffer, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.buffer = buffer
        self.slot_index = 0
        # Following: the view shows the newest lines whatever the scroll
        # position says (a resize or a hidden tab must not leave it a few
        # lines short). Only the user's own scrolling clears it.
        self.following = True
        self._moving = False  # set while this widget scrolls itself
        self._seen_version = -1
        self._seen_dropped = 0
        self._seen_exp: int | None = None
        self._line_style: Style | None = None  # computing it costs more than drawing a line

    @property
    def slot_log(self) -> SlotLog:
        return self.buffer.slot(self.slot_index)

    def show_slot(self, index: int) -> None:
        self.slot_index = index
        self.following = True
        self._seen_version = -1
        self.sync()

    def _scroll_self(self, y: float) -> None:
        self._moving = True
        try:
            # force: the scrollbar that allows scrolling appears only at the
            # next layout, and the view must move now.
            self.scroll_to(y=y, animate=False, immediate=True, force=True)
        finally:
            self._moving = False

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if not self._moving:
            self.following = new >= self.max_scroll_y

    def sync(self) -> None:
        """Catch up with the buffer; called on the app's refresh timer."""
        log = self.slot_log
        if log.version == self._seen_version:
            return
        if log.exp != self._seen_exp:
            self.following = True
        newly_dropped = log.dropped - self._seen_dropped if log.exp == self._seen_exp else 0
        self._seen_version, self._seen_dropped, self._seen_exp = log.version, log.dropped, log.exp
        self.virtual_size = Size(self.scrollable_content_region.width, len(log.lines))
        if self.following:
            self._scroll_self(max(0, len(log.lines) - self.scrollable_content_region.height))
        elif newly_dropped > 0:
            self._scroll_self(max(0, self.scroll_y - newly_dropped))
        self.refresh()

    def first_visible(self) -> int:
        if self.following:
            return max(0, len(self.slot_log.lines) - self.scrollable_content_region.height)
        return round(self.scroll_y)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._line_style = None

    def render_line(self, y: int) -> Strip:
        style = self._line_style
        if style is None:
            style = self._line_style = self.rich_style
        lines = self.slot_log.lines
        index = self.first_visible() + y
        width = self.scrollable_content_region.width
        if not 0 <= index < len(lines):
            return Strip.blank(width, style)
        text = printable(lines[index])
        if cell_len(text) > width:
            text = set_cell_size(text, max(0, width - 1)) + "…"
        return Strip([Segment(text, style)]).adjust_cell_length(width, style)

    def on_resize(self) -> None:
        self._seen_version = -1
        self.sync()
