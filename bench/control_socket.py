"""What the control socket costs the engine, and how fast the detach commands answer.

1. Engine-side CPU per training log line with 0, 1 and 2 attached viewers
   (each a separate process reading the socket), measured with
   time.process_time around the engine's emits.
2. Round trip of a `status` request over the socket (median, p95).
3. Wall time of `ar-tui run --detach` (until the engine's socket answers) and
   of `ar-tui status` on a tiny target, as a user would type them.

    .venv/bin/python bench/control_socket.py [--lines 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ar_tui.core import events as ev  # noqa: E402
from ar_tui.core.control.client import request  # noqa: E402
from ar_tui.core.control.server import SOCKET_NAME, ControlServer  # noqa: E402

VIEWER = textwrap.dedent(
    """\
    import socket, sys
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    s.sendall(b'{"cmd": "subscribe", "id": 1}\\n')
    lines = 0
    while True:
        data = s.recv(1 << 20)
        if not data:
            break
        lines += data.count(b"\\n")
    print(lines - 1)  # less the subscribe reply
    """
)


class EventSource:
    """The engine's observing half, without an engine: the server's only need."""

    def __init__(self) -> None:
        self.observers: list[Callable[[ev.Event], None]] = []

    def subscribe(self, observer):
        self.observers.append(observer)
        return lambda: self.observers.remove(observer)

    def emit(self, event: ev.Event) -> None:
        for observer in self.observers:
            observer(event)


async def fan_out(lines: int) -> None:
    run_dir = Path(tempfile.mkdtemp(prefix="ar-bench-"))
    source = EventSource()
    server = ControlServer(source, run_dir)
    await server.start()
    for viewers in (0, 1, 2):
        procs = [subprocess.Popen([sys.executable, "-c", VIEWER, str(run_dir / SOCKET_NAME)], stdout=subprocess.PIPE)
                 for _ in range(viewers)]
        while sum(c.subscribed for c in server.clients) < viewers:
            await asyncio.sleep(0.01)
        cpu = time.process_time()
        for i in range(lines):
            source.emit(ev.LogLine(exp=1, slot=0, text=f"step {i:6d} | loss 3.141593 | lr 0.000300 | 12345 tok/s"))
            if i % 200 == 0:
                await asyncio.sleep(0)  # the engine yields to its loop as it reads the child's output
        while any(c.backlog for c in server.clients):
            await asyncio.sleep(0.001)
        cpu = time.process_time() - cpu
        for client in list(server.clients):
            client.abort()
        await asyncio.sleep(0.2)
        received = [int(p.communicate()[0]) for p in procs]
        print(f"{viewers} viewer(s): {cpu / lines * 1e6:6.1f} us engine CPU per log line; "
              f"lines received: {received or '-'} of {lines}")
    latencies = []
    for _ in range(300):
        start = time.perf_counter()
        await request(run_dir, "status")
        latencies.append(time.perf_counter() - start)
    latencies.sort()
    print(f"status request (connect, ask, answer, close): median {latencies[150] * 1e3:.2f} ms, "
          f"p95 {latencies[285] * 1e3:.2f} ms")
    await server.close()


def commands() -> None:
    home = Path(tempfile.mkdtemp(prefix="ar-bench-home-"))
    target = home / "target"
    target.mkdir()
    (target / "train.py").write_text("import time\nLR = 0.5\ntime.sleep(1)\nprint('val_bpb: %.6f' % (1 + LR))\n")
    (target / "prepare.py").write_text("DATA = 1\n")
    env = dict(os.environ, AR_TUI_HOME=str(home), GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b",
               GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@b")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run(["git", *args], cwd=target, env=env, check=True)
    ar_tui = [sys.executable, "-m", "ar_tui.cli"]
    run_dir = home / "runs" / "bench"

    def timed(*args: str) -> float:
        start = time.perf_counter()
        subprocess.run([*ar_tui, *args], env=env, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        return time.perf_counter() - start

    detach = timed("run", "--detach", "--target", str(target), "--tag", "bench", "--agent", "offline",
                   "--unattended", "--baseline-runs", "1", "--lookahead", "0")
    status = sorted(timed("status", str(run_dir)) for _ in range(5))[2]
    stop = timed("stop", str(run_dir), "--now", "--wait")
    print(f"ar-tui run --detach: {detach:.2f} s until the engine answers; ar-tui status: {status:.2f} s (median of 5); "
          f"ar-tui stop --now --wait: {stop:.2f} s (includes writing the report)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    asyncio.run(fan_out(args.lines))
    commands()


if __name__ == "__main__":
    main()
