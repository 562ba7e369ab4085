"""The running experiment's progress on one updating line of a terminal:
what `ar-tui run --headless` shows between its plain lines while a slot
trains (step, loss, tokens per second, time left, and which run of a
counted series it is).

Drawn with rich's progress display, the same library the app's toolkit
renders with, so no escape code is written here by hand. Only for a
terminal: `HeadlessPrinter` prints plain lines alone when its stream is a
file or a pipe (a log, CI, a detached engine's engine.out).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Column

from ar_tui.core import events as ev
from ar_tui.core.evidence import TrainingProgress, training_progress

# The label before the bar is cut to this many characters, so that the
# whole line fits an 80-column terminal and never wraps.
LABEL_CHARS = 34


@dataclass
class _Running:
    task: TaskID
    label: str
    started: float
    progress: TrainingProgress | None = None
    evaluating: bool = False


def run_label(event: ev.ExperimentStarted) -> str:
    """Which run this is, in a few words: `exp 3 (run 2)`, `baseline 3 of 8`,
    `confirming exp 5, 2 of 8`."""
    count = f" {event.repeat} of {event.repeats}" if event.repeats else ""
    if event.exp == 0 and event.description != "baseline":
        # The best's confirmation: its description names the experiment it confirms.
        return event.description.split(",")[0] + "," + count if count else event.description
    if event.exp == 0:
        return "baseline" + count
    again = f" (run {event.attempt})" if event.attempt > 1 else ""
    return f"exp {event.exp}{again} {event.description}"


class ProgressLine:
    """One updating line per busy slot, under the plain lines printed above it."""

    def __init__(self, stream: TextIO) -> None:
        self.console = Console(file=stream, highlight=False, soft_wrap=True)
        self.progress = Progress(
            TextColumn("{task.description}", table_column=Column(no_wrap=True, overflow="ellipsis")),
            BarColumn(bar_width=16),
            TextColumn("{task.fields[stats]}", table_column=Column(no_wrap=True, overflow="ellipsis")),
            console=self.console, auto_refresh=False, transient=True)
        self.time_budget: float | None = None
        self.running: dict[int, _Running] = {}
        self.started = False

    def print(self, line: str) -> None:
        """A plain line, above the progress lines."""
        self.console.print(line, markup=False, highlight=False)

    def observe(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted):
            self.time_budget = event.time_budget_s
        elif isinstance(event, ev.ExperimentStarted):
            self._start(event)
        elif isinstance(event, ev.LogLine) and event.slot in self.running:
            progress = training_progress(event.text)
            if progress is not None:
                self.running[event.slot].progress = progress
                self._draw(event.slot)
        elif isinstance(event, ev.StateChanged) and event.slot in self.running:
            if event.state == ev.STATE_EVALUATING:
                self.running[event.slot].evaluating = True
                self._draw(event.slot)
            elif event.state == ev.STATE_IDLE:
                self._end(event.slot)
        elif isinstance(event, ev.ExperimentFinished):
            self._end(event.slot)
        elif isinstance(event, ev.RunStopped):
            self.stop()

    def stop(self) -> None:
        for slot in list(self.running):
            self._end(slot)
        if self.started:
            self.progress.stop()
            self.started = False

    def _start(self, event: ev.ExperimentStarted) -> None:
        self._end(event.slot)
        if not self.started:
            self.progress.start()
            self.started = True
        label = run_label(event)
        if len(label) > LABEL_CHARS:
            label = label[:LABEL_CHARS - 1] + "…"
        task = self.progress.add_task(label, total=self.time_budget, stats="starting")
        self.running[event.slot] = _Running(task=task, label=label, started=time.monotonic())
        self._draw(event.slot)

    def _end(self, slot: int) -> None:
        running = self.running.pop(slot, None)
        if running is not None:
            self.progress.remove_task(running.task)
            self.progress.refresh()

    def _draw(self, slot: int) -> None:
        running = self.running[slot]
        progress = running.progress
        elapsed = time.monotonic() - running.started
        left = progress.seconds_left if progress and progress.seconds_left is not None else (
            max(0.0, self.time_budget - elapsed) if self.time_budget else None)
        parts = []
        if running.evaluating:
            parts.append("evaluating")
        if progress is not None:
            parts.append(f"step {progress.step:,}")
            if progress.loss is not None:
                parts.append(f"loss {progress.loss:.4f}")
            if progress.tokens_per_s is not None:
                parts.append(f"{progress.tokens_per_s:,.0f} tok/s")
        if left is not None and not running.evaluating:
            parts.append(f"{left:.0f} s left")
        completed = None
        if self.time_budget and left is not None:
            completed = self.time_budget if running.evaluating else max(0.0, self.time_budget - left)
        self.progress.update(running.task, completed=completed, stats="  ".join(parts) or "starting")
        self.progress.refresh()
