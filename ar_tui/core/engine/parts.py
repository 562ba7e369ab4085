"""The engine's vocabulary: its options, a candidate experiment, a slot, what
a person has asked of the run, and the outcome of one run. Plain data,
shared by every part of the engine."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ar_tui.core.config import RunOption, confidence_level, positive_float
from ar_tui.core.decisions import DEFAULT_BASELINE_RUNS, DEFAULT_CONFIDENCE, DEFAULT_MAX_RUNS
from ar_tui.core.money.gpu_cost import BUDGET_COVERS
from ar_tui.core.sandbox.backends import SANDBOX_MODES

# A proposer that fails this many times in a row is not going to recover by itself.
MAX_FAILED_PROPOSALS_IN_ROW = 5
EVALUATE_TIMEOUT_S = 600.0
# What --on-plateau may ask for (ar_tui.core.engine.plateau acts on it).
PLATEAU_ACTIONS = ("explore", "combine", "stop")


@dataclass
class EngineOptions:
    target_dir: Path
    tag: str
    run_dir: Path
    time_budget: float | None = None  # overrides the target's
    max_experiments: int | None = None
    hours: float | None = None
    budget_usd: float | None = None
    attended: bool = False
    veto_window_s: float = 60.0
    devices: list[str] = field(default_factory=lambda: ["cpu"])  # one slot per entry
    lookahead: int = 1
    baseline_runs: int = DEFAULT_BASELINE_RUNS  # seed-varied runs: the first noise estimate
    max_runs: int = DEFAULT_MAX_RUNS  # runs of one candidate inside the noise band
    confidence: float = DEFAULT_CONFIDENCE  # of each keep (ar_tui.core.decisions)
    strategy: str = "greedy"
    # The values of the options the strategy declares (ar_tui.core.engine.strategies), by name.
    strategy_options: dict[str, Any] = field(default_factory=dict)
    write_report: bool = True
    sandbox: str = "auto"  # auto | require | off
    sandbox_backends: list | None = None  # None: the platform's (tests pin one)
    gpu_usd_per_hour: float | None = None  # None: autoresearch.toml's [cost] gpu_usd_per_hour, else unpriced
    budget_covers: str | None = None  # what budget_usd caps: tokens (None: the default), or all (tokens and GPU)
    on_plateau: str | None = None  # one of PLATEAU_ACTIONS (ar_tui.core.engine.plateau); None: noticed only
    # Per-run limits (ar_tui.core.executors.limits): a size / count, "none", or None for [limits] or the default.
    limit_memory: str | None = None
    limit_processes: str | None = None
    limit_writes: str | None = None


# The engine's own options that a run stores (each an EngineOptions field of
# the same name); the command line offers them beside the parts' options.
ENGINE_RUN_OPTIONS = (
    RunOption("max_runs", f"runs of a candidate inside the noise band (default {DEFAULT_MAX_RUNS})", type=int,
              default=DEFAULT_MAX_RUNS),
    RunOption("confidence", f"confidence that a kept gain is real (default {DEFAULT_CONFIDENCE})",
              type=confidence_level, default=DEFAULT_CONFIDENCE),
    RunOption("sandbox", "confine each run (default auto: the best sandbox here, or none, said loudly)",
              choices=SANDBOX_MODES, default=EngineOptions.sandbox),
    RunOption("gpu_usd_per_hour", "price of a GPU hour, to cost each run's GPU time (default: [cost] in "
              "autoresearch.toml)", type=positive_float, toml="cost.gpu_usd_per_hour"),
    RunOption("budget_covers", "what --budget-usd caps: tokens (the default) or all (tokens and GPU time)",
              choices=BUDGET_COVERS, adjustable=True),
    RunOption("on_plateau", "when no experiment has been kept for a while (N from the noise and the budget left): "
              "widen the search, try near-misses together, or stop with the budget left (default: say so and "
              "go on)", choices=PLATEAU_ACTIONS, adjustable=True),
    # Per-run limits (ar_tui.core.executors.limits checks the values when the run opens); may change at resume.
    RunOption("limit_memory", "each run's memory cap, e.g. 8GiB, or none (default: [limits] memory, else the "
              "machine's memory less a reserve for the engine, shared by the slots)", adjustable=True,
              toml="limits.memory"),
    RunOption("limit_processes", "each run's cap on processes and threads, or none (default: [limits] processes, "
              "else 4096)", adjustable=True, toml="limits.processes"),
    RunOption("limit_writes", "each run's cap on bytes written to its worktree and scratch dir, or none "
              "(default: [limits] writes, else half the run dir's free space)", adjustable=True,
              toml="limits.writes"),
)


@dataclass
class Candidate:
    """One experiment from its proposal to its decision."""

    exp: int
    description: str
    rationale: str
    diff: str
    base_commit: str
    cost_usd: float = 0.0
    prepared_before: list[int] = field(default_factory=list)
    is_baseline: bool = False
    commit: str | None = None
    parent: str | None = None  # the commit its code was built on
    runs: list[float] = field(default_factory=list)
    attempt: int = 0
    forced: bool = False
    remeasure_best: bool = False  # its next run re-measures the best (ar_tui.core.decisions)
    vetoed: bool = False
    interrupted: bool = False
    memory_gb: float | None = None
    seconds: float = 0.0
    window: asyncio.Future | None = None
    stop: asyncio.Event | None = None
    island: int | None = None  # the sub-population it grows in (island search)
    debug_of: int | None = None  # the crashed experiment this one tries to fix
    # A decided node run again to firm up its estimate: no new row, no new commit.
    remeasure: bool = False
    proposer: str = ""  # who proposed it (Proposal.proposer, else the proposer's name)
    gpu_usd: float | None = None  # its runs' GPU time, priced, when it is decided
    retried: bool = False  # a transient failure of one of its re-runs was tried again once

    @property
    def mean(self) -> float | None:
        return sum(self.runs) / len(self.runs) if self.runs else None

    def to_state(self) -> dict:
        return {
            "exp": self.exp,
            "description": self.description,
            "rationale": self.rationale,
            "base_commit": self.base_commit,
            "cost_usd": self.cost_usd,
            "prepared_before": self.prepared_before,
            "island": self.island,
            "debug_of": self.debug_of,
        }


@dataclass
class Steering:
    """What a person has asked of the run (through the facade's human
    control) and whether it is stopping: every part reads it, only the
    facade changes it."""

    attended: bool = False
    paused: bool = False
    stopping: bool = False
    stop_reason: str | None = None
    stop_error: bool = False


@dataclass
class Slot:
    index: int
    device: str
    worktree: Path
    target_dir: Path
    candidate: Candidate | None = None


@dataclass
class Outcome:
    outcome: str
    metric: float | None
    reported: float | None
    memory_gb: float | None
    seconds: float
    exit_code: int | None
    message: str
    tail: str
    seed: int | None = None  # the AR_SEED it ran with


def resolve_window(cand: Candidate | None, answer: str) -> None:
    """Answer a candidate's veto window (start, veto, stop), if it is still open."""
    if cand is not None and cand.window is not None and not cand.window.done():
        cand.window.set_result(answer)
