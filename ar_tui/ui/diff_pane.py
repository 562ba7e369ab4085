"""The change of the current experiment against the commit it was built on."""

from __future__ import annotations

from rich.syntax import Syntax
from textual.containers import ScrollableContainer
from textual.widgets import Static


class DiffPane(ScrollableContainer, can_focus=True):
    DEFAULT_CSS = """
    DiffPane > Static { width: auto; min-width: 1fr; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._body = Static("no proposal yet", markup=False)
        self.shown: tuple[int, str] | None = None  # (exp, diff) on screen

    def compose(self):
        yield self._body

    def show(self, exp: int | None, diff: str) -> None:
        if self.shown == (exp, diff):
            return
        self.shown = (exp, diff)
        if not diff.strip():
            self._body.update("(no change)" if exp is not None else "no proposal yet")
        else:
            # "ansi_dark" uses the terminal's own palette, which NO_COLOR and
            # monochrome filters then reduce cleanly.
            self._body.update(Syntax(diff.rstrip("\n"), "diff", theme="ansi_dark", background_color="default"))
        self.scroll_home(animate=False)
