"""What each key does, and when it applies."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

INTRO = (
    "ar-tui watches an autonomous research run: the agent proposes a change to the training script, "
    "the engine runs it for a fixed time budget and keeps it as a commit when the metric improves. "
    "Every decision is in results.tsv."
)

KEYS = [
    ("p", "pause after the running experiment; press again to resume"),
    ("v", "veto: abort the running experiment, or reject the waiting proposal (asks first; recorded "
          "with status veto)"),
    ("k", "keep the running experiment whatever its metric (a crash is still a crash); recorded as a "
          "forced keep"),
    ("a", "switch attended / unattended. Attended: each proposal waits in a veto window with a countdown "
          "before it runs. Unattended: it runs at once"),
    ("enter", "in the veto window: start the experiment now"),
    ("s", "show the next slot's training log (several GPUs)"),
    ("1-7", "show a pane: agent, log, diff, metric (chart and results), cost, machine, tree"),
    ("tab", "move the focus; arrows and page keys scroll the focused pane"),
    ("q", "quit; the run stops and can be resumed later with the same tag"),
    ("?", "this help; escape closes it"),
]

OUTRO = "Greyed-out keys in the footer do not apply right now. Set NO_COLOR for a monochrome screen."


def help_renderable() -> Group:
    keys = Table.grid(padding=(0, 2))
    keys.add_column(style="bold", no_wrap=True)
    keys.add_column()
    for key, text in KEYS:
        keys.add_row(key, text)
    return Group(Text(INTRO), Text(""), keys, Text(""), Text(OUTRO, style="dim"))


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 90; max-width: 100%; height: auto; max-height: 100%;
        border: thick $accent; padding: 0 1; background: $surface;
    }
    """

    BINDINGS = [Binding("escape,question_mark,q", "dismiss_help", "close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(help_renderable())

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
