"""What a tracker is told about a night, read from the run dir alone: the
ledger (`results.tsv`, the truth about decided experiments), the events
(the agent, each run's metric and seed) and the stored options (the
strategy). The live path and `ar-tui track` both read it here, so a night
logged as it ran and one exported the next morning look the same, and a
tracker that was down is caught up from the same records.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ar_tui.core import events as ev
from ar_tui.core.records.ledger import LedgerRow, read_events, read_results
from ar_tui.core.records.rundir import RunDir
from ar_tui.core.seeds import seed_for

LOG_TAIL_LINES = 40
# A module-level knob in a diff: `-LR = 0.5` / `+LR = 0.4`.
_KNOB_LINE = re.compile(r"^([+-])([A-Z][A-Z0-9_]*)\s*=\s*(.+?)\s*(?:#.*)?$")


@dataclass
class Night:
    tag: str
    target: str
    run_dir: Path
    agent: str = ""
    model: str = ""
    metric: str = "metric"
    direction: str = "min"
    strategy: str = ""
    stopped: ev.RunStopped | None = None


@dataclass
class ExperimentRecord:
    exp: int
    status: str
    commit: str
    description: str
    rule: str
    parent: int | None
    proposer: str
    metric: float | None
    runs: list[float] = field(default_factory=list)  # this experiment's measured runs, in order
    seeds: list[int] = field(default_factory=list)
    memory_gb: float | None = None
    seconds: float = 0.0
    cost_usd: float = 0.0
    gpu_usd: float | None = None
    gpu_seconds: float = 0.0
    knobs: dict[str, str] = field(default_factory=dict)  # "LR": "0.5 -> 0.4"
    diff: str = ""
    log_tail: str = ""

    def params(self, night: Night) -> dict[str, str]:
        """The tracker's params: what was tried, by whom, on what."""
        params = {
            "exp": str(self.exp), "description": self.description, "proposer": self.proposer or night.agent,
            "parent": "" if self.parent is None else str(self.parent),
            "seeds": ",".join(str(s) for s in self.seeds), "agent": night.agent, "model": night.model,
            "knobs_changed": "; ".join(f"{k}: {v}" for k, v in self.knobs.items()),
        }
        params.update({f"knob.{name}": change for name, change in self.knobs.items()})
        return params

    def metrics(self, night: Night) -> dict[str, float]:
        """Its figures; the metric's runs are logged one per step besides."""
        figures: dict[str, float | None] = {
            night.metric: self.metric, "runs": float(len(self.runs)), "memory_gb": self.memory_gb,
            "seconds": self.seconds, "token_cost_usd": self.cost_usd, "gpu_cost_usd": self.gpu_usd,
            "gpu_seconds": self.gpu_seconds,
        }
        return {name: float(value) for name, value in figures.items() if value is not None}

    def tags(self, night: Night) -> dict[str, str]:
        return {"status": self.status, "commit": self.commit, "strategy": night.strategy, "rule": self.rule}


def knobs_changed(diff: str) -> dict[str, str]:
    """`NAME: old -> new` for each module-level constant a diff changes."""
    before: dict[str, str] = {}
    after: dict[str, str] = {}
    for line in diff.splitlines():
        match = _KNOB_LINE.match(line)
        if match:
            (before if match.group(1) == "-" else after)[match.group(2)] = match.group(3)
    return {name: f"{before.get(name, '(new)')} -> {value}" for name, value in after.items()
            if before.get(name) != value}


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.replace("\r", "\n").splitlines()[-lines:])


def read_night(run_dir: Path) -> tuple[Night, list[ExperimentRecord]]:
    """The night and its decided experiments (the baseline is exp 0), in
    ledger order. Raises LedgerError on a run dir without a ledger."""
    paths = RunDir(Path(run_dir))
    metric_name, rows, _ = read_results(paths.ledger)
    night = Night(tag=paths.path.name, target="", run_dir=paths.path, metric=metric_name)
    try:
        options: dict[str, Any] = json.loads(paths.options.read_text(encoding="utf-8"))
        night.strategy = str((options.get("extra") or {}).get("strategy") or "")
    except (OSError, ValueError):
        pass
    runs: dict[int, list[float]] = {}
    attempts: dict[int, list[int]] = {}
    gpu: dict[int, float] = {}
    for event in read_events(paths.events):
        if isinstance(event, ev.RunStarted):
            night.tag, night.target, night.agent = event.tag, event.target, event.agent
            night.model, night.metric, night.direction = event.model or "", event.metric, event.direction
        elif isinstance(event, ev.ExperimentStarted):
            attempts.setdefault(event.exp, []).append(event.attempt)
        elif isinstance(event, ev.ExperimentFinished):
            gpu[event.exp] = gpu.get(event.exp, 0.0) + event.gpu_seconds
            if event.metric is not None:
                runs.setdefault(event.exp, []).append(event.metric)
        elif isinstance(event, ev.RunStopped):
            night.stopped = event
    records = []
    for row in rows:
        if row.exp is None:
            continue  # a hand-written ledger's row: nothing to tie it to
        records.append(_record(paths, row, runs.get(row.exp, []), attempts.get(row.exp, []), gpu.get(row.exp, 0.0)))
    return night, records


def _record(paths: RunDir, row: LedgerRow, runs: list[float], attempts: list[int], gpu_seconds: float) -> ExperimentRecord:
    exp = row.exp if row.exp is not None else -1
    diff = ""
    if paths.diff(exp).is_file():
        diff = paths.diff(exp).read_text(encoding="utf-8", errors="replace")
    last_attempt = max(attempts, default=1)
    return ExperimentRecord(
        exp=exp, status=row.status, commit=row.commit, description=row.description, rule=row.rule,
        parent=row.parent, proposer=row.proposer, metric=row.metric, runs=list(runs),
        seeds=[seed_for(exp, attempt) for attempt in sorted(set(attempts))],
        memory_gb=row.memory_gb, seconds=row.seconds, cost_usd=row.cost_usd, gpu_usd=row.gpu_usd,
        gpu_seconds=gpu_seconds, knobs=knobs_changed(diff), diff=diff,
        log_tail=_tail(paths.log(exp, last_attempt)),
    )
