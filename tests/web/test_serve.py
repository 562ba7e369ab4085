"""`ar-tui serve` as a real child process: it listens on 127.0.0.1 only, a
request without the token is refused, and with the token a real headless
Chromium shows the app, checked through the browser's own screenshot. A key
pressed in the browser reaches the engine, here a scripted engine behind a real
control socket; closing the tab touches nothing. A finished run opens
read-only."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import signal
import time
from pathlib import Path

import aiohttp
import psutil
import pytest
from PIL import Image

from ar_tui.core import events as ev
from ar_tui.core.control.server import ControlServer
from ar_tui.ui.app import ArTuiApp
from ar_tui.ui.attached_app import AttachedApp, NoEngine
from ar_tui.ui.status_line import StatusLine
from tests.conftest import ar_tui_command
from tests.ui.helpers import until
from tests.ui.scripted_handle import T0, ScriptedHandle, night_events, session_events
from tests.web.chromium import Browser, share_of, status_band

SCREENSHOTS = Path(os.environ.get("AR_TUI_BROWSER_SHOTS", "")) if os.environ.get("AR_TUI_BROWSER_SHOTS") else None


def write_history(run_dir: Path, events: list[ev.Event]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "events.jsonl", "w") as out:
        for event in events:
            out.write(event.to_json() + "\n")


@contextlib.asynccontextmanager
async def serving(run_dir: Path):
    """`ar-tui serve RUN_DIR --port 0`; yields (process, url with token)."""
    process = await asyncio.create_subprocess_exec(
        *ar_tui_command(), "serve", str(run_dir), "--port", "0", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL, start_new_session=True)
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        match = re.search(r"(http://\S+/\?token=\S+)", line.decode())
        assert match, line
        # Read the rest as it comes, so that serve never blocks on a full pipe.
        process.output = bytearray(line)
        drain = asyncio.create_task(_collect(process))
        yield process, match.group(1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(process.wait(), 30)
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


async def _collect(process) -> None:
    while chunk := await process.stdout.read(65536):
        process.output += chunk


def viewers(serve_pid: int) -> list[psutil.Process]:
    """The tab processes serve started (python -m ar_tui.web.viewer)."""
    found = []
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(serve_pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if "ar_tui.web.viewer" in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                    found.append(child)
    return found


async def status_line_colour() -> tuple[int, int, int]:
    """The status line's background, as the app itself computes it."""
    app = ArTuiApp(ScriptedHandle(), replay=session_events(), clock=lambda: T0 + 330, machine_sampler=lambda: [])
    async with app.run_test(size=(120, 40)):
        return app.query_one(StatusLine).styles.background.rgb


async def test_serve_listens_on_loopback_only_and_refuses_requests_without_the_token(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    write_history(run_dir, night_events())
    async with serving(run_dir) as (process, url):
        base, token = url.split("/?token=")
        assert base.startswith("http://127.0.0.1:")
        listening = [c for c in psutil.Process(process.pid).net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN]
        assert listening and all(c.laddr.ip == "127.0.0.1" for c in listening)
        # unsafe: the jar keeps cookies from an IP address, as a browser does.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            for path in ("/", "/ws", "/static/js/textual.js", f"/?token={token[:-1]}x", "/?token="):
                async with session.get(base + path) as response:
                    assert response.status == 403, path
            async with session.get(url) as response:
                assert response.status == 200
                assert "textual.js" in await response.text()
            # The page's own requests carry the token as a cookie.
            async with session.get(base + "/static/js/textual.js") as response:
                assert response.status == 200
        async with aiohttp.ClientSession() as fresh:  # no cookie: refused again
            async with fresh.get(base + "/static/js/textual.js") as response:
                assert response.status == 403


@pytest.mark.system  # a real chromium
async def test_a_browser_tab_is_a_viewer_whose_keys_reach_the_engine_and_closing_it_touches_nothing(
        tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    write_history(run_dir, session_events())
    handle = ScriptedHandle(clock=time.time)
    control = ControlServer(handle, run_dir)
    await control.start()
    colour = await status_line_colour()
    try:
        async with serving(run_dir) as (process, url), Browser(1280, 800) as browser:
            await browser.navigate(url)
            await browser.until(lambda: browser.evaluate("document.body.classList.contains('-first-byte')"),
                                "the app's first output in the page")
            # The tab attached to the engine like `ar-tui attach`.
            await browser.until(lambda: any(c.subscribed for c in control.clients), "the tab to subscribe")

            async def drawn() -> bytes | None:
                png = await browser.screenshot()
                return png if share_of(png, colour, status_band(browser.width)) > 0.3 else None

            before = await browser.until(drawn, "the status line in the browser's screenshot")
            if SCREENSHOTS:
                (SCREENSHOTS / "browser-200x60.png").write_bytes(before)
            await browser.focus_terminal()
            await browser.press("p")
            await browser.until(lambda: handle.calls == [("pause",)], "the key to reach the engine")

            async def redrawn() -> bool:
                png = await browser.screenshot()
                band = status_band(browser.width)
                return Image.open(io.BytesIO(png)).crop(band).tobytes() != Image.open(io.BytesIO(before)).crop(
                    band).tobytes()

            await browser.until(redrawn, "the paused state in the screenshot")
            assert viewers(process.pid)
            await browser.close_tab()
            await browser.until(lambda: not viewers(process.pid), "the tab's viewer to end")
            await browser.until(lambda: not control.clients, "the viewer to leave the control socket")
            assert process.returncode is None  # serve goes on for the next tab
        assert handle.calls == [("pause",)]  # nothing stopped, nothing else sent
    finally:
        await control.close()


@pytest.mark.system  # a real chromium
async def test_a_finished_run_opens_read_only_in_the_browser(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    stopped = ev.RunStopped(reason="max experiments reached", experiments=12, kept=5, best_metric=0.971877,
                            baseline_metric=0.99838, improvement_pct=2.65, cost_usd=0.0, ts=T0 + 800)
    write_history(run_dir, [*night_events(), stopped])
    colour = await status_line_colour()
    async with serving(run_dir) as (process, url), Browser(1280, 800) as browser:
        await browser.navigate(url)
        await browser.until(lambda: browser.evaluate("document.body.classList.contains('-first-byte')"),
                            "the app's first output in the page")

        async def drawn() -> bool:
            png = await browser.screenshot()
            return share_of(png, colour, status_band(browser.width)) > 0.3

        await browser.until(drawn, "the finished run's app in the browser's screenshot")
        assert len(viewers(process.pid)) == 1


async def test_a_read_only_view_greys_the_engine_keys_and_q_leaves_at_once(tmp_path: Path) -> None:
    app = AttachedApp(NoEngine(tmp_path), replay=night_events(), read_only=True, machine_sampler=lambda: [])
    async with app.run_test(size=(120, 40)) as pilot:
        for action in ("toggle_pause", "veto", "toggle_attended", "stop_run"):
            assert app.check_action(action, ()) is None
        await pilot.press("p", "x")
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running, timeout=10, what="the app to leave")
