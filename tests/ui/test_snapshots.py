"""Snapshots of the main layouts, from a scripted handle with fixed
timestamps, a fixed clock and fixed machine figures, so they change only when
the UI does. Update with `pytest tests/ui/test_snapshots.py --snapshot-update`
and look at the SVGs before committing them."""

from __future__ import annotations

from ar_tui.ui.app import ArTuiApp
from tests.ui.helpers import redrawn
from tests.ui.scripted_handle import T0, ScriptedHandle, running_events, session_events, veto_window_events

MACHINE = ["cpu   37.5%  (16 cores)", "mem  12.3/125.8 GiB  (10%)", "gpu  none found (NVML)"]


def make_app(extra_events) -> ArTuiApp:
    handle = ScriptedHandle()
    app = ArTuiApp(handle, replay=[*session_events(), *extra_events()], clock=lambda: T0 + 330,
                   machine_sampler=lambda: MACHINE)
    return app


async def settle(pilot) -> None:
    await redrawn(pilot)


def test_main_screen_200x60_mid_run(snap_compare) -> None:
    assert snap_compare(make_app(running_events), terminal_size=(200, 60), run_before=settle)


def test_main_screen_80x24_shows_one_pane_with_tabs(snap_compare) -> None:
    assert snap_compare(make_app(running_events), terminal_size=(80, 24), run_before=settle)


def test_80x24_log_tab(snap_compare) -> None:
    async def show_log(pilot) -> None:
        await pilot.press("2")
        await settle(pilot)

    assert snap_compare(make_app(running_events), terminal_size=(80, 24), run_before=show_log)


def test_veto_window_countdown_80x24(snap_compare) -> None:
    assert snap_compare(make_app(veto_window_events), terminal_size=(80, 24), run_before=settle)


def test_veto_modal_200x60(snap_compare) -> None:
    async def open_veto(pilot) -> None:
        await pilot.press("v")
        await settle(pilot)

    assert snap_compare(make_app(running_events), terminal_size=(200, 60), run_before=open_veto)


def test_help_screen_80x24(snap_compare) -> None:
    async def open_help(pilot) -> None:
        await pilot.press("question_mark")
        await settle(pilot)

    assert snap_compare(make_app(running_events), terminal_size=(80, 24), run_before=open_help)
