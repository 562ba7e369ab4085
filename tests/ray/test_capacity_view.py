"""A slot out of the pool, as RunView folds it from the events (the status
line, `ar-tui status` and attach all read it there). The real cluster's
events are replayed in test_ray_executor.py; these are the counts."""

from __future__ import annotations

from ar_tui.core import events as ev
from ar_tui.core.control import RunView
from ar_tui.headless import describe_status


def view_of(slots: int, *capacity: tuple[int, int]) -> RunView:
    view = RunView()
    view.apply(ev.RunStarted(tag="t", target="/t", run_dir="/r", agent="offline", model=None, metric="val_bpb",
                             direction="min", attended=False, veto_window_s=0, slots=["ray:gpu"] * slots,
                             lookahead=1, resumed=False))
    for available, total in capacity:
        view.apply(ev.CapacityChanged(available=available, total=total))
    return view


def test_slots_beyond_what_the_cluster_has_left_are_out_of_the_pool() -> None:
    assert view_of(2).capacity_warning == ""
    assert view_of(2, (1, 2)).capacity_warning == "1 slot out of the pool (the cluster has 1 of 2 GPUs)"
    assert view_of(4, (1, 4)).capacity_warning == "3 slots out of the pool (the cluster has 1 of 4 GPUs)"
    # Fewer slots than GPUs: a lost GPU may leave every slot one.
    assert view_of(2, (3, 4)).capacity_warning == ""


def test_capacity_back_clears_it_and_a_new_engine_starts_afresh() -> None:
    assert view_of(2, (1, 2), (2, 2)).capacity_warning == ""
    view = view_of(2, (1, 2))
    line = describe_status({**view.summary(), "live": True})
    assert "WARNING 1 slot out of the pool (the cluster has 1 of 2 GPUs)" in line
    assert "out of the pool" not in describe_status({**view.summary(), "live": False})
    view.apply(ev.RunStarted(tag="t", target="/t", run_dir="/r", agent="offline", model=None, metric="val_bpb",
                             direction="min", attended=False, veto_window_s=0, slots=["ray:gpu"] * 2, lookahead=1,
                             resumed=True))
    assert view.capacity_warning == "" and view.summary()["capacity"] == ""


async def test_the_apps_status_line_says_a_slot_is_out_of_the_pool() -> None:
    from ar_tui.ui.app import ArTuiApp
    from ar_tui.ui.status_line import StatusLine
    from tests.ui.helpers import until
    from tests.ui.scripted_handle import T0, ScriptedHandle, session_events

    lost = ev.CapacityChanged(available=1, total=2, ts=T0 + 300)
    app = ArTuiApp(ScriptedHandle(), replay=[*session_events(slots=2), lost], clock=lambda: T0 + 330,
                   machine_sampler=lambda: [])
    async with app.run_test(size=(200, 40)) as pilot:
        line = app.query_one(StatusLine)
        await until(pilot, lambda: line._shown is not None and "out of the pool" in line._shown.plain,
                    what="the status line to say that a slot is out of the pool")
        assert "1 slot out of the pool (the cluster has 1 of 2 GPUs)" in line._shown.plain
