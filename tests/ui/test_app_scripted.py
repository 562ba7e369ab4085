"""The app against a scripted handle: drawing under a flood of output,
streaming cost, greyed keys, NO_COLOR, threads and a crashing engine."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading

from rich.console import Console

from ar_tui.core import events as ev
from ar_tui.ui.app import ArTuiApp
from ar_tui.ui.confirm_screen import ConfirmScreen
from ar_tui.ui.machine_pane import PsutilSampler, default_sampler
from tests.ui.helpers import redrawn, until
from tests.ui.scripted_handle import T0, ScriptedHandle, running_events, session_events


def make_app(handle: ScriptedHandle, **kw) -> ArTuiApp:
    return ArTuiApp(handle, replay=session_events(), clock=lambda: T0 + 330, machine_sampler=lambda: ["cpu"], **kw)


def plain(widget) -> str:
    """What a Static shows, as plain text."""
    console = Console(width=120, color_system=None)
    with console.capture() as capture:
        console.print(widget.content)
    return capture.get()


def visible_log(app: ArTuiApp) -> list[str]:
    log = app.training_log
    return [log.render_line(y).text.rstrip() for y in range(log.scrollable_content_region.height)]


async def test_a_flood_of_output_stays_bounded_and_the_pane_follows_the_tail() -> None:
    handle = ScriptedHandle()
    app = make_app(handle, log_lines=2000)
    async with app.run_test(size=(120, 40)) as pilot:
        handle.emit(*running_events())
        for i in range(60_000):
            handle.emit(ev.LogLine(exp=4, slot=0, text=f"line {i}"))
        handle.emit(ev.LogLine(exp=4, slot=0, text="progress 1%"))
        handle.emit(ev.LogLine(exp=4, slot=0, text="progress 2%", replace=True))
        assert len(app.logs.slot(0).lines) == 2000

        def shown() -> list[str]:
            return [line for line in visible_log(app) if line]

        await until(pilot, lambda: shown()[-2:] == ["line 59999", "progress 2%"], timeout=5,
                    what="the tail on screen")
        assert not any("progress 1%" in line for line in shown())


async def test_scrolled_up_the_log_stays_on_the_lines_being_read() -> None:
    handle = ScriptedHandle()
    app = make_app(handle, log_lines=500)
    async with app.run_test(size=(120, 40)) as pilot:
        handle.emit(*running_events())
        for i in range(500):
            handle.emit(ev.LogLine(exp=4, slot=0, text=f"line {i}"))
        await until(pilot, lambda: [line for line in visible_log(app) if line][-1:] == ["line 499"], timeout=5,
                    what="the tail on screen")
        # The tail is drawn before the next layout gives the pane its
        # scrollbar; until then a page-up has nothing to scroll (a loaded
        # machine widens that window).
        await until(pilot, lambda: app.training_log.allow_vertical_scroll, timeout=5, what="the pane to scroll")
        app.training_log.focus()
        await pilot.press("pageup", "pageup", "pageup")
        first = visible_log(app)[0]
        assert first.startswith("line ") and not app.training_log.following
        for i in range(500, 600):  # 100 more lines push 100 out of the front
            handle.emit(ev.LogLine(exp=4, slot=0, text=f"line {i}"))
        await redrawn(pilot)  # the pane has synced the 100 new lines
        assert len(app.logs.slot(0).lines) == 500 and app.logs.slot(0).lines[-1] == "line 599"
        assert not app.training_log.following
        assert visible_log(app)[0] == first


async def test_the_cost_meter_counts_a_response_while_it_streams() -> None:
    handle = ScriptedHandle()
    app = make_app(handle)
    async with app.run_test(size=(200, 60)) as pilot:
        usage = dict(exp=5, model="m", input_tokens=1000, output_tokens=100, cache_write_5m_tokens=0,
                     cache_write_1h_tokens=0, cache_read_tokens=0)
        handle.emit(ev.Usage(**usage, cost_usd=0.08, streaming=True))
        # 0.42 settled + 0.08 streaming
        await until(pilot, lambda: "$0.500 of $5.000" in plain(app.cost_meter), timeout=5, what="the streamed cost")
        assert "streaming" in plain(app.cost_meter)
        handle.emit(ev.Usage(**usage, cost_usd=0.09, total_cost_usd=0.51, total_input_tokens=16200,
                             total_output_tokens=4200, total_cache_write_tokens=21000,
                             total_cache_read_tokens=160000, cache_hit_share=0.8))
        await until(pilot, lambda: "$0.510 of $5.000" in plain(app.cost_meter), timeout=5, what="the settled cost")
        assert "streaming" not in plain(app.cost_meter)


async def test_keys_that_do_not_apply_are_greyed_out() -> None:
    handle = ScriptedHandle()
    app = make_app(handle)
    async with app.run_test(size=(200, 60)) as pilot:
        # Proposal 4 is ready but not started: veto rejects it; nothing runs to keep.
        assert app.check_action("veto", ()) is True
        assert app.check_action("force_keep", ()) is None
        assert app.check_action("start_now", ()) is None
        assert app.check_action("next_slot", ()) is False  # one slot: hidden
        footer_keys = {b.binding.key: b.enabled for b in app.screen.active_bindings.values()}
        assert footer_keys["k"] is False and footer_keys["v"] is True
        await pilot.press("k", "enter")
        assert handle.calls == []
        handle.emit(*running_events())
        await until(pilot, lambda: app.check_action("force_keep", ()) is True, timeout=5, what="exp 4 running")
        await pilot.press("k")
        assert handle.calls == [("force_keep", 4)]


async def test_no_color_leaves_only_greys_and_the_statuses_still_differ(monkeypatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(ScriptedHandle())
    async with app.run_test(size=(200, 60)) as pilot:
        await redrawn(pilot)
        assert app.no_color
        svg = app.export_screenshot()
    # The three window buttons of the SVG's frame are not the app's colours.
    colours = set(re.findall(r"fill=\"#([0-9a-fA-F]{6})\"", svg)) - {"ff5f57", "febc2e", "28c840"}
    assert colours
    for colour in colours:
        r, g, b = (int(colour[i:i + 2], 16) for i in (0, 2, 4))
        assert max(r, g, b) - min(r, g, b) <= 8, colour  # greys (the export's default text is c5c8c6)
    for mark in ("✓ keep", "· discard", "✗ crash"):
        assert mark in svg.replace("&#160;", " ")


async def test_events_from_another_thread_reach_the_screen() -> None:
    handle = ScriptedHandle()
    app = make_app(handle)
    async with app.run_test(size=(120, 40)) as pilot:
        thread = threading.Thread(target=handle.emit, args=(ev.Paused(paused=True),))
        thread.start()
        thread.join()
        await until(pilot, lambda: app.view.paused, timeout=5, what="the pause to arrive")


async def test_an_engine_error_keeps_the_app_open_with_the_error_shown() -> None:
    async def broken_engine():
        await asyncio.sleep(0.05)
        raise RuntimeError("disk on fire")

    app = make_app(ScriptedHandle(), run_engine=broken_engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.engine_error is not None, timeout=5, what="the engine error")
        await until(pilot, lambda: "disk on fire" in plain(app.agent_pane._body), timeout=5, what="the error shown")
        assert app.is_running
        await pilot.press("q")  # nothing left to stop: no question asked
        await until(pilot, lambda: not app.is_running, timeout=5, what="the app to exit")


def test_without_an_nvidia_gpu_the_machine_pane_uses_psutil() -> None:
    sampler = default_sampler()
    try:
        import pynvml

        pynvml.nvmlInit()
        has_gpu = pynvml.nvmlDeviceGetCount() > 0
    except Exception:
        has_gpu = False
    if has_gpu:
        lines = sampler()
        assert lines and all(line.startswith("gpu") for line in lines) and "°C" in lines[0]
    else:
        assert isinstance(sampler, PsutilSampler)
        lines = sampler()
        assert lines[0].startswith("cpu") and "GiB" in lines[1]


def test_the_engine_package_does_not_import_textual_or_rich() -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        "import ar_tui.core\n"
        "for info in pkgutil.iter_modules(ar_tui.core.__path__):\n"
        "    importlib.import_module(f'ar_tui.core.{info.name}')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich'))\n"
        "assert not bad, bad\n"
        "print(len([m for m in sys.modules if m.startswith('ar_tui.core.')]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 8  # every engine module was imported


async def test_s_shows_the_next_slots_log() -> None:
    handle = ScriptedHandle()
    app = ArTuiApp(handle, replay=session_events(slots=2), clock=lambda: T0 + 330, machine_sampler=lambda: ["cpu"])
    async with app.run_test(size=(200, 60)) as pilot:
        for slot, exp in ((0, 4), (1, 5)):
            handle.emit(ev.ExperimentStarted(exp=exp, slot=slot, device="cpu", commit="abc1234", parent="b2c3d4e",
                                             description=f"exp {exp}"))
            for i in range(3):
                handle.emit(ev.LogLine(exp=exp, slot=slot, text=f"slot {slot} line {i}"))
        await until(pilot, lambda: [line for line in visible_log(app) if line][-1:] == ["slot 0 line 2"], timeout=5,
                    what="slot 0's log")
        assert app.check_action("next_slot", ()) is True
        await pilot.press("s")
        await until(pilot, lambda: [line for line in visible_log(app) if line][-1:] == ["slot 1 line 2"]
                    and "exp 5" in str(app.training_log.border_title), timeout=5, what="slot 1's log and title")
        assert "exp 5" in str(app.training_log.border_title) and "slot 1" in str(app.training_log.border_title)
        await pilot.press("s")
        await until(pilot, lambda: [line for line in visible_log(app) if line][-1:] == ["slot 0 line 2"], timeout=5,
                    what="slot 0's log again")


async def test_attaching_mid_experiment_shows_its_log_so_far(tmp_path) -> None:
    log_path = tmp_path / "logs" / "4.log"
    log_path.parent.mkdir()
    log_path.write_bytes(b"".join(b"step %d\n" % i for i in range(1, 31)) + b"progress 10%\rprogress 20%\rprogress 30%")
    started = ev.ExperimentStarted(exp=4, slot=0, device="cpu", commit="e5f6071", parent="b2c3d4e",
                                   description="lower the weight decay", log_path=str(log_path), ts=T0 + 311)
    handle = ScriptedHandle()
    app = ArTuiApp(handle, replay=[*session_events(), started], log_dir=tmp_path / "logs", clock=lambda: T0 + 330,
                   machine_sampler=lambda: ["cpu"])
    async with app.run_test(size=(200, 60)) as pilot:
        await until(pilot, lambda: [line for line in visible_log(app) if line][-2:] == ["step 30", "progress 30%"],
                    timeout=5, what="the log file's tail")
        handle.emit(ev.LogLine(exp=4, slot=0, text="step 31"))
        await until(pilot, lambda: [line for line in visible_log(app) if line][-1:] == ["step 31"], timeout=5,
                    what="live lines after the file's")
        await pilot.press("q")  # attached: leaving asks, and stops nothing
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), timeout=5, what="the question")
        assert "goes on" in str(app.screen.query_one("#confirm-message").render())
        await pilot.press("y")
        await until(pilot, lambda: not app.is_running, timeout=5, what="the app to exit")
    assert handle.calls == []
