"""`ar-tui serve`: the attached app in a browser, through textual-serve.

It listens on 127.0.0.1 only: whoever watches from elsewhere tunnels with
`ssh -L`. Every request needs the random token printed with the URL; the page
itself (opened with `?token=`) sets it as a same-site, HTTP-only cookie, so
the websocket, the scripts and the fonts that page loads carry it too. A
request with neither gets 403.

Each websocket (a browser tab) starts its own viewer process
(`ar_tui.web.viewer`), which attaches to the run's control socket like
`ar-tui attach`, or opens a finished run read-only; closing the tab ends that
process and touches nothing else.

textual-serve is used through its public parts: its `Server` handlers for the
page, the websocket and downloads, mounted on an aiohttp application of ours
that adds the token check as a middleware.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import secrets
import shlex
import signal
import sys
from pathlib import Path
from typing import Awaitable, Callable

import aiohttp_jinja2
import jinja2
from aiohttp import web
from textual_serve.server import Server

from ar_tui.core.executors.process import SECRET_ENV_PREFIXES

HOST = "127.0.0.1"
DEFAULT_PORT = 8000
TOKEN_COOKIE = "ar_tui_token"


def viewer_command(run_dir: Path) -> str:
    """The shell command textual-serve runs for each tab."""
    return f"{shlex.quote(sys.executable)} -m ar_tui.web.viewer {shlex.quote(str(run_dir))}"


class TokenServer(Server):
    """textual-serve's server behind a token check, on 127.0.0.1."""

    def __init__(self, run_dir: Path, token: str, port: int = DEFAULT_PORT) -> None:
        super().__init__(viewer_command(run_dir), host=HOST, port=port, title=f"ar-tui · {Path(run_dir).name}")
        self.run_dir = Path(run_dir)
        self.token = token

    def _authorised(self, request: web.Request) -> bool:
        offered = request.query.get("token") or request.cookies.get(TOKEN_COOKIE) or ""
        return hmac.compare_digest(offered.encode(), self.token.encode())

    @web.middleware
    async def require_token(self, request: web.Request,
                            handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if not self._authorised(request):
            raise web.HTTPForbidden(text="ar-tui serve: this URL needs the token printed when serve started\n")
        response = await handler(request)
        if request.query.get("token") and isinstance(response, web.Response):
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="Strict", path="/")
        return response

    def web_app(self) -> web.Application:
        app = web.Application(middlewares=[self.require_token])
        aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(self.templates_path))
        app.add_routes([
            web.get("/", self.handle_index, name="index"),
            web.get("/ws", self.handle_websocket, name="websocket"),
            web.get("/download/{key}", self.handle_download, name="download"),
            web.static("/static", self.statics_path, name="static"),
        ])
        return app


async def serve(run_dir: Path, port: int = DEFAULT_PORT, *, announce: Callable[[str], None] = print,
                stop: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set (or SIGINT / SIGTERM). `port` 0 picks a free one."""
    # The tabs' processes inherit this environment, and need no secret: they
    # only talk to the control socket.
    for name in [n for n in os.environ if n.startswith(SECRET_ENV_PREFIXES)]:
        del os.environ[name]
    token = secrets.token_urlsafe(24)
    server = TokenServer(run_dir, token, port)
    runner = web.AppRunner(server.web_app(), handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, HOST, port)
        await site.start()
        bound = runner.addresses[0][1]
        # The page tells the browser where the websocket is from this URL.
        server.public_url = f"http://{HOST}:{bound}"
        announce(f"ar-tui: serving {run_dir} on {server.public_url}/?token={token}\n"
                 f"  from another machine: ssh -L {bound}:{HOST}:{bound} THIS_HOST, then open that URL\n"
                 f"  Ctrl+C stops serving; the run goes on")
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        await stop.wait()
    finally:
        await runner.cleanup()


def main(run_dir: Path | None, port: int = DEFAULT_PORT) -> int:
    """`ar-tui serve [RUN_DIR] [--port N]`: the run named, else the most
    recent live run, else the most recent run (read-only)."""
    from ar_tui.core.records.rundir import find_run_dirs, is_run_dir, live_run_dirs
    from ar_tui.exit_codes import EXIT_BAD_INPUT, EXIT_OK

    if run_dir is None:
        candidates = live_run_dirs() or find_run_dirs()
        if not candidates:
            print("ar-tui: no runs on this machine; name a run dir", file=sys.stderr)
            return EXIT_BAD_INPUT
        run_dir = candidates[0]
    run_dir = Path(run_dir).resolve()
    if not is_run_dir(run_dir):
        print(f"ar-tui: {run_dir} is not an ar-tui run dir (no events.jsonl)", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not 0 <= port <= 65535:
        print(f"ar-tui: --port must be between 0 and 65535, not {port}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        asyncio.run(serve(run_dir, port, announce=lambda text: print(text, flush=True)))
    except OSError as exc:
        print(f"ar-tui: cannot listen on {HOST}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK
