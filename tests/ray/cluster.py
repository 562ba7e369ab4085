"""A real two-node Ray cluster on 127.0.0.1, for the tests and the benchmark.

Ray advertises the host's own address even when told 127.0.0.1, and writes
its session files and token under HOME and its temp dir: so the cluster runs
inside a network namespace that has only loopback (`unshare -n`, as root),
with HOME and the temp dir inside the caller's temporary directory. Both
nodes have logical GPUs (`--num-gpus`), which Ray hands out like real ones.

`in_loopback_namespace` re-executes a script under `unshare -n`; inside it,
`LocalCluster` starts the head and a worker node and ends exactly the
processes it started (never `ray stop`, which ends every Ray on the machine).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
HEAD_PORT = 6390
WORKER_NODE_MANAGER_PORT = 45123
NAMESPACE_MARK = "AR_TUI_TEST_IN_NETNS"
# Notice a dead node in seconds, not the default half minute.
FAST_HEALTH_CHECKS = {
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3",
    "RAY_health_check_initial_delay_ms": "0",
}


def in_loopback_namespace(script: Path, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run `script args` in a fresh network namespace with only loopback up."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        raise RuntimeError("these tests need unshare and ip (util-linux, iproute2) and root")
    inner = f"ip link set lo up && exec {sys.executable} {script} " + " ".join(args)
    env = dict(os.environ, PYTHONPATH=str(ROOT), **{NAMESPACE_MARK: "1"})
    return subprocess.run(["unshare", "-n", "sh", "-c", inner], env=env, capture_output=True, text=True,
                          timeout=timeout)


class LocalCluster:
    def __init__(self, base: Path, gpus_per_node: int = 1, cpus_per_node: int = 1) -> None:
        if not os.environ.get(NAMESPACE_MARK):
            raise RuntimeError("LocalCluster runs only inside in_loopback_namespace")
        self.base = base
        self.home = base / "home"
        self.temp = base / "ray-tmp"
        self.gpus = gpus_per_node
        self.cpus = cpus_per_node
        self.address = f"127.0.0.1:{HEAD_PORT}"
        for path in (self.home, self.temp):
            path.mkdir(parents=True, exist_ok=True)
        os.environ["HOME"] = str(self.home)
        os.environ["RAY_ADDRESS"] = self.address
        os.environ.update(FAST_HEALTH_CHECKS)

    def node_root(self, name: str) -> Path:
        return self.base / f"node-{name}"

    def _start(self, name: str, args: list[str]) -> None:
        env = dict(os.environ, AR_TUI_RAY_NODE_ROOT=str(self.node_root(name)), PYTHONPATH=str(ROOT))
        subprocess.run([RAY, "start", *args, "--node-ip-address=127.0.0.1", f"--num-gpus={self.gpus}",
                        f"--num-cpus={self.cpus}", "--disable-usage-stats"], env=env, check=True,
                       capture_output=True, text=True, timeout=120)

    def start(self) -> "LocalCluster":
        self._start("head", ["--head", f"--port={HEAD_PORT}", f"--temp-dir={self.temp}", "--include-dashboard=false"])
        self.start_worker()
        return self

    def start_worker(self, fixed_port: bool = True) -> None:
        """The second node; started again after a kill, it takes any free port."""
        port = [f"--node-manager-port={WORKER_NODE_MANAGER_PORT}"] if fixed_port else []
        self._start("worker", [f"--address={self.address}", *port])

    def worker_raylet(self) -> psutil.Process:
        for proc in self._ours():
            cmd = " ".join(proc.info["cmdline"] or [])
            if "raylet/raylet" in cmd and f"--node_manager_port={WORKER_NODE_MANAGER_PORT}" in cmd:
                return proc
        raise RuntimeError("the worker node's raylet is not running")

    def kill_worker_node(self) -> float:
        """SIGKILL the worker node's raylet (the node dies); returns when."""
        self.worker_raylet().send_signal(signal.SIGKILL)
        return time.time()

    def _ours(self) -> list[psutil.Process]:
        return processes_naming(self.temp)

    def stop(self) -> None:
        end_processes_naming(self.temp)


def processes_naming(path: Path) -> list[psutil.Process]:
    """The processes whose command line names `path`: a cluster's all name its temp dir."""
    mark = str(path)
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid != os.getpid() and any(mark in part for part in proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def end_processes_naming(path: Path) -> int:
    """End a cluster's processes, also from outside its namespace (after a
    timeout killed the script that would have)."""
    ended = 0
    for proc in processes_naming(path):
        try:
            proc.kill()
            ended += 1
        except psutil.Error:
            pass
    return ended


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)
