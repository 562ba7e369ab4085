"""How a run trained, read from its log: what a researcher looks at besides the metric.

Two things are read from a training log, both in the shape the original
autoresearch `train.py` prints (and most scripts resemble):

- the final block, the `name: number` lines after the last `---` (steps,
  tokens per second, peak memory, training seconds, ...);
- the loss curve, from progress lines such as `step 120 | loss 3.2101 | ...`
  or `step 1/1 loss 1.0`, kept as a handful of evenly spaced points.

A change that made each step 30% slower trains less in the same budget; with
these figures, and their change against the parent, the agent can read that.
Pure and toolkit-free: a log path in, plain data out, `None` when the log is
missing or says nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

LOSS_POINTS = 6
# A flooding run can leave a log of gigabytes; the curve needs its head and tail.
HEAD_BYTES = 1 << 20
TAIL_BYTES = 3 << 20
_FIGURE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
_LOSS = re.compile(r"\bstep\s+(\d+)(?:\s*/\s*\d+)?\b.*?\bloss\b\s*[:=]?\s*([-+]?\d+\.?\d*(?:[eE][-+]?\d+)?)",
                   re.IGNORECASE)


_TOKENS_PER_S = re.compile(r"([\d,]+(?:\.\d+)?)\s*tok(?:ens)?/s", re.IGNORECASE)
_SECONDS_LEFT = re.compile(r"(\d+(?:\.\d+)?)\s*s\s+left", re.IGNORECASE)


@dataclass
class TrainingProgress:
    """What one progress line of a training run says: the step, and where the
    line has them, the loss, the throughput and the seconds left."""

    step: int
    loss: float | None = None
    tokens_per_s: float | None = None
    seconds_left: float | None = None


def training_progress(line: str) -> TrainingProgress | None:
    """Read a progress line such as `step 120 | loss 3.2101 | 9,396 tok/s |
    45.7% | 8.1s left` (nanochat's, and the original train.py's shape);
    None for any other line."""
    match = _LOSS.search(line)
    if match is None:
        return None
    throughput = _TOKENS_PER_S.search(line)
    left = _SECONDS_LEFT.search(line)
    return TrainingProgress(
        step=int(match.group(1)), loss=float(match.group(2)),
        tokens_per_s=float(throughput.group(1).replace(",", "")) if throughput else None,
        seconds_left=float(left.group(1)) if left else None)


@dataclass
class RunEvidence:
    figures: dict[str, float] = field(default_factory=dict)  # the final block, in log order
    loss: list[tuple[int, float]] = field(default_factory=list)  # (step, loss), a handful of points

    def changes(self, parent: RunEvidence | None) -> dict[str, float]:
        """Relative change of each figure the parent also has: 0.3 is +30%."""
        if parent is None:
            return {}
        moved: dict[str, float] = {}
        for name, value in self.figures.items():
            before = parent.figures.get(name)
            if before:
                moved[name] = (value - before) / abs(before)
        return moved


def read_evidence(log_path: Path | str) -> RunEvidence | None:
    try:
        text = _read(Path(log_path))
    except OSError:
        return None
    lines = re.split(r"[\r\n]+", text)
    evidence = RunEvidence(figures=final_figures(lines), loss=loss_curve(lines))
    return evidence if evidence.figures or evidence.loss else None


def _read(path: Path) -> str:
    with path.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(0)
        if size <= HEAD_BYTES + TAIL_BYTES:
            data = handle.read()
        else:
            head = handle.read(HEAD_BYTES)
            handle.seek(size - TAIL_BYTES)
            data = head + b"\n" + handle.read()
    return data.decode("utf-8", errors="replace")


def final_figures(lines: list[str]) -> dict[str, float]:
    marks = [i for i, line in enumerate(lines) if line.strip() == "---"]
    if not marks:
        return {}
    figures: dict[str, float] = {}
    for line in lines[marks[-1] + 1:]:
        match = _FIGURE.match(line)
        if match:
            figures[match.group(1)] = float(match.group(2))
    return figures


def loss_curve(lines: list[str], points: int = LOSS_POINTS) -> list[tuple[int, float]]:
    curve: dict[int, float] = {}  # a step printed twice ('\r' updates) keeps its last loss
    for line in lines:
        match = _LOSS.search(line)
        if match:
            curve[int(match.group(1))] = float(match.group(2))
    ordered = sorted(curve.items())
    if len(ordered) <= points:
        return ordered
    # Evenly spaced, first and last included.
    picks = sorted({round(i * (len(ordered) - 1) / (points - 1)) for i in range(points)})
    return [ordered[i] for i in picks]
