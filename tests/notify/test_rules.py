"""Which moments are worth a message, on events alone (no engine, no
network, no clock): the rules of `ar_tui.notify.rules.NightWatch`."""

from __future__ import annotations

from ar_tui.core import events as ev
from ar_tui.notify.rules import BUDGET, CRASH_STREAK, END, KEEP, SANDBOX, STALL, NightWatch


def started(sandbox: str = "sandbox: bwrap, network off", ts: float = 1000.0) -> ev.RunStarted:
    return ev.RunStarted(tag="nov28", target="/t", run_dir="/r", agent="claude", model="m", metric="val_bpb",
                         direction="min", attended=False, veto_window_s=0, slots=["cpu"], lookahead=0, resumed=False,
                         time_budget_s=60.0, sandbox=sandbox, ts=ts)


def decision(exp: int, status: str, metric: float | None = 1.0, best_before: float | None = 1.1,
             ts: float = 1000.0, **kw) -> ev.Decision:
    return ev.Decision(exp=exp, status=status, rule="r", metric=metric, best_before=best_before, best_after=None,
                       commit="c", description=f"exp {exp}", ts=ts, **kw)


def kinds(watch: NightWatch, *events: ev.Event) -> list[str]:
    return [message.kind for event in events for message in watch.observe(event)]


def test_a_keep_says_its_gain_and_interval_once_the_noise_is_measured() -> None:
    watch = NightWatch()
    watch.observe(started())
    watch.observe(ev.BaselineReady(metric=1.1, commit="b", runs=[1.1, 1.1, 1.1, 1.1]))
    watch.observe(ev.NoiseEstimate(sd=0.01, samples=4, band=0.02, dof=3, confidence=0.95))
    for _ in range(2):
        watch.observe(ev.ExperimentFinished(exp=1, slot=0, outcome="ok", metric=1.0, reported_metric=1.0,
                                            memory_gb=None, seconds=1, exit_code=0))
    [message] = watch.observe(decision(1, "keep", parent_exp=0))
    assert message.kind == KEEP and message.title == "ar-tui nov28: kept exp 1, val_bpb 1.000000"
    # 0.1 better than 1.1 = 9.1%, +- t(0.975, 3 dof) * 0.01 * sqrt(1/2 + 1/4) = 0.0276 = 2.5%.
    assert "9.1% better (95% interval 6.6% to 11.6%)" in message.body
    assert kinds(watch, decision(2, "keep", forced=True), decision(3, "discard"), decision(0, "keep")) == []


def test_a_crash_streak_is_told_once_and_ends_with_a_decision_that_is_not_a_crash() -> None:
    watch = NightWatch(crash_streak=3)
    assert kinds(watch, *(decision(n, "crash") for n in (1, 2))) == []
    assert kinds(watch, decision(3, "crash"), decision(4, "crash")) == [CRASH_STREAK]
    assert kinds(watch, decision(5, "discard"), *(decision(n, "crash") for n in (6, 7, 8))) == [CRASH_STREAK]
    assert kinds(watch, decision(9, "rerun")) == []  # not a decision yet


def test_a_stall_is_told_once_until_the_next_decision_and_never_while_paused() -> None:
    watch = NightWatch(stall_after=2)  # 2 x the 60 s budget
    watch.observe(started(ts=1000.0))
    assert watch.stalled(1119.0) == []
    [message] = watch.stalled(1121.0)
    assert message.kind == STALL and "over 2 x the 60 s training budget" in message.body
    assert watch.stalled(1500.0) == []
    watch.observe(decision(1, "discard", ts=1600.0))
    watch.observe(ev.Paused(paused=True, ts=1610.0))
    assert watch.stalled(2000.0) == []
    watch.observe(ev.Paused(paused=False, ts=2000.0))  # the user's pause is not a stall
    assert watch.stalled(2100.0) == [] and [m.kind for m in watch.stalled(2121.0)] == [STALL]


def test_a_missing_sandbox_is_told_once_per_place() -> None:
    watch = NightWatch()
    assert kinds(watch, started("sandbox: NONE, runs are not confined (no bwrap)")) == [SANDBOX]
    assert kinds(watch, started("sandbox: off (--sandbox off): runs are not confined")) == []
    node = ev.NodeSandbox(node="n1", sandbox="sandbox: NONE, runs are not confined", confined=False)
    assert kinds(watch, node, node, ev.NodeSandbox(node="n2", sandbox="sandbox: bwrap", confined=True)) == [SANDBOX]


def test_a_budget_is_told_when_it_stops_the_night_and_the_end_names_the_report() -> None:
    watch = NightWatch()
    watch.observe(started())
    stopped = ev.RunStopped(reason="budget of $5.00 reached (spent $5.01)", experiments=12, kept=3,
                            best_metric=0.98, baseline_metric=1.0, improvement_pct=2.0, cost_usd=5.01,
                            improvement_text="2.0% better (95% interval 1.0% to 3.0%)", improvement_ci_pct=[1.0, 3.0])
    assert kinds(watch, stopped) == [BUDGET]
    [end] = watch.end("/runs/nov28/report.md")
    assert end.kind == END and end.title == "ar-tui nov28: the night is over"
    assert "12 experiments, 3 kept, best val_bpb 0.980000" in end.body
    assert "2.0% better (95% interval 1.0% to 3.0%)" in end.body and "report: /runs/nov28/report.md" in end.body
    for reason, error in (("stopped by the user", False), ("the ledger cannot be written", True)):
        assert kinds(NightWatch(), ev.RunStopped(reason=reason, experiments=1, kept=0, best_metric=None,
                                                 baseline_metric=None, improvement_pct=None, cost_usd=0,
                                                 error=error)) == []


def test_the_notify_tables_are_checked_and_the_targets_thresholds_win(tmp_path, monkeypatch) -> None:
    import pytest

    from ar_tui.core.errors import UserError
    from ar_tui.notify.settings import resolve_notify
    from tests.conftest import make_target

    monkeypatch.delenv("AR_TUI_NOTIFY", raising=False)
    target = make_target(tmp_path / "t", config='[notify]\ncrash_streak = 2\nurls = ["json://127.0.0.1:9/t"]\n')
    user = {"urls": ["ntfy://127.0.0.1:9/u"], "crash_streak": 7, "stall_after": 1.5}
    settings = resolve_notify(["json://127.0.0.1:9/flag", "json://127.0.0.1:9/t"], target, user_table=user)
    assert settings.urls == ["json://127.0.0.1:9/flag", "json://127.0.0.1:9/t", "ntfy://127.0.0.1:9/u"]
    assert (settings.crash_streak, settings.stall_after) == (2, 1.5)
    with pytest.raises(UserError, match=r"\[notify\] crash_streaks: unknown key"):
        resolve_notify(None, None, user_table={"crash_streaks": 3})
    with pytest.raises(UserError, match=r"stall_after must be a positive number"):
        resolve_notify(None, None, user_table={"stall_after": 0})
