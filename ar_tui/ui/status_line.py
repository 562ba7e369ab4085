"""One glance: which run, what it is doing, and how well it has gone."""

from __future__ import annotations

from pathlib import PurePath

from rich.text import Text
from textual.widgets import Static

from ar_tui import chart_scale
from ar_tui import formatting as fmt
from ar_tui.core import events as ev
from ar_tui.core.control.view import RunView


def display_state(view: RunView, slot_index: int) -> str:
    """The state worth showing: a stop or a pause outranks the slot's work,
    and the slot's work outranks the engine's own idle moments."""
    if view.state in (ev.STATE_STOPPED, ev.STATE_STOPPING):
        return view.state
    slot = view.slots[slot_index] if 0 <= slot_index < len(view.slots) else None
    busy = slot is not None and slot.state not in (ev.STATE_IDLE,)
    if view.paused:
        return ev.STATE_PAUSED
    if view.state == ev.STATE_WAITING_API:
        return view.state
    if busy:
        return slot.state
    return view.state


# The best so far over the last experiments: always on screen, and never
# flattened by a diverged run, since the best so far ignores it.
SPARK_WIDTH = 16


class StatusLine(Static):
    _shown: Text | None = None

    def show(self, view: RunView, slot_index: int, now: float) -> None:
        line = Text()
        line.append(" ar-tui ", style="bold reverse")
        line.append(f" {view.tag or '-'} ", style="bold")
        # The target's directory name: the full path would crowd out the state.
        line.append(f"· {PurePath(view.target).name if view.target else '-'} · {view.agent or '-'}")
        if view.model:
            line.append(f"/{view.model}")
        line.append(" · ")
        line.append("attended" if view.attended else "unattended", style="bold" if view.attended else "")
        identity = line
        line = Text()
        state = display_state(view, slot_index)
        label = fmt.STATE_LABELS.get(state, state)
        if state == ev.STATE_WAITING_API and view.api_waiting is not None:
            wait = view.api_waiting
            label += f" ({wait.reason}, attempt {wait.attempt})"
        style = {ev.STATE_PAUSED: "bold yellow reverse", ev.STATE_WAITING_API: "bold yellow",
                 ev.STATE_STOPPED: "bold", ev.STATE_VETO_WINDOW: "bold magenta"}.get(state, "bold green")
        line.append(label, style=style)
        if view.paused and state == ev.STATE_PAUSED:
            slot = view.slots[slot_index] if 0 <= slot_index < len(view.slots) else None
            if slot is not None and slot.state == ev.STATE_RUNNING:
                line.append(" (finishing the running experiment)")
        if view.current_exp is not None:
            line.append(f" · exp {view.current_exp}")
        line.append(f" · {fmt.duration(now - view.started_at if view.started_at else None)}")
        line.append(f" · best {fmt.metric(view.best)}", style="bold")
        if view.improvement_pct is not None:
            line.append(f" ({fmt.percent(view.improvement_pct)} vs baseline)")
        trend = fmt.spark(chart_scale.gain_series(view.rows, view.baseline, view.direction), SPARK_WIDTH)
        if trend:
            line.append(f" {trend}", style="bold cyan")
        if view.unconfined:
            nodes = len(view.unconfined_nodes)
            where = "" if view.unconfined_here else f" ON {nodes} RAY NODE{'S' if nodes > 1 else ''}"
            line.append(f" · NOT SANDBOXED{where}", style="bold red reverse")
        if view.undelivered:
            line.append(f" · {view.undelivered} undelivered", style="bold yellow")
        if view.capacity_warning and view.live:
            line.append(f" · {view.capacity_warning}", style="bold yellow")
        if view.plateau is not None and view.stopped is None:
            plateau = view.plateau
            line.append(f" · PLATEAU ({plateau.window} without a keep: {plateau.action or 'noticed'})",
                        style="bold yellow")
        if view.stopped is not None:
            line.append(f" · stopped: {view.stopped.reason}", style="bold red" if view.stopped.error else "")
        # Who, then what: on one line when it fits, else the second part on a
        # line of its own rather than wrapped mid-phrase.
        joined = Text(" · ").join([identity, line])
        if joined.cell_len <= self.size.width or not self.size.width:
            line = joined
        else:
            line = Text("\n").join([identity, Text(" ") + line])
        # An update re-lays the screen out: only when the line really changed.
        if line != self._shown:
            self._shown = line
            self.update(line, layout=False)  # fixed height (app.tcss): no relayout
