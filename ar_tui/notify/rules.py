"""Which moments of a night are worth a message, and what it says: a pure
reducer over the engine's events (no I/O, no clock of its own), so a test
feeds it events and reads the messages.

- a solid keep: a kept experiment that is the night's new best (not forced,
  not the baseline), with its gain over the best before it and, once the
  noise is measured, the interval of that gain;
- a crash streak: `crash_streak` crashed experiments in a row (once a
  streak; a decision that is not a crash ends it);
- a stall: no decision for `stall_after` times the training budget (once,
  until the next decision);
- a budget reached: the night stopped on its experiments, hours or dollars;
- the sandbox missing: `--sandbox auto` found none, here or on a node;
- the end: the summary line and where the report is (sent by the service
  once the report is written).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ar_tui import formatting as fmt
from ar_tui.core import events as ev
from ar_tui.core.decisions import format_improvement, improvement_pct, t_quantile
from ar_tui.core.direction import Direction

KEEP = "keep"
CRASH_STREAK = "crash_streak"
STALL = "stall"
BUDGET = "budget"
SANDBOX = "sandbox"
END = "end"

# The night's time budget when the engine has not said it yet (the target default).
DEFAULT_TIME_BUDGET_S = 300.0


@dataclass(frozen=True)
class Message:
    kind: str  # one of the names above
    title: str
    body: str


@dataclass
class NightWatch:
    crash_streak: int = 5
    stall_after: float = 4.0  # multiples of the time budget
    tag: str = ""
    metric: str = "metric"
    direction: str = "min"
    time_budget_s: float = DEFAULT_TIME_BUDGET_S
    last_decision_at: float | None = None
    stall_sent: bool = False
    paused: bool = False
    crashes_in_a_row: int = 0
    noise_sd: float | None = None
    noise_dof: int = 0
    confidence: float = 0.95
    runs: dict[int, int] = field(default_factory=dict)  # runs made of each experiment (0: the baseline)
    stopped: ev.RunStopped | None = None
    sandbox_warned: set[str] = field(default_factory=set)

    @property
    def stall_s(self) -> float:
        return self.stall_after * self.time_budget_s

    def _title(self, what: str) -> str:
        return f"ar-tui {self.tag}: {what}" if self.tag else f"ar-tui: {what}"

    def observe(self, event: ev.Event) -> list[Message]:
        """The messages this event calls for (most call for none)."""
        if isinstance(event, ev.RunStarted):
            self.tag, self.metric, self.direction = event.tag, event.metric, event.direction
            self.time_budget_s = event.time_budget_s or DEFAULT_TIME_BUDGET_S
            self.last_decision_at, self.stall_sent = event.ts, False
            return self._sandbox("this machine", event.sandbox, confined=not event.sandbox.startswith("sandbox: NONE"))
        if isinstance(event, ev.NodeSandbox):
            return self._sandbox(f"node {event.node}", event.sandbox, event.confined)
        if isinstance(event, ev.Paused):
            self.paused = event.paused
            if not event.paused:  # a pause is the user's own doing: the stall clock starts again
                self.last_decision_at = event.ts
        elif isinstance(event, ev.BaselineReady):
            self.runs[0] = max(self.runs.get(0, 0), len(event.runs) or 1)
        elif isinstance(event, ev.ExperimentFinished):
            self.runs[event.exp] = self.runs.get(event.exp, 0) + 1
        elif isinstance(event, ev.Remeasured):
            self.runs[event.exp] = max(self.runs.get(event.exp, 0), event.runs)
        elif isinstance(event, ev.NoiseEstimate):
            self.noise_sd, self.noise_dof = event.sd, event.dof
            self.confidence = event.confidence or self.confidence
        elif isinstance(event, ev.Decision) and event.status != "rerun":
            return self._decided(event)
        elif isinstance(event, ev.RunStopped):
            self.stopped = event
            # Every budget stops with "... reached": experiments, hours, dollars.
            if not event.error and "reached" in event.reason:
                return [Message(BUDGET, self._title("budget reached"), f"{event.reason}; the night ends.")]
        return []

    def stalled(self, now: float) -> list[Message]:
        """A stall message when nothing has been decided for too long (the
        service asks this on a timer)."""
        if (self.stall_sent or self.paused or self.stopped is not None or self.last_decision_at is None
                or now - self.last_decision_at < self.stall_s):
            return []
        self.stall_sent = True
        minutes = (now - self.last_decision_at) / 60
        return [Message(STALL, self._title("stalled"),
                        f"no experiment decided for {fmt.duration(now - self.last_decision_at)} "
                        f"({minutes:.1f} min, over {self.stall_after:g} x the {self.time_budget_s:g} s training budget)")]

    def end(self, report_path: str | None) -> list[Message]:
        """The night's end: its summary line and where the report is."""
        stopped = self.stopped
        if stopped is None:
            return []
        gain = stopped.improvement_text or fmt.percent(stopped.improvement_pct)
        summary = (f"{stopped.experiments} experiments, {stopped.kept} kept, best {self.metric} "
                   f"{fmt.metric(stopped.best_metric)} (baseline {fmt.metric(stopped.baseline_metric)}: {gain}), "
                   f"cost {fmt.exact_dollars(stopped.cost_usd)}")
        where = f"\nreport: {report_path}" if report_path else "\nno report (nothing was decided)"
        title = "the night ended with an error" if stopped.error else "the night is over"
        return [Message(END, self._title(title), f"stopped: {stopped.reason}\n{summary}{where}")]

    # ------------------------------------------------------------------ parts

    def _decided(self, event: ev.Decision) -> list[Message]:
        self.last_decision_at, self.stall_sent = event.ts, False
        if event.status == ev.STATUS_CRASH:
            self.crashes_in_a_row += 1
            if self.crashes_in_a_row == self.crash_streak:
                return [Message(CRASH_STREAK, self._title(f"{self.crash_streak} crashes in a row"),
                                f"experiments {event.exp - self.crash_streak + 1} to {event.exp} crashed; "
                                f"the last: {event.rule}")]
            return []
        self.crashes_in_a_row = 0
        if event.status != ev.STATUS_KEEP or event.forced or event.exp == 0:
            return []
        if event.metric is None or event.best_before is None:
            return []
        gain = Direction.parse(self.direction).improvement(event.metric, event.best_before)
        if gain <= 0:
            return []
        pct = improvement_pct(event.best_before, event.metric, self.direction)
        text = format_improvement(pct, self._interval(event, gain), self.confidence)
        return [Message(KEEP, self._title(f"kept exp {event.exp}, {self.metric} {fmt.metric(event.metric)}"),
                        f"{event.description}\n{self.metric} {fmt.metric(event.best_before)} -> "
                        f"{fmt.metric(event.metric)}: {text}"
                        + ("" if self.noise_sd is not None else " (noise not measured yet: no interval)"))]

    def _interval(self, event: ev.Decision, gain: float) -> tuple[float, float] | None:
        """The interval of the gain over the node it was built on, in % of
        that node's metric: gain +- t * sd * sqrt(1/n + 1/m)."""
        if self.noise_sd is None or not event.best_before:
            return None
        mine = max(1, self.runs.get(event.exp, 1))
        parent = max(1, self.runs.get(event.parent_exp if event.parent_exp is not None else 0, 1))
        half = t_quantile(0.5 + self.confidence / 2, max(1, self.noise_dof)) * self.noise_sd * math.sqrt(1 / mine + 1 / parent)
        base = abs(event.best_before)
        return 100.0 * (gain - half) / base, 100.0 * (gain + half) / base

    def _sandbox(self, where: str, described: str, confined: bool) -> list[Message]:
        if confined or where in self.sandbox_warned or not described:
            return []
        self.sandbox_warned.add(where)
        return [Message(SANDBOX, self._title(f"no sandbox on {where}"),
                        f"{described}\nthe agent's code runs unconfined (--sandbox auto found none)")]
