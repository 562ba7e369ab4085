"""Bounded per-slot storage of training output, written at the child's rate.

The engine's observer appends here directly (an O(1) deque operation per line)
and the training log pane reads it on its own timer, so a child printing tens
of thousands of lines a second never turns into tens of thousands of UI
messages, and memory stays bounded however long the night.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

DEFAULT_MAX_LINES = 5000
# A child can print one enormous line (a tensor dump, a progress bar without
# newlines); only its start is worth keeping in memory, the full text is in
# logs/<exp>.log.
MAX_LINE_CHARS = 1000


@dataclass
class SlotLog:
    max_lines: int = DEFAULT_MAX_LINES
    exp: int | None = None
    lines: deque[str] = field(default_factory=deque)
    dropped: int = 0  # lines pushed out of the front since the last clear
    version: int = 0  # bumped on every change, so readers skip unchanged slots

    def __post_init__(self) -> None:
        self.lines = deque(self.lines, maxlen=self.max_lines)

    def add(self, text: str, replace: bool = False) -> None:
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + "…"
        if replace and self.lines:
            self.lines[-1] = text
        else:
            if len(self.lines) == self.max_lines:
                self.dropped += 1
            self.lines.append(text)
        self.version += 1

    def clear(self, exp: int | None) -> None:
        self.lines.clear()
        self.exp = exp
        self.dropped = 0
        self.version += 1


class LogBuffer:
    """One `SlotLog` per slot, created on first use."""

    def __init__(self, max_lines: int = DEFAULT_MAX_LINES) -> None:
        self.max_lines = max_lines
        self.slots: dict[int, SlotLog] = {}

    def slot(self, index: int) -> SlotLog:
        log = self.slots.get(index)
        if log is None:
            log = self.slots[index] = SlotLog(self.max_lines)
        return log

    def add(self, slot: int, exp: int, text: str, replace: bool = False) -> None:
        log = self.slot(slot)
        if log.exp != exp:
            # Output of a new experiment on this slot: the previous one's lines
            # are in its log file, the pane follows the new one.
            log.clear(exp)
        log.add(text, replace)

    def start(self, slot: int, exp: int) -> None:
        self.slot(slot).clear(exp)
