"""Keep or discard, honestly under noise.

Two runs of the same code differ (about 1% in val_bpb at a 60 s CPU budget).
The engine records every repeated run of the same commit (the baseline is run
more than once; candidates inside the noise band are re-run) and pools them
into one estimate of the run-to-run standard deviation. A candidate is kept at
once only when its gain clears the band (k standard deviations); inside the
band it is run again, and the mean of its runs must clear the band shrunk by
sqrt(runs) to be kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ar_tui.core import events as ev

RERUN = "rerun"


@dataclass
class NoiseModel:
    k: float = 2.0
    groups: dict[str, list[float]] = field(default_factory=dict)  # commit -> metrics of its runs

    def add(self, commit: str, metric: float) -> None:
        self.groups.setdefault(commit, []).append(metric)

    @property
    def samples(self) -> int:
        return sum(len(v) for v in self.groups.values() if len(v) > 1)

    @property
    def sd(self) -> float | None:
        """Pooled standard deviation over every commit run more than once."""
        squares, dof = 0.0, 0
        for values in self.groups.values():
            if len(values) > 1:
                mean = sum(values) / len(values)
                squares += sum((v - mean) ** 2 for v in values)
                dof += len(values) - 1
        return math.sqrt(squares / dof) if dof else None

    @property
    def band(self) -> float | None:
        sd = self.sd
        return None if sd is None else self.k * sd

    def to_dict(self) -> dict:
        return {"k": self.k, "groups": self.groups}

    @classmethod
    def from_dict(cls, data: dict) -> "NoiseModel":
        return cls(k=float(data.get("k", 2.0)), groups={c: list(v) for c, v in data.get("groups", {}).items()})


@dataclass
class Verdict:
    status: str  # keep / discard / rerun
    rule: str
    metric: float  # the mean of the candidate's runs


def judge(
    runs: list[float],
    best: float,
    direction: str,
    noise: NoiseModel,
    max_runs: int,
    metric_name: str = "metric",
) -> Verdict:
    """Decide a candidate from the metrics of its runs against the best."""
    mean = sum(runs) / len(runs)
    gain = best - mean if direction == "min" else mean - best
    n = len(runs)
    shown = f"{metric_name} {mean:.6f} vs best {best:.6f}"
    if gain <= 0:
        return Verdict(ev.STATUS_DISCARD, f"{shown}: not better", mean)
    band = noise.band
    if not band:
        return Verdict(ev.STATUS_KEEP, f"{shown}: better (no noise estimate yet: strict rule)", mean)
    threshold = band / math.sqrt(n)
    if gain >= threshold:
        runs_text = f" (mean of {n} runs)" if n > 1 else ""
        return Verdict(ev.STATUS_KEEP, f"{shown}{runs_text}: gain {gain:.6f} clears noise band {threshold:.6f}", mean)
    if n < max_runs:
        return Verdict(RERUN, f"{shown}: gain {gain:.6f} inside noise band {threshold:.6f}; running again", mean)
    return Verdict(
        ev.STATUS_DISCARD, f"{shown}: gain {gain:.6f} within noise band {threshold:.6f} after {n} runs", mean
    )
