"""Every key of the app, driven through Textual's pilot against the real
engine on a tiny real target; each test asserts on events.jsonl and
results.tsv, not only on what is drawn."""

from __future__ import annotations

import re
from pathlib import Path

from ar_tui.core import events as ev
from ar_tui.ui.confirm_screen import ConfirmScreen
from ar_tui.ui.help_screen import HelpScreen
from tests.ui.helpers import engine_app, events_of, ledger, step, ui_target, until

SIZE = (120, 40)


def seconds_left(banner) -> int | None:
    """The countdown the banner shows, or None while it shows none."""
    match = re.search(r"starts in (\d+) s", str(banner.render()))
    return int(match.group(1)) if match else None


def running(app, exp: int) -> bool:
    slot = app.view.slots[0] if app.view.slots else None
    return slot is not None and slot.exp == exp and slot.state == ev.STATE_RUNNING


async def test_p_pauses_after_the_running_experiment_and_resumes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    app, engine = engine_app(ui_target(tmp_path / "t"), run_dir, [step("slow", 0.4, sleep=1.0), step("next", 0.35, on=(0.4, 1.0))])
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: running(app, 1), what="exp 1 running")
        await pilot.press("p")
        await until(pilot, lambda: engine.paused and app.view.paused, timeout=5, what="the pause")
        await until(pilot, lambda: "paused" in str(app.status_line.render()), timeout=5, what="paused on screen")
        # Paused: experiment 1 finishes and is decided, and its slot waits
        # paused instead of starting experiment 2.
        await until(pilot, lambda: any(r.exp == 1 for r in app.view.rows)
                    and app.view.slots[0].state == ev.STATE_PAUSED, what="exp 1 decided and the slot paused")
        assert not any(isinstance(e, ev.ExperimentStarted) and e.exp == 2 for e in events_of(run_dir))
        await pilot.press("p")
        await until(pilot, lambda: not app.is_running, what="the run to end")
    paused = [e.paused for e in events_of(run_dir, ev.Paused)]
    assert paused == [True, False]
    assert [(r.exp, r.status) for r in ledger(run_dir)] == [(0, "keep"), (1, "keep"), (2, "keep")]
    assert isinstance(app.return_value, ev.RunStopped) and not app.return_value.error


async def test_v_asks_then_aborts_the_running_experiment_as_a_veto(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    app, _ = engine_app(ui_target(tmp_path / "t"), run_dir, [step("endless", 0.4, sleep=60)])
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: running(app, 1), what="exp 1 running")
        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), timeout=5, what="the question")
        assert "Veto experiment 1" in str(app.screen.query_one("#confirm-title").render())
        await pilot.press("y")
        await until(pilot, lambda: not app.is_running, what="the run to end")
    decisions = [e for e in events_of(run_dir, ev.Decision) if e.exp == 1]
    assert [d.status for d in decisions] == ["veto"]
    rows = ledger(run_dir)
    assert [(r.exp, r.status) for r in rows] == [(0, "keep"), (1, "veto")]
    finished = [e for e in events_of(run_dir, ev.ExperimentFinished) if e.exp == 1]
    assert finished and finished[0].outcome == ev.OUTCOME_VETOED
    assert finished[0].seconds < 30  # aborted, not run to its end


async def test_v_then_n_changes_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # The experiment outlasts the key presses however loaded the machine is:
    # the test ends it itself once it has seen that n left it running.
    app, engine = engine_app(ui_target(tmp_path / "t"), run_dir, [step("endless", 0.4, sleep=60)])
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: running(app, 1), what="exp 1 running")
        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), timeout=5, what="the question")
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), what="the modal to close")
        assert running(app, 1)
        engine.request_stop(now=True)
        await until(pilot, lambda: not app.is_running, what="the run to end")
    assert not any(e.status == "veto" for e in events_of(run_dir, ev.Decision))
    assert not any(e.outcome == ev.OUTCOME_VETOED for e in events_of(run_dir, ev.ExperimentFinished))
    assert [(r.exp, r.status) for r in ledger(run_dir)] == [(0, "keep")]  # stopped, not decided


async def test_k_keeps_a_worse_experiment_as_a_forced_keep(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # LR 0.9 is much worse than the baseline's 0.5: without k it is discarded.
    app, _ = engine_app(ui_target(tmp_path / "t"), run_dir, [step("worse", 0.9, sleep=1.5)])
    async with app.run_test(size=SIZE) as pilot:
        assert app.check_action("force_keep", ()) is None  # greyed out: nothing runs yet
        await until(pilot, lambda: running(app, 1), what="exp 1 running")
        assert app.check_action("force_keep", ()) is True
        await pilot.press("k")
        await until(pilot, lambda: not app.is_running, what="the run to end")
    row = next(r for r in ledger(run_dir) if r.exp == 1)
    assert row.status == "keep" and row.forced
    decision = next(e for e in events_of(run_dir, ev.Decision) if e.exp == 1)
    assert decision.forced and decision.status == "keep"


async def test_attended_window_counts_down_and_enter_starts_at_once(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    offset = [0.0]
    app, _ = engine_app(ui_target(tmp_path / "t"), run_dir, [step("try", 0.4)], attended=True,
                        veto_window_s=600)
    base_clock = app._clock
    app._clock = lambda: base_clock() + offset[0]
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.view.slots and app.view.slots[0].state == ev.STATE_VETO_WINDOW,
                    what="the veto window")
        banner = app.query_one("#veto-banner")
        await until(pilot, lambda: banner.display and seconds_left(banner) is not None, timeout=5,
                    what="the countdown on screen")
        assert 595 <= seconds_left(banner) <= 600
        offset[0] = 90.0  # the clock moves on: the countdown follows it
        await until(pilot, lambda: (seconds_left(banner) or 600) <= 510, timeout=5, what="the countdown to follow")
        assert 505 <= seconds_left(banner) <= 510
        assert app.check_action("start_now", ()) is True
        await pilot.press("enter")
        await until(pilot, lambda: not app.is_running, what="the run to end")
    window = events_of(run_dir, ev.VetoWindow)[0]
    started = next(e for e in events_of(run_dir, ev.ExperimentStarted) if e.exp == 1)
    assert started.ts < window.deadline - 500  # started long before the window would end
    assert [(r.exp, r.status) for r in ledger(run_dir)] == [(0, "keep"), (1, "keep")]


async def test_a_switches_to_unattended_which_ends_the_window(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    app, engine = engine_app(ui_target(tmp_path / "t"), run_dir, [step("try", 0.4)], attended=True,
                             veto_window_s=600)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.view.slots and app.view.slots[0].state == ev.STATE_VETO_WINDOW,
                    what="the veto window")
        assert app.check_action("toggle_attended", ()) is True
        await pilot.press("a")
        await until(pilot, lambda: not app.is_running, what="the run to end")
    assert not engine.attended
    assert [e.attended for e in events_of(run_dir, ev.ModeChanged)] == [False]
    assert [(r.exp, r.status) for r in ledger(run_dir)] == [(0, "keep"), (1, "keep")]


async def test_v_in_the_veto_window_rejects_the_waiting_experiment(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    app, _ = engine_app(ui_target(tmp_path / "t"), run_dir, [step("try", 0.4)], attended=True, veto_window_s=600)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.view.slots and app.view.slots[0].state == ev.STATE_VETO_WINDOW,
                    what="the veto window")
        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), timeout=5, what="the question")
        await pilot.press("y")
        await until(pilot, lambda: not app.is_running, what="the run to end")
    assert not any(isinstance(e, ev.ExperimentStarted) and e.exp == 1 for e in events_of(run_dir))
    assert [(r.exp, r.status) for r in ledger(run_dir)] == [(0, "keep"), (1, "veto")]


async def test_q_asks_then_stops_the_run_so_that_it_can_be_resumed(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    target = ui_target(tmp_path / "t")
    app, _ = engine_app(target, run_dir, [step("endless", 0.4, sleep=60)])
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: running(app, 1), what="exp 1 running")
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), timeout=5, what="the question")
        message = str(app.screen.query_one("#confirm-message").render())
        assert "resumed" in message and "tag ui" in message
        await pilot.press("y")
        await until(pilot, lambda: not app.is_running, what="the app to exit")
    stopped = events_of(run_dir, ev.RunStopped)[-1]
    assert stopped.reason == "stopped by the user" and not stopped.error
    # The interrupted experiment is not recorded as decided, so a resume reruns it.
    assert [(r.exp, r.status) for r in ledger(run_dir)] == [(0, "keep")]
    assert (run_dir / "state.json").exists()


async def test_question_mark_opens_help_and_escape_closes_it(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # The experiment outlasts the test's key presses even on a loaded machine:
    # a run that ended mid-test would close the app under the help screen.
    app, engine = engine_app(ui_target(tmp_path / "t"), run_dir, [step("long", 0.4, sleep=60.0)])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), timeout=5, what="the help screen")
        await pilot.press("p")  # the help screen is modal: p does not reach the engine
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen), what="the help to close")
        engine.request_stop(now=True)
        await until(pilot, lambda: not app.is_running, what="the run to end")
    assert events_of(run_dir, ev.Paused) == []


async def test_a_resumed_run_shows_its_history_at_once(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    target = ui_target(tmp_path / "t")
    first, _ = engine_app(target, run_dir, [step("better", 0.4), step("worse", 0.9, on=(0.4, 0.05))])
    async with first.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: not first.is_running, what="the first run to end")
    assert [r.status for r in ledger(run_dir)] == ["keep", "keep", "discard"]

    app, _ = engine_app(target, run_dir, [step("again", 0.35, on=(0.4, 0.05))], max_experiments=3)
    async with app.run_test(size=SIZE) as pilot:
        # Before the engine emits anything, the replayed history is on screen.
        table = app.query_one("#results")
        assert [(r.exp, r.status) for r in app.view.rows] == [(0, "keep"), (1, "keep"), (2, "discard")]
        assert table.row_count == 3  # and the baseline
        assert app.view.best_exp == 1
        await until(pilot, lambda: not app.is_running, what="the resumed run to end")
    assert [(r.exp, r.status) for r in ledger(run_dir)][-1] == (3, "keep")
    started = [e for e in events_of(run_dir, ev.RunStarted)]
    assert [s.resumed for s in started] == [False, True]
