"""A slot out of the pool, as RunView folds it from the events (the status
line, `ar-tui status` and attach all read it there). The real cluster's
events are replayed in test_ray_executor.py; these are the counts."""

from __future__ import annotations

from ar_tui.core import events as ev
from ar_tui.core.control.view import RunView
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


async def status_line_after(event: ev.Event, expected: str) -> str:
    """The app's status line once it shows `expected`, with `event` replayed after a session."""
    from ar_tui.ui.app import ArTuiApp
    from ar_tui.ui.status_line import StatusLine
    from tests.ui.helpers import until
    from tests.ui.scripted_handle import T0, ScriptedHandle, session_events

    app = ArTuiApp(ScriptedHandle(), replay=[*session_events(slots=2), event], clock=lambda: T0 + 330,
                   machine_sampler=lambda: [])
    async with app.run_test(size=(200, 40)) as pilot:
        line = app.query_one(StatusLine)
        await until(pilot, lambda: line._shown is not None and expected in line._shown.plain,
                    what=f"the status line to say {expected!r}")
        return line._shown.plain


async def test_the_apps_status_line_says_a_slot_is_out_of_the_pool() -> None:
    from tests.ui.scripted_handle import T0

    lost = ev.CapacityChanged(available=1, total=2, ts=T0 + 300)
    assert "1 slot out of the pool (the cluster has 1 of 2 GPUs)" in await status_line_after(lost, "out of the pool")

NO_SANDBOX = "sandbox: NONE, runs are not confined (no backend works here: bwrap not found)"


def test_a_node_without_a_sandbox_makes_the_run_unconfined_until_it_has_one() -> None:
    view = view_of(2)
    view.apply(ev.RunStarted(tag="t", target="/t", run_dir="/r", agent="offline", model=None, metric="val_bpb",
                             direction="min", attended=False, veto_window_s=0, slots=["ray:gpu"] * 2, lookahead=1,
                             resumed=False, sandbox="sandbox: bubblewrap, network off"))
    assert not view.unconfined and view.unconfined_where == ""
    # A node with a weaker sandbox than this machine's is still confined.
    view.apply(ev.NodeSandbox(node="a" * 40, sandbox="sandbox: landlock, network off", confined=True))
    assert not view.unconfined
    view.apply(ev.NodeSandbox(node="b" * 40, sandbox=NO_SANDBOX, confined=False))
    assert view.unconfined and not view.unconfined_here
    assert view.unconfined_where == f"1 Ray node without a sandbox: bbbbbbbb: {NO_SANDBOX}"
    line = describe_status({**view.summary(), "live": True})
    assert f"WARNING 1 Ray node without a sandbox: bbbbbbbb: {NO_SANDBOX}" in line
    # The node gets a sandbox (bubblewrap installed, its worker restarted): said once it runs a trial.
    view.apply(ev.NodeSandbox(node="b" * 40, sandbox="sandbox: bubblewrap, network off", confined=True))
    assert not view.unconfined and "WARNING" not in describe_status({**view.summary(), "live": True})
    # A new engine learns its nodes afresh.
    view.apply(ev.NodeSandbox(node="c" * 40, sandbox=NO_SANDBOX, confined=False))
    view.apply(ev.RunStarted(tag="t", target="/t", run_dir="/r", agent="offline", model=None, metric="val_bpb",
                             direction="min", attended=False, veto_window_s=0, slots=["ray:gpu"] * 2, lookahead=1,
                             resumed=True, sandbox="sandbox: bubblewrap, network off"))
    assert not view.unconfined


async def test_the_apps_status_line_says_a_node_runs_unconfined() -> None:
    from tests.ui.scripted_handle import T0

    bare = ev.NodeSandbox(node="d" * 40, sandbox=NO_SANDBOX, confined=False, ts=T0 + 300)
    assert "NOT SANDBOXED ON 1 RAY NODE" in await status_line_after(bare, "NOT SANDBOXED")
