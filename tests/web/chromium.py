"""A real headless Chromium driven over the DevTools protocol (CDP), spoken
directly on its websocket with aiohttp: navigate, read page state, type keys
and take the browser's own screenshots.

Debian's `chromium` package provides the browser (`.ci/run` installs it)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import aiohttp
from PIL import Image

from tests.polling import wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """One headless Chromium with one page."""

    def __init__(self, width: int = 1280, height: int = 800) -> None:
        self.width, self.height = width, height
        self.profile = Path(tempfile.mkdtemp(prefix="ar-tui-chromium-"))
        self.process: subprocess.Popen | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future] = {}
        self._reader: asyncio.Task | None = None

    async def __aenter__(self) -> "Browser":
        assert CHROMIUM, "chromium is not installed (apt-get install -y chromium; without root: pytest -m 'not system')"
        self.process = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             "--enable-unsafe-swiftshader", f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             f"--window-size={self.width},{self.height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        # Chromium writes its chosen port and the browser's websocket path here.
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            await asyncio.sleep(0.05)
        self._endpoint = f"http://127.0.0.1:{port_file.read_text().splitlines()[0]}"
        self._session = aiohttp.ClientSession()
        async with self._session.get(f"{self._endpoint}/json/list") as response:
            pages = [t for t in await response.json() if t["type"] == "page"]
        self._page_id = pages[0]["id"]
        self._ws = await self._session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        await self.call("Page.enable")
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        if self.process is not None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(15)
            if self.process.poll() is None:
                self.process.kill()
        shutil.rmtree(self.profile, ignore_errors=True)

    async def close_tab(self) -> None:
        """Close the page, as a person closes a browser tab."""
        assert self._session is not None
        async with self._session.get(f"{self._endpoint}/json/close/{self._page_id}") as response:
            assert response.status == 200, await response.text()
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None

    async def _read(self) -> None:
        assert self._ws is not None
        async for message in self._ws:
            data = json.loads(message.data)
            future = self._replies.pop(data.get("id"), None)
            if future is not None and not future.done():
                if "error" in data:
                    future.set_exception(RuntimeError(str(data["error"])))
                else:
                    future.set_result(data.get("result", {}))

    async def call(self, method: str, **params: Any) -> dict:
        assert self._ws is not None
        message_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._replies[message_id] = future
        await self._ws.send_str(json.dumps({"id": message_id, "method": method, "params": params}))
        return await asyncio.wait_for(future, 60)

    async def navigate(self, url: str) -> None:
        """Open `url` and return once its document has loaded."""
        await self.call("Page.navigate", url=url)

        async def loaded() -> bool:
            try:
                return await self.evaluate("location.href === %s && document.readyState === 'complete'"
                                           % json.dumps(url))
            except RuntimeError:  # between documents: no page to ask yet
                return False

        await self.until(loaded, f"{url} to load")

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    async def until(self, predicate: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
        """Poll a (possibly async) predicate until it is true."""
        return await wait_for(predicate, timeout, what, interval=0.1)

    async def focus_terminal(self) -> None:
        """Give the terminal the keyboard, as a click into it would: xterm.js
        reads keys from its hidden textarea."""
        await self.evaluate("document.querySelector('.xterm-helper-textarea').focus()")

    async def press(self, key: str) -> None:
        """A printable key, pressed and released (a key down with text is
        what types it, as Puppeteer does)."""
        code = f"Key{key.upper()}" if key.isalpha() else ""
        await self.call("Input.dispatchKeyEvent", type="keyDown", key=key, code=code, text=key, unmodifiedText=key,
                        windowsVirtualKeyCode=ord(key.upper()))
        await self.call("Input.dispatchKeyEvent", type="keyUp", key=key, code=code,
                        windowsVirtualKeyCode=ord(key.upper()))

    async def screenshot(self, path: Path | None = None) -> bytes:
        result = await self.call("Page.captureScreenshot", format="png")
        png = base64.b64decode(result["data"])
        if path is not None:
            Path(path).write_bytes(png)
        return png


def share_of(png: bytes, colour: tuple[int, int, int], box: tuple[int, int, int, int]) -> float:
    """The share of the pixels in `box` (left, top, right, bottom) of a
    screenshot that are exactly `colour`."""
    pixels = list(Image.open(io.BytesIO(png)).convert("RGB").crop(box).get_flattened_data())
    return sum(1 for p in pixels if p == colour) / len(pixels)


def status_band(width: int) -> tuple[int, int, int, int]:
    """Where the app's status line is in a page of that width: the first two
    rows of 16 px cells, past the " ar-tui " label."""
    return (120, 2, width - 40, 30)
