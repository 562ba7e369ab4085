"""A real EngineHandle without an engine: it emits a fixed script of events
with fixed timestamps (for deterministic snapshots) and answers each human
decision with the events the engine emits for it, recording the calls."""

from __future__ import annotations

from typing import Callable

from ar_tui.core import events as ev
from ar_tui.core.control.handle import Observer

T0 = 1_800_000_000.0  # a fixed wall clock for snapshots

DIFF = """\
diff --git a/train.py b/train.py
--- a/train.py
+++ b/train.py
@@ -12,7 +12,7 @@ DEPTH = 8
 # model shape
-LEARNING_RATE = 0.04
+LEARNING_RATE = 0.06
 WARMUP_STEPS = 10
"""


GPU_USD_PER_HOUR = 2.5


def gpu_usd(seconds: float) -> float:
    return seconds * GPU_USD_PER_HOUR / 3600


def held(exp: int, metric: float | None, seconds: float, total_seconds: float, at: dict) -> list[ev.Event]:
    """A run's end as the engine's accounting writes it: its GPU time, priced, and the totals."""
    return [ev.ExperimentFinished(exp=exp, slot=0, outcome=ev.OUTCOME_OK if metric is not None else ev.OUTCOME_CRASH,
                                  metric=metric, reported_metric=metric, memory_gb=2.0, seconds=seconds,
                                  exit_code=0 if metric is not None else 1, held_seconds=seconds,
                                  gpu_seconds=seconds, gpu_usd=gpu_usd(seconds), total_gpu_seconds=total_seconds,
                                  total_gpu_usd=gpu_usd(total_seconds), **at)]


def usage(exp: int, inputs: int, outputs: int, written: int, read: int, cost: float,
          totals: tuple[int, int, int, int, float], at: dict) -> ev.Usage:
    return ev.Usage(exp=exp, model="claude-sonnet-4-5", input_tokens=inputs, output_tokens=outputs,
                    cache_write_5m_tokens=written, cache_write_1h_tokens=0, cache_read_tokens=read, cost_usd=cost,
                    total_input_tokens=totals[0], total_output_tokens=totals[1], total_cache_write_tokens=totals[2],
                    total_cache_read_tokens=totals[3], total_cost_usd=totals[4],
                    cache_hit_share=totals[3] / (totals[0] + totals[2] + totals[3]), **at)


def session_events(attended: bool = True, slots: int = 1) -> list[ev.Event]:
    """A run mid-way: baseline, three decided experiments, the fourth running."""
    t = T0

    def at(offset: float) -> dict:
        return {"ts": t + offset}

    return [
        ev.RunStarted(tag="nov28", target="nanochat", run_dir="/runs/nov28", agent="claude",
                      model="claude-sonnet-4-5", metric="val_bpb", direction="min", attended=attended,
                      veto_window_s=60.0, slots=["cpu"] * slots, lookahead=0, resumed=False,
                      budget_usd=5.0, gpu_usd_per_hour=2.5, **at(0)),
        *held(0, 1.25, 25, 25, at(29)),
        ev.BaselineReady(metric=1.25, commit="a1b2c3d", runs=[1.25], **at(30)),
        ev.Decision(exp=0, status="keep", rule="baseline", metric=1.25, best_before=None, best_after=1.25,
                    commit="a1b2c3d", description="baseline", gpu_usd=gpu_usd(25), **at(30)),
        usage(1, 10000, 1500, 21000, 0, 0.12, (10000, 1500, 21000, 0, 0.12), at(40)),
        *held(1, 1.22, 55, 80, at(99)),
        ev.Decision(exp=1, status="keep", rule="improved by 0.030", metric=1.22, best_before=1.25,
                    best_after=1.22, commit="b2c3d4e", description="raise the learning rate to 0.06",
                    cost_usd=0.12, gpu_usd=gpu_usd(55), **at(100)),
        usage(2, 2000, 1200, 0, 75000, 0.10, (12000, 2700, 21000, 75000, 0.22), at(110)),
        *held(2, 1.24, 60, 140, at(199)),
        ev.Decision(exp=2, status="discard", rule="worse than best", metric=1.24, best_before=1.22,
                    best_after=1.22, commit="c3d4e5f", description="double the warmup", cost_usd=0.10,
                    gpu_usd=gpu_usd(60), **at(200)),
        usage(3, 2000, 1100, 0, 76000, 0.15, (14000, 3800, 21000, 151000, 0.37), at(210)),
        *held(3, None, 20, 160, at(299)),
        ev.Decision(exp=3, status="crash", rule="the run crashed", metric=None, best_before=1.22,
                    best_after=1.22, commit="d4e5f60", description="swap in a custom attention kernel",
                    cost_usd=0.15, gpu_usd=gpu_usd(20), **at(300)),
        ev.Usage(exp=4, model="claude-sonnet-4-5", input_tokens=1200, output_tokens=300,
                 cache_write_5m_tokens=0, cache_write_1h_tokens=0, cache_read_tokens=9000, cost_usd=0.05,
                 total_input_tokens=15200, total_output_tokens=4100, total_cache_write_tokens=21000,
                 total_cache_read_tokens=160000, total_cost_usd=0.42, cache_hit_share=0.81, **at(310)),
        ev.ProposalStarted(exp=4, base_commit="b2c3d4e", **at(305)),
        ev.AgentText(exp=4, text="The crash came from the custom kernel. ", **at(306)),
        ev.AgentText(exp=4, text="A lower weight decay is a safer next step.", **at(307)),
        ev.AgentToolCall(exp=4, name="str_replace_based_edit_tool", summary="str_replace train.py",
                         result="edited train.py", **at(308)),
        ev.ProposalReady(exp=4, description="lower the weight decay to 0.05", rationale="less regularisation",
                         diff=DIFF, base_commit="b2c3d4e", cost_usd=0.05, **at(310)),
    ]


def running_events() -> list[ev.Event]:
    return [
        ev.StateChanged(state=ev.STATE_RUNNING, slot=0, exp=4, ts=T0 + 311),
        ev.ExperimentStarted(exp=4, slot=0, device="cpu", commit="e5f6071", parent="b2c3d4e",
                             description="lower the weight decay to 0.05", ts=T0 + 311),
        *[ev.LogLine(exp=4, slot=0, text=f"step {i:05d} | loss {3.0 - i * 0.01:.4f}", ts=T0 + 312)
          for i in range(40)],
        ev.LogLine(exp=4, slot=0, text="progress 37%", ts=T0 + 313),
        ev.LogLine(exp=4, slot=0, text="progress 38%", replace=True, ts=T0 + 313),
    ]


def veto_window_events() -> list[ev.Event]:
    return [
        ev.StateChanged(state=ev.STATE_VETO_WINDOW, slot=0, exp=4, ts=T0 + 311),
        ev.VetoWindow(exp=4, slot=0, seconds=60.0, deadline=T0 + 371, ts=T0 + 311),
    ]


class ScriptedHandle:
    def __init__(self, clock: Callable[[], float] = lambda: T0 + 330) -> None:
        self.observers: list[Observer] = []
        self.calls: list[tuple] = []
        self.clock = clock
        self.paused = False
        self.attended = True

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        self.observers.append(observer)
        return lambda: self.observers.remove(observer)

    def emit(self, *events: ev.Event) -> None:
        for event in events:
            for observer in list(self.observers):
                observer(event)

    def pause(self) -> None:
        self.calls.append(("pause",))
        self.emit(ev.Paused(paused=True, ts=self.clock()))

    def resume(self) -> None:
        self.calls.append(("resume",))
        self.emit(ev.Paused(paused=False, ts=self.clock()))

    def set_attended(self, attended: bool) -> None:
        self.calls.append(("set_attended", attended))
        self.emit(ev.ModeChanged(attended=attended, ts=self.clock()))

    def veto(self, exp: int | None = None) -> bool:
        self.calls.append(("veto", exp))
        return True

    def force_keep(self, exp: int | None = None) -> bool:
        self.calls.append(("force_keep", exp))
        return True

    def start_now(self, exp: int | None = None) -> bool:
        self.calls.append(("start_now", exp))
        return True

    def request_stop(self, now: bool = False) -> None:
        self.calls.append(("request_stop", now))


def night_events(outlier: float = 1.311256) -> list[ev.Event]:
    """A longer night with one diverged run: gains between 0.998 and 0.971
    that a scale set by the outlier would flatten into one row; one crash and
    one veto, so that every status is on the chart."""
    metrics = [0.982052, 0.976052, outlier, 0.976952, 0.979911, 0.974013, None, 0.973502, 0.975120,
               0.971877, None, 0.972644]
    statuses = ["keep", "keep", "discard", "discard", "discard", "keep", "crash", "keep", "discard",
                "keep", "veto", "discard"]
    events: list[ev.Event] = [
        ev.RunStarted(tag="dec01", target="nanochat", run_dir="/runs/dec01", agent="offline", model=None,
                      metric="val_bpb", direction="min", attended=False, veto_window_s=0.0, slots=["cpu"],
                      lookahead=0, resumed=False, ts=T0),
        ev.BaselineReady(metric=0.998380, commit="a000000", runs=[0.998380], ts=T0 + 30),
    ]
    best = 0.998380
    for exp, (metric, status) in enumerate(zip(metrics, statuses), 1):
        t = T0 + 30 + 60 * exp
        commit = f"{exp:x}{'c' * 6}"[:7]
        events.append(ev.ExperimentStarted(exp=exp, slot=0, device="cpu", commit=commit, parent="", 
                                           description=f"change {exp}", ts=t - 50))
        before = best
        if status == "keep":
            best = metric
        events.append(ev.Decision(exp=exp, status=status, rule=status, metric=metric, best_before=before,
                                  best_after=best, commit=commit, description=f"change {exp}", ts=t))
    return events
