"""The agent's streamed reasoning and tool calls, newest at the bottom."""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from ar_tui.core import events as ev

# The pane shows the recent past; the whole transcript is in events.jsonl.
MAX_CHARS = 24_000


class AgentPane(VerticalScroll):
    DEFAULT_CSS = """
    AgentPane > Static { width: 1fr; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._text = Text()
        self._dirty = False
        self._body = Static("waiting for the agent…", markup=False)
        self._role = "agent"

    def compose(self):
        yield self._body

    def _trim(self) -> None:
        excess = len(self._text) - MAX_CHARS
        if excess > 0:
            # Cut at a line boundary so the first visible line is whole.
            cut = self._text.plain.find("\n", excess)
            self._text = self._text[(cut + 1 if cut >= 0 else excess):]

    def begin(self, event: ev.ProposalStarted) -> None:
        if self._text.plain and not self._text.plain.endswith("\n"):
            self._text.append("\n")
        self._text.append(f"── experiment {event.exp} (from {event.base_commit[:7]}) ──\n", style="bold")
        self._dirty = True

    def _speaker(self, role: str) -> None:
        # A team's roles take turns; say who speaks when it changes (the single agent never does).
        if role != self._role:
            self._role = role
            if self._text.plain and not self._text.plain.endswith("\n"):
                self._text.append("\n")
            self._text.append(f"[{role}]\n", style="bold magenta")

    def add_text(self, event: ev.AgentText) -> None:
        self._speaker(event.role)
        self._text.append(event.text)
        self._trim()
        self._dirty = True

    def add_tool_call(self, event: ev.AgentToolCall) -> None:
        self._speaker(event.role)
        if self._text.plain and not self._text.plain.endswith("\n"):
            self._text.append("\n")
        mark, style = ("✗", "bold red") if event.is_error else ("▸", "bold cyan")
        self._text.append(f"{mark} {event.name} ", style=style)
        self._text.append(event.summary)
        if event.result:
            self._text.append(f"  → {event.result}", style="dim" if not event.is_error else "red")
        self._text.append("\n")
        self._trim()
        self._dirty = True

    def add_line(self, line: str, style: str = "") -> None:
        if self._text.plain and not self._text.plain.endswith("\n"):
            self._text.append("\n")
        self._text.append(line + "\n", style=style)
        self._trim()
        self._dirty = True

    def sync(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        following = self.is_vertical_scroll_end
        self._body.update(self._text.copy())
        if following:
            self.call_after_refresh(self.scroll_end, animate=False)
