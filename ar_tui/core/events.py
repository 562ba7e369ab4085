"""Typed engine events: the only thing that flows from the engine to observers.

The engine emits; the Textual app, the headless printer, the socket server for
attached apps and `events.jsonl` all observe. Every event serialises to one
JSON object with a `kind` field and deserialises back to the same dataclass, so
`events.jsonl` can be replayed to rebuild the whole picture.

High-rate events (`LogLine`) are not persisted: the full training output is in
`logs/<n>.log`, and writing it twice would double the disk traffic of a run that
floods its output.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

# Engine states shown in the status line.
STATE_STARTING = "starting"
STATE_PROPOSING = "proposing"
STATE_VETO_WINDOW = "veto_window"
STATE_RUNNING = "running"
STATE_EVALUATING = "evaluating"
STATE_IDLE = "idle"
STATE_PAUSED = "paused"
STATE_WAITING_API = "waiting_api"
STATE_STOPPING = "stopping"
STATE_STOPPED = "stopped"

# Final statuses in results.tsv (the original project's plus veto).
STATUS_KEEP = "keep"
STATUS_DISCARD = "discard"
STATUS_CRASH = "crash"
STATUS_VETO = "veto"

# How a single run of a training command ended.
OUTCOME_OK = "ok"
OUTCOME_CRASH = "crash"
OUTCOME_TIMEOUT = "timeout"
OUTCOME_NO_METRIC = "no_metric"
OUTCOME_NAN = "nan_metric"
OUTCOME_INTEGRITY = "integrity"
OUTCOME_VETOED = "vetoed"
OUTCOME_INTERRUPTED = "interrupted"

_REGISTRY: dict[str, type["Event"]] = {}


@dataclass
class Event:
    kind: ClassVar[str] = "event"
    persist: ClassVar[bool] = True
    ts: float = field(default_factory=time.time, kw_only=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.kind] = cls

    def to_dict(self) -> dict[str, Any]:
        # Fields hold only JSON values, so a shallow copy serves; asdict's deep
        # copy would be most of the cost of a flood of log lines.
        return {**vars(self), "kind": self.kind}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))


def event_from_dict(data: dict[str, Any]) -> Event:
    """Rebuild an event from its JSON form; unknown keys are ignored so that an
    older app can read a newer engine's stream."""
    data = dict(data)
    cls = _REGISTRY.get(data.pop("kind", ""))
    if cls is None:
        raise ValueError(f"unknown event kind: {data!r:.80}")
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def event_from_json(line: str) -> Event:
    return event_from_dict(json.loads(line))


@dataclass
class RunStarted(Event):
    kind: ClassVar[str] = "run_started"
    tag: str
    target: str
    run_dir: str
    agent: str
    model: str | None
    metric: str
    direction: str  # "min" or "max"
    attended: bool
    veto_window_s: float
    slots: list[str]  # device label per slot, e.g. ["cpu"] or ["cuda:0", "cuda:1"]
    lookahead: int
    resumed: bool
    budget_usd: float | None = None
    max_experiments: int | None = None
    hours: float | None = None
    time_budget_s: float | None = None
    python: str = ""  # which interpreter the target's commands run with, in words
    sandbox: str = ""  # ar_tui.core.sandbox.backends.Sandbox.describe(): the startup and status lines show it
    gpu_usd_per_hour: float | None = None  # the price of a GPU hour; None: GPU time is not priced
    budget_covers: str = "tokens"  # what --budget-usd caps: "tokens", or "all" (tokens and GPU)
    limits: str = ""  # ar_tui.core.executors.limits.RunLimits.describe(): each run's caps and how they are applied


@dataclass
class StateChanged(Event):
    kind: ClassVar[str] = "state"
    state: str
    slot: int | None = None  # None: the engine as a whole
    exp: int | None = None
    detail: str = ""


@dataclass
class ModeChanged(Event):
    kind: ClassVar[str] = "mode"
    attended: bool


@dataclass
class Paused(Event):
    kind: ClassVar[str] = "paused"
    paused: bool


@dataclass
class ProposalStarted(Event):
    kind: ClassVar[str] = "proposal_started"
    exp: int
    base_commit: str
    unseen: list[int] = field(default_factory=list)  # experiments whose results the agent has not seen


@dataclass
class AgentText(Event):
    kind: ClassVar[str] = "agent_text"
    exp: int
    text: str  # a streamed delta; observers append
    role: str = "agent"  # who speaks: agent, planner, worker, reviewer (older runs: agent)


@dataclass
class AgentToolCall(Event):
    kind: ClassVar[str] = "agent_tool"
    exp: int
    name: str
    summary: str  # one line: command and path, never file contents
    is_error: bool = False
    result: str = ""  # one line
    role: str = "agent"


@dataclass
class ApiWaiting(Event):
    kind: ClassVar[str] = "api_waiting"
    exp: int | None
    reason: str
    retry_in_s: float
    attempt: int
    waited_s: float
    role: str = "agent"


@dataclass
class Usage(Event):
    """Token usage of one finished API request, and the running totals."""

    kind: ClassVar[str] = "usage"
    exp: int | None
    model: str
    input_tokens: int
    output_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    cache_read_tokens: int
    cost_usd: float | None  # None when the model has no known price
    total_input_tokens: int = 0
    total_output_tokens: int = 0
    total_cache_write_tokens: int = 0
    total_cache_read_tokens: int = 0
    total_cost_usd: float = 0.0
    cache_hit_share: float = 0.0  # cache reads / all input-side tokens, over the run
    streaming: bool = False  # True for a provisional update while a response streams
    role: str = "agent"
    web_search_requests: int = 0  # billed per search, on top of the tokens


@dataclass
class ProposalReady(Event):
    kind: ClassVar[str] = "proposal_ready"
    exp: int
    description: str
    rationale: str
    diff: str
    base_commit: str
    cost_usd: float = 0.0
    parent_exp: int | None = None  # the node it was built on
    island: int | None = None
    debug_of: int | None = None  # the crashed experiment it tries to fix
    proposer: str = ""  # who proposed it (see Proposal.proposer)


@dataclass
class Remeasured(Event):
    """A decided node ran again (a new seed) to firm up its estimate before it
    is built on further, or before a close challenger is judged against it."""

    kind: ClassVar[str] = "remeasured"
    exp: int
    metric: float | None  # this run's, None when it failed
    estimate: float | None  # the mean of all its runs now
    runs: int
    reason: str = ""


@dataclass
class ProposalFailed(Event):
    kind: ClassVar[str] = "proposal_failed"
    exp: int
    reason: str


@dataclass
class Review(Event):
    """A reviewer's verdict on a proposal before it spends training time."""

    kind: ClassVar[str] = "review"
    exp: int
    verdict: str  # approve / revise / reject
    reason: str
    description: str = ""
    by: str = ""  # the reviewer's model, or "checks" for the harness's own checks


@dataclass
class VetoWindow(Event):
    kind: ClassVar[str] = "veto_window"
    exp: int
    slot: int
    seconds: float
    deadline: float  # time.time() at which it starts on its own


@dataclass
class ExperimentStarted(Event):
    kind: ClassVar[str] = "experiment_started"
    exp: int
    slot: int
    device: str
    commit: str
    parent: str
    description: str
    attempt: int = 1  # >1 for re-runs (noise band, or re-applied on a newer best)
    prepared_before: list[int] = field(default_factory=list)  # results not known when it was prepared
    log_path: str = ""
    parent_exp: int | None = None  # the experiment whose code this one was built on
    island: int | None = None  # the sub-population it belongs to, for island search
    # A run of a counted series: the baseline's seed-varied repeats, the best's confirmation.
    repeat: int = 0  # this run's place in its series, from 1; 0: not part of one
    repeats: int = 0  # the runs its series holds in all


# A LogLine of the target's prepare command starts with this, so a viewer can
# tell data preparation from training (the headless output shows it).
PREPARE_LOG_PREFIX = "[prepare] "


@dataclass
class LogLine(Event):
    kind: ClassVar[str] = "log"
    persist: ClassVar[bool] = False
    exp: int
    slot: int
    text: str
    replace: bool = False  # True: a '\r' progress update that overwrites the previous line


@dataclass
class ExperimentFinished(Event):
    """One run of one experiment ended (an experiment may run more than once)."""

    kind: ClassVar[str] = "experiment_finished"
    exp: int
    slot: int
    outcome: str  # OUTCOME_*
    metric: float | None
    reported_metric: float | None  # what the training script printed (shown, not trusted)
    memory_gb: float | None
    seconds: float
    exit_code: int | None
    message: str = ""  # one line explaining a failed outcome
    tail: str = ""  # last lines of the log for a crash
    # The GPU time it held (training and evaluation) and its price, with the
    # run's totals: filled in by the engine's accounting (ar_tui.core.money.gpu_cost).
    held_seconds: float = 0.0
    gpu_seconds: float = 0.0  # held seconds times the slot's GPUs
    gpu_usd: float | None = None  # None: GPU time is not priced
    total_gpu_seconds: float = 0.0
    total_gpu_usd: float | None = None
    # Which run it was: with its seed, a resume counts the runs that finished
    # before a kill and runs again only the one cut short (0: an older event).
    attempt: int = 0
    seed: int | None = None


@dataclass
class NoiseEstimate(Event):
    kind: ClassVar[str] = "noise"
    sd: float | None
    samples: int
    band: float | None  # the improvement a one-run candidate must clear to be kept at once
    dof: int = 0  # degrees of freedom of sd (ar_tui.core.decisions)
    jitter_only: bool = False  # the repeats agree to float precision: the target ignores AR_SEED
    confidence: float | None = None  # of each keep


@dataclass
class Decision(Event):
    kind: ClassVar[str] = "decision"
    exp: int
    status: str  # keep / discard / crash / veto, or "rerun" (not final)
    rule: str  # the rule that decided, in words
    metric: float | None
    best_before: float | None
    best_after: float | None
    commit: str
    description: str
    forced: bool = False
    cost_usd: float = 0.0
    parent_exp: int | None = None  # the experiment whose code this one was built on
    island: int | None = None  # the sub-population it belongs to, for island search
    gpu_usd: float | None = None  # the GPU time of its runs, priced; None: not priced
    next_run: str = ""  # a "rerun" decision's next step: rerun / remeasure / reapply (a resume continues it)


@dataclass
class BaselineReady(Event):
    kind: ClassVar[str] = "baseline"
    metric: float
    commit: str
    runs: list[float] = field(default_factory=list)


@dataclass
class Notice(Event):
    kind: ClassVar[str] = "notice"
    level: str  # info / warning / error
    message: str


@dataclass
class Plateau(Event):
    """The night has stopped finding gains: no keep by the rule in the last
    `window` decided experiments (ar_tui.core.engine.plateau), and what was
    done about it."""

    kind: ClassVar[str] = "plateau"
    window: int  # N: decided experiments without a keep that make a plateau
    decided: int  # decided experiments when it was noticed
    why: str  # how N was derived (the noise, the budget left)
    action: str  # "explore", "combine", "stop", or "" (--on-plateau not set: noticed only)
    done: str  # what the engine did, in words


@dataclass
class CapacityChanged(Event):
    """A cluster executor's capacity for the slots: a node left (fewer GPUs
    than at the start, so a slot waits out of the pool) or it is back."""

    kind: ClassVar[str] = "capacity"
    available: int  # GPUs (CPUs on a cluster without GPUs) the cluster has now
    total: int  # what it had at the start of the run
    unit: str = "GPU"


@dataclass
class NodeSandbox(Event):
    """A cluster node's own sandbox, when it differs from this machine's: each
    node resolves its own, and one without any runs the agent's code unconfined
    (under --sandbox auto), which is said as loudly as on this machine."""

    kind: ClassVar[str] = "node_sandbox"
    node: str  # the node's id
    sandbox: str  # how it confines the runs, in words ("sandbox: NONE, ..." when it does not)
    confined: bool


@dataclass
class Delivery(Event):
    """A notification that did not arrive after its retries (ar_tui.notify),
    with the night's count so far. Names its destination only in a redacted
    form ("json #1"): the URL is a secret."""

    kind: ClassVar[str] = "delivery"
    undelivered: int  # the night's total so far, over every destination
    destination: str = ""
    reason: str = ""  # one line, without the URL


@dataclass
class RunStopped(Event):
    kind: ClassVar[str] = "run_stopped"
    reason: str
    experiments: int
    kept: int
    best_metric: float | None
    baseline_metric: float | None
    improvement_pct: float | None
    cost_usd: float
    error: bool = False
    # ar_tui.core.decisions.night_summary: the improvement's interval and the noise behind it
    improvement_ci_pct: list[float] | None = None
    improvement_text: str = ""  # "2.1% better (95% interval 1.4% to 2.8%)"
    noise_sd: float | None = None
    noise_dof: int = 0
    noise_jitter_only: bool = False
    gpu_cost_usd: float | None = None  # the night's GPU time, priced (cost_usd is the tokens'); None: not priced
    gpu_seconds: float = 0.0
