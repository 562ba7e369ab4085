"""A local HTTP sink that Apprise destinations point at: it records what
each request carried (method, path, headers, body) and can be told to be
slow or to refuse, like a webhook server that is down."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass
class Sink:
    received: list[Received] = field(default_factory=list)
    delay_s: float = 0.0  # answer this late (a slow server)
    status: int = 200
    port: int = 0
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.received.append(Received(request.method, request.path_qs, dict(request.headers), body))
        return web.json_response({"ok": True, "success": True}, status=self.status)

    async def start(self) -> "Sink":
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # the port the OS picked
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def bodies(self) -> list[str]:
        return [r.text for r in self.received]
