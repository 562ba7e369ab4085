"""What the night has cost: tokens, GPU time and dollars, in total and per
experiment.

Only a proposer's final `Usage` of a request counts (a streaming one is a
provisional figure the viewers show on top). Every finished run counts the
GPU time it held (`ar_tui.core.money.gpu_cost`) to its experiment. The running
totals are written into those events before they are emitted, so every
viewer shows the engine's own sums instead of adding them up again.

`--budget-usd` caps the tokens, or with `--budget-covers all` tokens and GPU
time together: then no run starts whose expected GPU cost, on top of what is
spent and what the runs still going are expected to cost, would cross it.
"""

from __future__ import annotations

from typing import Callable

from ar_tui.core import events as ev
from ar_tui.core.money.gpu_cost import GpuPricing, devices_in, gpu_usd

TOKEN_KINDS = ("input", "output", "cache_write", "cache_read")


class Accounting:
    def __init__(self) -> None:
        self.spent_usd = 0.0
        self.tokens = dict.fromkeys(TOKEN_KINDS, 0)
        self.cost_by_exp: dict[int, float] = {}
        self.pricing = GpuPricing()
        self.devices: list[str] = []  # each slot's device, by slot index
        self.time_budget_s = 0.0  # the expected length of a run before any has run
        self.gpu_seconds = 0.0  # device-seconds held by every run so far
        self.gpu_usd = 0.0
        self.gpu_usd_by_exp: dict[int, float] = {}
        self.longest_run_s = 0.0  # the longest a run has held its slot: the expectation for the next

    def configure(self, pricing: GpuPricing, devices: list[str], time_budget_s: float) -> None:
        self.pricing, self.devices, self.time_budget_s = pricing, list(devices), time_budget_s

    def restore(self, state: dict, events: list[ev.Event]) -> None:
        self.spent_usd = float(state.get("spent_usd", 0.0))
        self.tokens.update(state.get("tokens", {}))
        self.cost_by_exp = {int(k): v for k, v in state.get("cost_by_exp", {}).items()}
        gpu = state.get("gpu", {})
        self.gpu_seconds = float(gpu.get("seconds", 0.0))
        self.gpu_usd = float(gpu.get("usd", 0.0))
        self.gpu_usd_by_exp = {int(k): v for k, v in gpu.get("usd_by_exp", {}).items()}
        self.longest_run_s = float(gpu.get("longest_run_s", 0.0))
        # Every finished run is in the events, also those after the last
        # state.json (a kill -9 between a re-run and the next decision).
        seconds = usd = 0.0
        usd_by_exp: dict[int, float] = {}
        for event in events:
            if isinstance(event, ev.Usage) and not event.streaming:
                self.spent_usd = max(self.spent_usd, event.total_cost_usd)
            elif isinstance(event, ev.ExperimentFinished):
                seconds += event.gpu_seconds
                usd += event.gpu_usd or 0.0
                usd_by_exp[event.exp] = usd_by_exp.get(event.exp, 0.0) + (event.gpu_usd or 0.0)
                self.longest_run_s = max(self.longest_run_s, event.held_seconds)
        self.gpu_seconds, self.gpu_usd = max(self.gpu_seconds, seconds), max(self.gpu_usd, usd)
        for exp, spent in usd_by_exp.items():
            self.gpu_usd_by_exp[exp] = max(self.gpu_usd_by_exp.get(exp, 0.0), spent)

    def to_state(self) -> dict:
        return {"spent_usd": self.spent_usd, "tokens": self.tokens, "cost_by_exp": self.cost_by_exp,
                "gpu": {"seconds": self.gpu_seconds, "usd": self.gpu_usd, "usd_by_exp": self.gpu_usd_by_exp,
                        "longest_run_s": self.longest_run_s}}

    def cost_of(self, exp: int) -> float:
        return self.cost_by_exp.get(exp, 0.0)

    def gpu_usd_of(self, exp: int) -> float | None:
        """The GPU cost of every run of `exp` so far; None when GPU time is not priced."""
        return self.gpu_usd_by_exp.get(exp, 0.0) if self.pricing.priced else None

    @property
    def budget_spent_usd(self) -> float:
        """What --budget-usd is measured against."""
        return self.spent_usd + (self.gpu_usd if self.pricing.covers == "all" else 0.0)

    def budget_reached(self, budget_usd: float | None) -> bool:
        return budget_usd is not None and self.budget_spent_usd >= budget_usd

    def expected_run_usd(self, device: str) -> float:
        """A run's expected GPU cost on that slot: as long as the longest run
        so far (the time budget before any), times the slot's devices."""
        if not self.pricing.priced:
            return 0.0
        seconds = max(self.longest_run_s, self.time_budget_s)
        return gpu_usd(seconds * devices_in(device), self.pricing.usd_per_hour or 0.0)

    def run_would_cross(self, budget_usd: float | None, starting: list[str], running: list[str]) -> str | None:
        """Why the runs about to start on the `starting` slots' devices would
        cross a budget that covers GPU time, the `running` ones counted as
        they are expected to end; None when they fit (or the budget does not
        cover GPU time)."""
        if budget_usd is None or self.pricing.covers != "all" or not self.pricing.priced:
            return None
        committed = sum(self.expected_run_usd(device) for device in running)
        expected = sum(self.expected_run_usd(device) for device in starting)
        if self.budget_spent_usd + committed + expected <= budget_usd:
            return None
        return (f"budget of ${budget_usd:.2f} reached: ${self.spent_usd:.2f} of tokens and ${self.gpu_usd:.2f} of "
                f"GPU spent, ${committed:.2f} of GPU still running, and the next run would cost about "
                f"${expected:.2f} of GPU")

    def count_run(self, event: ev.ExperimentFinished) -> None:
        """Add a finished run's GPU time to its experiment and fill the totals in."""
        device = self.devices[event.slot] if 0 <= event.slot < len(self.devices) else "cpu"
        self.longest_run_s = max(self.longest_run_s, event.held_seconds)
        event.gpu_seconds = event.held_seconds * devices_in(device)
        self.gpu_seconds += event.gpu_seconds
        event.total_gpu_seconds = self.gpu_seconds
        if self.pricing.priced:
            event.gpu_usd = gpu_usd(event.gpu_seconds, self.pricing.usd_per_hour or 0.0)
            self.gpu_usd += event.gpu_usd
            self.gpu_usd_by_exp[event.exp] = self.gpu_usd_by_exp.get(event.exp, 0.0) + event.gpu_usd
            event.total_gpu_usd = self.gpu_usd

    def trial_emit(self, emit: Callable[[ev.Event], None]) -> Callable[[ev.Event], None]:
        """The `emit` a trial gets: every finished run's GPU time is counted on the way."""

        def counted(event: ev.Event) -> None:
            if isinstance(event, ev.ExperimentFinished):
                self.count_run(event)
            emit(event)

        return counted

    def count(self, exp: int, event: ev.Usage) -> None:
        """Add a request's final usage to experiment `exp` and fill the totals in."""
        self.tokens["input"] += event.input_tokens
        self.tokens["output"] += event.output_tokens
        self.tokens["cache_write"] += event.cache_write_5m_tokens + event.cache_write_1h_tokens
        self.tokens["cache_read"] += event.cache_read_tokens
        if event.cost_usd is not None:
            self.spent_usd += event.cost_usd
            self.cost_by_exp[exp] = self.cost_by_exp.get(exp, 0.0) + event.cost_usd
        input_side = self.tokens["input"] + self.tokens["cache_write"] + self.tokens["cache_read"]
        event.total_input_tokens = self.tokens["input"]
        event.total_output_tokens = self.tokens["output"]
        event.total_cache_write_tokens = self.tokens["cache_write"]
        event.total_cache_read_tokens = self.tokens["cache_read"]
        event.total_cost_usd = self.spent_usd
        event.cache_hit_share = self.tokens["cache_read"] / input_side if input_side else 0.0

    def agent_emit(self, exp: int, emit: Callable[[ev.Event], None]) -> Callable[[ev.Event], None]:
        """The `emit` a proposer gets for experiment `exp`: usage is counted on the way."""

        def counted(event: ev.Event) -> None:
            if isinstance(event, ev.Usage) and not event.streaming:
                self.count(exp, event)
            emit(event)

        return counted
