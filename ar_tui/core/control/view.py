"""What a person sees of a run, folded from its events.

`RunView` folds events into the picture a person sees (state, best metric,
spend, the results table). The app, `ar-tui status` and the attach replay all
use it, so they never disagree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ar_tui.core import events as ev
from ar_tui.core.control.role_costs import RoleCostCounter
from ar_tui.core.direction import Direction


@dataclass
class SlotView:
    index: int
    device: str
    state: str = ev.STATE_IDLE
    exp: int | None = None
    description: str = ""
    started_at: float | None = None
    veto_deadline: float | None = None


@dataclass
class RunView:
    tag: str = ""
    target: str = ""
    run_dir: str = ""
    agent: str = ""
    model: str | None = None
    metric_name: str = "val_bpb"
    direction: str = "min"
    attended: bool = False
    veto_window_s: float = 0.0
    paused: bool = False
    state: str = ev.STATE_STARTING
    state_detail: str = ""
    started_at: float | None = None
    stopped: ev.RunStopped | None = None
    budget_usd: float | None = None
    slots: list[SlotView] = field(default_factory=list)
    baseline: float | None = None
    best: float | None = None
    best_exp: int | None = None
    noise_sd: float | None = None
    noise_band: float | None = None
    noise_dof: int = 0
    noise_jitter_only: bool = False  # the band measures jitter only (the target ignores AR_SEED)
    sandbox: str = ""  # the sandbox in force, as the engine described it ("" in an older run)
    capacity: ev.CapacityChanged | None = None  # a cluster's, once a node has left it
    # Cluster nodes that run the agent's code with no sandbox (--sandbox auto on
    # a node that has none), by node id: their sandbox in words.
    unconfined_nodes: dict[str, str] = field(default_factory=dict)
    # One row per decided experiment: its final Decision, with the parent filled in.
    rows: list[ev.Decision] = field(default_factory=list)
    experiments_started: int = 0
    current_exp: int | None = None
    started: set[int] = field(default_factory=set)  # experiments that have started a run
    proposals: dict[int, ev.ProposalReady] = field(default_factory=dict)
    last_proposal: ev.ProposalReady | None = None
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    cache_hit_share: float = 0.0
    unknown_price: bool = False
    api_waiting: ev.ApiWaiting | None = None
    last_notice: ev.Notice | None = None
    undelivered: int = 0  # notifications and tracker records that never arrived (ev.Delivery)
    plateau: ev.Plateau | None = None  # the latest plateau the engine noticed
    streaming_usage: ev.Usage | None = None  # the request now streaming, not yet in the totals
    derived_parents: dict[int, int | None] = field(default_factory=dict)  # exp: parent, where events name none
    gpu_usd_per_hour: float | None = None  # None: GPU time is not priced
    budget_covers: str = "tokens"
    gpu_seconds: float = 0.0  # device-seconds held by every run (ar_tui.core.money.gpu_cost)
    gpu_cost_usd: float = 0.0
    role_costs: RoleCostCounter = field(default_factory=RoleCostCounter, repr=False)

    @property
    def improvement_pct(self) -> float | None:
        if self.baseline is None or self.best is None or self.baseline == 0:
            return None
        gain = Direction.parse(self.direction).improvement(self.best, self.baseline)
        return 100.0 * gain / abs(self.baseline)

    @property
    def experiments(self) -> list[ev.Decision]:
        """The decided experiments after the baseline (exp 0 is the baseline's row)."""
        return [r for r in self.rows if r.exp != 0]

    @property
    def cost_per_experiment(self) -> float | None:
        decided = len(self.experiments)
        return self.cost_usd / decided if decided else None

    # Tokens, GPU time and their sum (ar_tui.core.money.gpu_cost). Without a GPU
    # price the GPU figures are None, and the sum is the tokens'.
    @property
    def gpu_priced(self) -> bool:
        return self.gpu_usd_per_hour is not None

    @property
    def gpu_usd(self) -> float | None:
        return self.gpu_cost_usd if self.gpu_priced else None

    @property
    def total_cost_usd(self) -> float:
        return self.live_cost_usd + (self.gpu_cost_usd if self.gpu_priced else 0.0)

    @property
    def budget_spent_usd(self) -> float:
        """What --budget-usd is measured against: the tokens, or with
        --budget-covers all the tokens and the GPU time."""
        return self.total_cost_usd if self.budget_covers == "all" else self.live_cost_usd

    def per_experiment(self, usd: float | None) -> float | None:
        decided = len(self.experiments)
        return usd / decided if usd is not None and decided else None

    def per_kept(self, usd: float | None) -> float | None:
        return usd / self.kept if usd is not None and self.kept else None

    @property
    def live_cost_usd(self) -> float:
        """Spend including the response still streaming."""
        provisional = self.streaming_usage.cost_usd if self.streaming_usage is not None else None
        return self.cost_usd + (provisional or 0.0)

    @property
    def kept(self) -> int:
        return sum(1 for r in self.experiments if r.status == ev.STATUS_KEEP)

    # ------------------------------------------------------------------ what applies now
    # The app's keys and a browser's buttons ask the same questions; the
    # answers live here, next to the state they read.

    def slot(self, index: int) -> SlotView | None:
        return self.slots[index] if 0 <= index < len(self.slots) else None

    def running_exp(self, slot_index: int) -> int | None:
        """The experiment training on that slot now (what force-keep acts on)."""
        slot = self.slot(slot_index)
        if slot is not None and slot.exp is not None and slot.state == ev.STATE_RUNNING:
            return slot.exp
        return None

    def pending_proposals(self) -> list[int]:
        """Prepared proposals that have not started nor been decided."""
        decided = {row.exp for row in self.rows}
        return [exp for exp in self.proposals if exp not in decided and exp not in self.started]

    def veto_target(self, slot_index: int) -> tuple[int, str] | None:
        """What a veto on that slot would act on, and what it would mean."""
        slot = self.slot(slot_index)
        if slot is not None and slot.exp is not None:
            if slot.state == ev.STATE_RUNNING:
                return slot.exp, "The running experiment is aborted"
            if slot.state == ev.STATE_VETO_WINDOW:
                return slot.exp, "The waiting experiment never runs"
        pending = self.pending_proposals()
        if pending:
            return max(pending), "The prepared proposal is rejected"
        return None

    def current_diff(self, slot_index: int) -> tuple[int | None, str]:
        """The change to show for that slot: its experiment's, else the latest proposal's."""
        slot = self.slot(slot_index)
        if slot is not None and slot.exp is not None and slot.exp in self.proposals:
            return slot.exp, self.proposals[slot.exp].diff
        if self.last_proposal is not None:
            return self.last_proposal.exp, self.last_proposal.diff
        return None, ""

    @property
    def live(self) -> bool:
        return self.stopped is None

    def actions(self, slot_index: int) -> dict[str, bool]:
        """Which of the human controls apply now, for a viewer focused on that slot."""
        live = self.live
        slot = self.slot(slot_index)
        return {
            "pause": live,
            "attended": live,
            "veto": live and self.veto_target(slot_index) is not None,
            "force_keep": live and self.running_exp(slot_index) is not None,
            "start_now": live and slot is not None and slot.state == ev.STATE_VETO_WINDOW,
        }

    def apply(self, event: ev.Event) -> None:
        handler = getattr(self, f"_on_{event.kind}", None)
        if handler is not None:
            handler(event)

    def _on_run_started(self, e: ev.RunStarted) -> None:
        self.tag, self.target, self.run_dir = e.tag, e.target, e.run_dir
        self.agent, self.model = e.agent, e.model
        self.sandbox = e.sandbox
        self.capacity = None  # a new engine: the executor counts its cluster afresh
        self.unconfined_nodes = {}  # ... and learns its nodes' sandboxes afresh
        self.metric_name, self.direction = e.metric, e.direction
        self.attended, self.veto_window_s = e.attended, e.veto_window_s
        self.budget_usd = e.budget_usd
        self.gpu_usd_per_hour, self.budget_covers = e.gpu_usd_per_hour, e.budget_covers
        self.slots = [SlotView(i, device) for i, device in enumerate(e.slots)]
        self.stopped = None
        if self.started_at is None:
            self.started_at = e.ts

    def _slot(self, index: int | None) -> SlotView | None:
        if index is None or not 0 <= index < len(self.slots):
            return None
        return self.slots[index]

    def _on_state(self, e: ev.StateChanged) -> None:
        slot = self._slot(e.slot)
        if slot is None:
            self.state, self.state_detail = e.state, e.detail
            if e.state != ev.STATE_WAITING_API:
                self.api_waiting = None
        else:
            slot.state = e.state
            if e.state not in (ev.STATE_VETO_WINDOW,):
                slot.veto_deadline = None
            if e.state == ev.STATE_IDLE:
                slot.exp = None
                slot.description = ""

    def _on_mode(self, e: ev.ModeChanged) -> None:
        self.attended = e.attended

    def _on_paused(self, e: ev.Paused) -> None:
        self.paused = e.paused

    def _on_proposal_ready(self, e: ev.ProposalReady) -> None:
        self.proposals[e.exp] = e
        self.last_proposal = e

    def _on_veto_window(self, e: ev.VetoWindow) -> None:
        slot = self._slot(e.slot)
        if slot is not None:
            slot.state, slot.exp, slot.veto_deadline = ev.STATE_VETO_WINDOW, e.exp, e.deadline
            ready = self.proposals.get(e.exp)
            slot.description = ready.description if ready else slot.description

    def _on_experiment_started(self, e: ev.ExperimentStarted) -> None:
        slot = self._slot(e.slot)
        if slot is not None:
            slot.state, slot.exp, slot.description = ev.STATE_RUNNING, e.exp, e.description
            slot.started_at, slot.veto_deadline = e.ts, None
        self.current_exp = e.exp
        self.started.add(e.exp)
        self.experiments_started = max(self.experiments_started, e.exp)
        if e.parent_exp is None:
            self.derived_parents[e.exp] = self._started_from(e.parent)

    def _started_from(self, commit: str) -> int | None:
        """For a history written before the engine named parents (greedy
        runs): the kept experiment whose commit it started from, else the
        best at the time."""
        for row in reversed(self.rows):
            if row.status == ev.STATUS_KEEP and row.commit and commit and row.commit[:7] == commit[:7]:
                return row.exp
        return self.best_exp

    def _on_experiment_finished(self, e: ev.ExperimentFinished) -> None:
        slot = self._slot(e.slot)
        if slot is not None and slot.exp == e.exp:
            slot.state = ev.STATE_EVALUATING if e.outcome == ev.OUTCOME_OK else ev.STATE_IDLE
        self.gpu_seconds = max(self.gpu_seconds, e.total_gpu_seconds)
        self.gpu_cost_usd = max(self.gpu_cost_usd, e.total_gpu_usd or 0.0)

    def _on_baseline(self, e: ev.BaselineReady) -> None:
        self.baseline = e.metric
        if self.best is None:
            self.best = e.metric
            self.best_exp = 0
        if not any(r.exp == 0 for r in self.rows):
            # An events.jsonl written before the baseline had its own Decision.
            self.rows.insert(0, ev.Decision(exp=0, status=ev.STATUS_KEEP, rule="baseline", metric=e.metric,
                                            best_before=None, best_after=e.metric, commit=e.commit[:7],
                                            description="baseline", ts=e.ts))

    def _on_noise(self, e: ev.NoiseEstimate) -> None:
        self.noise_sd, self.noise_band = e.sd, e.band
        self.noise_dof, self.noise_jitter_only = e.dof, e.jitter_only

    def _on_decision(self, e: ev.Decision) -> None:
        if e.status == "rerun":
            return
        parent = e.parent_exp
        if parent is None and e.exp != 0:
            parent = self.derived_parents.get(e.exp, self.best_exp)
        row = e if parent == e.parent_exp else dataclasses.replace(e, parent_exp=parent)
        same = next((i for i, r in enumerate(self.rows) if r.exp == e.exp), None)
        if same is None:
            self.rows.append(row)
        else:
            self.rows[same] = row
        if e.best_after is not None:
            if e.status == ev.STATUS_KEEP:
                self.best_exp = e.exp
            self.best = e.best_after
        if e.status == ev.STATUS_KEEP and not e.forced and e.exp != 0:
            self.plateau = None  # a keep by the rule ends the dry spell

    def _on_review(self, e: ev.Review) -> None:
        self.role_costs.add(e)

    def _on_usage(self, e: ev.Usage) -> None:
        self.role_costs.add(e)
        if e.streaming:
            # A provisional figure for the response still streaming: shown on
            # top of the settled totals, never folded into them (the engine
            # fills the totals only in the final Usage of a request).
            self.streaming_usage = e
            return
        self.streaming_usage = None
        if e.cost_usd is None:
            self.unknown_price = True
        self.cost_usd = e.total_cost_usd
        self.input_tokens = e.total_input_tokens
        self.output_tokens = e.total_output_tokens
        self.cache_write_tokens = e.total_cache_write_tokens
        self.cache_read_tokens = e.total_cache_read_tokens
        self.cache_hit_share = e.cache_hit_share

    def _on_api_waiting(self, e: ev.ApiWaiting) -> None:
        self.api_waiting = e
        self.state = ev.STATE_WAITING_API

    def _on_plateau(self, e: ev.Plateau) -> None:
        self.plateau = e

    def _on_notice(self, e: ev.Notice) -> None:
        self.last_notice = e

    def _on_delivery(self, e: ev.Delivery) -> None:
        self.undelivered = max(self.undelivered, e.undelivered)

    def _on_node_sandbox(self, e: ev.NodeSandbox) -> None:
        if e.confined:
            self.unconfined_nodes.pop(e.node, None)
        else:
            self.unconfined_nodes[e.node] = e.sandbox

    def _on_capacity(self, e: ev.CapacityChanged) -> None:
        self.capacity = e

    @property
    def capacity_warning(self) -> str:
        """Slots out of the pool since a node left the cluster ("" when none):
        the status line and `ar-tui status` say it until capacity returns."""
        c = self.capacity
        out = 0 if c is None or c.available >= c.total else max(0, len(self.slots) - c.available)
        if not out or c is None:
            return ""
        return f"{out} slot{'s' if out > 1 else ''} out of the pool (the cluster has {c.available} of {c.total} {c.unit}s)"

    def _on_run_stopped(self, e: ev.RunStopped) -> None:
        self.stopped = e
        self.state = ev.STATE_STOPPED
        for slot in self.slots:
            slot.state, slot.exp, slot.description, slot.veto_deadline = ev.STATE_IDLE, None, "", None
        self.cost_usd = max(self.cost_usd, e.cost_usd)
        self.gpu_seconds = max(self.gpu_seconds, e.gpu_seconds)
        self.gpu_cost_usd = max(self.gpu_cost_usd, e.gpu_cost_usd or 0.0)

    @property
    def unconfined_here(self) -> bool:
        """This machine's runs are not sandboxed (none could be had, or the user said off)."""
        return self.sandbox.startswith("sandbox:") and ("NONE" in self.sandbox or ": off" in self.sandbox)

    @property
    def unconfined(self) -> bool:
        """Some runs are not sandboxed, here or on a cluster node: said loudly
        wherever a person looks."""
        return self.unconfined_here or bool(self.unconfined_nodes)

    @property
    def unconfined_where(self) -> str:
        """Where the runs are not sandboxed, in words ("" when they all are)."""
        if self.unconfined_here:
            return self.sandbox
        if self.unconfined_nodes:
            count = len(self.unconfined_nodes)
            return f"{count} Ray node{'s' if count > 1 else ''} without a sandbox: " + "; ".join(
                f"{node[:8]}: {sandbox}" for node, sandbox in sorted(self.unconfined_nodes.items()))
        return ""

    def summary(self) -> dict:
        """The figures `ar-tui status --json` prints."""
        return {
            "tag": self.tag,
            "state": self.state,
            "paused": self.paused,
            "attended": self.attended,
            "experiment": self.current_exp,
            "experiments": len(self.experiments),
            "kept": self.kept,
            "metric": self.metric_name,
            "baseline": self.baseline,
            "best": self.best,
            "improvement_pct": self.improvement_pct,
            "cost_usd": round(self.cost_usd, 6),
            "gpu_cost_usd": round(self.gpu_cost_usd, 6) if self.gpu_priced else None,
            "total_cost_usd": round(self.total_cost_usd, 6),
            "noise_sd": self.noise_sd,
            "noise_dof": self.noise_dof,
            "noise_jitter_only": self.noise_jitter_only,
            "sandbox": self.sandbox,
            "unconfined": self.unconfined,
            "unconfined_where": self.unconfined_where,
            "capacity": self.capacity_warning,
            "slots": [
                {"slot": s.index, "device": s.device, "state": s.state, "exp": s.exp} for s in self.slots
            ],
        }
