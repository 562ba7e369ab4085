"""Real tracker servers for the tests, on 127.0.0.1 only, and a headless
`ar-tui` night that logs to them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import ROOT

# A cold `mlflow server` imports a web stack and migrates its database: a
# minute on a loaded two-core machine.
MLFLOW_START_S = 240.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_mlflow_server(root: Path) -> tuple[subprocess.Popen, str]:
    """`mlflow server` with a sqlite store and artifacts served from `root`;
    returns the process and its URI once /health answers."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = open(root / "server.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + MLFLOW_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {(root / 'server.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                if answer.status == 200:
                    return process, uri
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"mlflow server did not answer in {MLFLOW_START_S:g} s")


def stop(process: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=5)  # its job runner may outlive a TERM: the sqlite store is the test's own
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)


def write_user_config(path: Path, text: str) -> dict[str, str]:
    """A user config file, and the environment that points ar-tui at it."""
    path.write_text(text)
    return dict(os.environ, AR_TUI_CONFIG=str(path))


def ar_tui(*args: object, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ar_tui.cli", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def headless_night(target: Path, run_dir: Path, env: dict[str, str], *extra: object,
                   experiments: int = 2) -> subprocess.CompletedProcess:
    return ar_tui("run", "--headless", "--target", target, "--tag", "night", "--run-dir", run_dir,
                  "--agent", "offline", "--unattended", "--baseline-runs", "1", "--lookahead", "0",
                  "--max-experiments", experiments, *extra, env=env)
