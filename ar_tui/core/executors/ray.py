"""`--executor ray`: trials on a Ray cluster, the engine on this machine.

The engine, the ledger, the app and the decisions stay where `ar-tui run`
runs. A trial goes to the cluster whole: a Ray task (one GPU per GPU slot, so
`CUDA_VISIBLE_DEVICES` is Ray's assignment) receives the experiment commit's
files as a tar bundle (no shared filesystem is assumed), runs the target's
prepare once per node, then training, the protected-file check and the trusted
evaluator there, with the same `run_trial_steps` as the local executor, each
run confined as the engine confines it here (`ray_node.py`, the node's side).
Log lines stream back live (the task is a Ray generator); only results come back.

Failure:
- a veto, stop or timeout ends the trial's whole process group on the node
  (the child runs in its own session; Ray's cancel only interrupts the task);
- a node that dies mid-trial costs time only: the trial runs again wherever a
  GPU is free (it waits while the cluster has none), a notice says so, and it
  is never recorded as a crash;
- every process a trial starts on a node carries a marker naming this run, so
  an engine that starts (a resumed one after a kill -9 included) ends what an
  earlier engine of the same run left on every node.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any

import ar_tui
from ar_tui.core.errors import UserError
from ar_tui.core.executors.base import (
    EVALUATE_LINE_PREFIX,
    OnCapacity,
    OnEvaluating,
    OnLine,
    OnNodeSandbox,
    OnNotice,
    RunResult,
    RunSpec,
    TrialPlan,
    TrialSteps,
)
from ar_tui.core.executors.local import TAIL_LINES, LocalExecutor
from ar_tui.core.executors.node import STOP_WAIT_S, end_orphans_on_node, node_trial, one_line, run_key

GPU_DEVICE = "ray:gpu"
CPU_DEVICE = "ray:cpu"
# A trial whose node keeps dying is not going to find a healthy one by retrying forever.
MAX_NODE_LOSSES = 5
REACH_TIMEOUT_S = 5.0
# While a node's slot is out of the pool, how often the cluster is asked whether capacity is back.
CAPACITY_POLL_S = 1.0


def install_hint() -> str:
    return "--executor ray needs Ray: pip install 'ar-tui[ray]'"


def git_bundle(worktree: Path) -> bytes:
    """The files of the worktree's HEAD commit (the experiment), as a tar."""
    return subprocess.run(["git", "-C", str(worktree), "archive", "--format=tar", "HEAD"], check=True,
                          capture_output=True).stdout


def _check_reachable(address: str) -> None:
    """Ray retries an address that does not answer for minutes: a bad
    --ray-address gets its one line in seconds instead."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", "local": Ray's own names
    try:
        socket.create_connection((host, int(port)), timeout=REACH_TIMEOUT_S).close()
    except OSError as exc:
        raise UserError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


def engine_versions() -> tuple[str, str]:
    """(Ray, Python) of this process, as Ray itself compares them."""
    import ray

    return ray.__version__, ".".join(map(str, sys.version_info[:3]))


def cluster_versions(address: str) -> dict | None:
    """What the cluster at `address` reports it runs: the metadata its head
    stored in its GCS (`ray_version`, `python_version`), the record Ray's own
    version check reads. None when it cannot be read (an older Ray, a `ray://`
    address): Ray's own check then decides."""
    try:
        from ray._raylet import GcsClient

        stored = GcsClient(address=address).internal_kv_get(b"CLUSTER_METADATA", namespace=b"cluster",
                                                            timeout=REACH_TIMEOUT_S)
        return json.loads(stored.decode()) if stored else None
    except Exception:  # a private interface: whatever it does, Ray's own check remains
        return None


def version_mismatch(reported: dict, where: str, engine: tuple[str, str] | None = None) -> str | None:
    """The one line for a cluster whose Ray or Python version is not this
    process's (Ray refuses the connection, with a many-line message, when
    either differs), or None when they agree."""
    ray_version, python_version = engine or engine_versions()
    theirs = (str(reported.get("ray_version", "?")), str(reported.get("python_version", "?")))
    if theirs == (ray_version, python_version):
        return None
    return (f"the Ray cluster at {where} runs Ray {theirs[0]} on Python {theirs[1]}, this machine Ray {ray_version} "
            f"on Python {python_version}: install the same versions on both")


# ---------------------------------------------------------------------- the engine side


def cluster_devices(address: str | None, slots: int | None = None) -> list[str]:
    """The slots of a run on the cluster at `address`: one per GPU (see
    RayExecutor.devices). Raises UserError with one line."""
    return RayExecutor(address).devices(slots)


def ray_node_trial(plan: TrialPlan, code: bytes):
    """The Ray task: the node side's trial, named by Ray's id for the node."""
    import ray

    def fetch_data() -> bytes:
        # The one copy the engine put in the object store; fetched only when this node does not see the checkout.
        return ray.get(plan.data_ref[0])

    yield from node_trial(plan, code, ray.get_runtime_context().get_node_id(), fetch_data)


class RayExecutor:
    """Runs each trial as a Ray task on the cluster at `address` (default:
    RAY_ADDRESS, else a Ray instance started for the run on this machine)."""

    def __init__(self, address: str | None = None, run_marker: str = "") -> None:
        # run_marker: the run whose orphans to end; by default the first trial's.
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.run_marker = run_marker
        self.gpus = 0
        self.cpus = 0
        self._ray: Any = None
        self._task: Any = None
        self._notices: list[tuple[str, str]] = []
        self._lost_nodes: set[str] = set()
        self._node_sandboxes: dict[str, str] = {}  # node id -> its sandbox, as it described it
        self._capacity_watch: asyncio.Task | None = None
        self._swept = False
        self._setup_lock = asyncio.Lock()
        self._local = LocalExecutor()
        # [target] data: its manifest and its copy in the object store, made once per start.
        self._data: tuple[Any, Any] | None = None

    # ------------------------------------------------------------------ connecting

    def connect(self) -> None:
        """Join the cluster and learn its size; raises UserError with one line for what a user can fix."""
        if self._ray is not None:
            return
        try:
            import ray
        except ImportError:
            raise UserError(install_hint()) from None
        where = self.address or "a Ray instance on this machine"
        if self.address:
            _check_reachable(self.address)
            reported = cluster_versions(self.address) if ":" in self.address and "://" not in self.address else None
            mismatch = version_mismatch(reported, where) if reported else None
            if mismatch:
                raise UserError(mismatch)
        try:
            if not ray.is_initialized():  # one connection per process, shared by its engines
                ray.init(address=self.address, namespace="ar-tui", log_to_driver=False,
                         # Ray's own warnings (token authentication, ...) would
                         # break a refusal's one line and the app's screen.
                         logging_level=logging.ERROR,
                         runtime_env={"py_modules": [str(Path(ar_tui.__file__).parent)]})
        except ConnectionError as exc:
            raise UserError(f"cannot reach the Ray cluster at {where}: {one_line(exc)}") from None
        except RuntimeError as exc:
            if "version" in str(exc).lower():
                raise UserError(f"the Ray cluster at {where} runs another version of Ray or Python: "
                                f"{one_line(exc)}") from None
            raise UserError(f"cannot join the Ray cluster at {where}: {one_line(exc)}") from None
        self._ray = ray
        resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0))
        self.cpus = int(resources.get("CPU", 0))
        self._task = ray.remote(max_retries=0)(ray_node_trial)

    def end_orphans(self, run_marker: str = "") -> int:
        """End what an earlier engine of this run left on any node. Only once
        the run dir is ours: before, a live engine may be running them."""
        self.run_marker = self.run_marker or run_marker
        if self._swept or not self.run_marker:
            return 0
        self._swept = True
        ended = self._end_orphans()
        if ended:
            self._notices.append(("warning", f"ended {ended} training process(es) left on the Ray cluster "
                                             "by an earlier engine"))
        return ended

    def devices(self, slots: int | None) -> list[str]:
        """One slot per GPU in the cluster; `slots` CPU slots on a cluster
        without GPUs (on one with GPUs, that many GPU slots)."""
        self.connect()
        if self.gpus:
            if slots is not None and slots > self.gpus:
                raise UserError(f"--slots {slots}: the Ray cluster has {self.gpus} GPU(s)")
            return [GPU_DEVICE] * (slots or self.gpus)
        if slots is None:
            raise UserError(f"the Ray cluster at {self.address or 'this machine'} has no GPUs; "
                            "pass --slots N to run N CPU slots")
        return [CPU_DEVICE] * slots

    def _end_orphans(self) -> int:
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        sweep = ray.remote(num_cpus=0, max_retries=0)(end_orphans_on_node)
        refs = [sweep.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
                              name=f"ar-tui-orphans-{run_key(self.run_marker)}").remote(self.run_marker)
                for node in ray.nodes() if node.get("Alive")]
        return sum(ray.get(refs, timeout=120))

    def close(self) -> None:
        if self._capacity_watch is not None:
            self._capacity_watch.cancel()
        if self._ray is not None and self._ray.is_initialized():
            self._ray.shutdown()
        self._ray = None

    # ------------------------------------------------------------------ running

    async def run(self, spec: RunSpec, on_line: OnLine, stop: asyncio.Event) -> RunResult:
        """A single command (the engine's prepare) runs on this machine; each
        node runs the prepare again before its first trial."""
        return await self._local.run(spec, on_line, stop)

    async def run_trial(self, plan: TrialPlan, on_line: OnLine, stop: asyncio.Event,
                        on_evaluating: OnEvaluating | None = None, on_notice: OnNotice | None = None,
                        on_capacity: OnCapacity | None = None,
                        on_node_sandbox: OnNodeSandbox | None = None) -> TrialSteps:
        # The first trial runs after the engine has claimed the run dir; every
        # trial waits for the sweep, which would otherwise take it for an orphan.
        async with self._setup_lock:
            await asyncio.to_thread(self.connect)
            await asyncio.to_thread(self.end_orphans, plan.run_marker)
        notify = on_notice or (lambda level, message: None)
        for level, message in self._notices:
            notify(level, message)
        self._notices.clear()
        assert plan.worktree is not None
        code = await asyncio.to_thread(git_bundle, plan.worktree)
        remote_plan = replace(plan, run_marker=plan.run_marker or self.run_marker)
        if plan.data:
            remote_plan = await self._with_data(remote_plan)
        # A GPU each on a cluster with GPUs, whatever the slot's name (--slots
        # N counts slots; Ray picks the GPU).
        gpu = self.gpus > 0
        task = self._task.options(num_gpus=1 if gpu else 0, num_cpus=0 if gpu else 1,
                                  name=f"ar-tui-trial-{run_key(remote_plan.run_marker)}")
        started = time.monotonic()

        def on_node(node: str, sandbox: str) -> None:
            # Each node resolves its own sandbox; one that differs from the
            # engine's (none there, or a weaker one) is said once per node,
            # and any change of it (a node that gained one) is reported.
            earlier = self._node_sandboxes.get(node)
            if earlier == sandbox:
                return
            self._node_sandboxes[node] = sandbox
            confined = sandbox.startswith("sandbox: ") and "not confined" not in sandbox
            if sandbox != plan.confinement.described:
                notify("info" if confined else "warning",
                       f"Ray node {node[:8]}: {sandbox} (this machine: {plan.confinement.described})")
            if on_node_sandbox is not None and (earlier is not None or sandbox != plan.confinement.described):
                on_node_sandbox(node, sandbox, confined)

        for loss in range(MAX_NODE_LOSSES + 1):
            outcome = await self._one_attempt(task, remote_plan, code, on_line, stop, on_evaluating, on_node, started)
            if isinstance(outcome, TrialSteps):
                return outcome
            node, reason = outcome
            self._lost_nodes.add(node)
            alive = await asyncio.to_thread(self._alive)
            unit = self._unit()
            message = (f"a Ray node ({node[:8] or 'unknown'}) left the cluster mid-trial ({reason}); the trial runs "
                       f"again when a {unit} is free ({alive} of {self._total()} {unit}(s) left)")
            notify("warning", message)
            on_line(f"[ar-tui] {message}", False)
            self._watch_capacity(alive, notify, on_capacity)
        raise RuntimeError(f"a trial lost its Ray node {MAX_NODE_LOSSES + 1} times in a row")

    async def _with_data(self, plan: TrialPlan) -> TrialPlan:
        """The plan with the data's manifest and the handle of its one copy
        in the object store (a node fetches it only when it does not see the
        engine's checkout, and then once)."""
        from ar_tui.core.executors.ray_data import make_manifest, pack

        if self._data is None:
            source = Path(plan.data_source)
            manifest = await asyncio.to_thread(make_manifest, source, plan.data)
            parcel = await asyncio.to_thread(pack, source, manifest)
            # In a list: Ray passes the handle, and the node decides whether to fetch it.
            self._data = (manifest, [self._ray.put(parcel)])
        return replace(plan, data_manifest=self._data[0], data_ref=self._data[1])

    # ------------------------------------------------------------------ capacity

    def _unit(self) -> str:
        return "GPU" if self.gpus else "CPU"

    def _total(self) -> int:
        return self.gpus or self.cpus

    def _alive(self) -> int:
        """The GPUs (CPUs) of the nodes alive now, not counting one known lost
        that the cluster has not yet noticed."""
        return sum(int(node.get("Resources", {}).get(self._unit(), 0)) for node in self._ray.nodes()
                   if node.get("Alive") and node.get("NodeID") not in self._lost_nodes)

    def _watch_capacity(self, alive: int, notify: OnNotice, on_capacity: OnCapacity | None) -> None:
        """Say that slots are out of the pool, then watch the cluster until
        its capacity is back (a node restarted, or a new one joined) and say
        that: the slots waiting for a GPU run again from then on."""
        total, unit = self._total(), self._unit()
        if on_capacity is not None:
            on_capacity(alive, total, unit)
        if alive >= total or (self._capacity_watch is not None and not self._capacity_watch.done()):
            return

        async def watch() -> None:
            while await asyncio.to_thread(self._alive) < total:
                await asyncio.sleep(CAPACITY_POLL_S)
            self._lost_nodes.clear()
            notify("info", f"the Ray cluster has its {total} {unit}(s) again; every slot runs")
            if on_capacity is not None:
                on_capacity(total, total, unit)

        self._capacity_watch = asyncio.ensure_future(watch())

    async def _one_attempt(self, task: Any, plan: TrialPlan, code: bytes, on_line: OnLine, stop: asyncio.Event,
                           on_evaluating: OnEvaluating | None, on_node: Any,
                           started: float) -> TrialSteps | tuple[str, str]:
        """One submission of the trial: its steps, or (node id, why) when the
        node went away under it."""
        ray = self._ray
        from ray import exceptions as rex

        tail: deque[str] = deque(maxlen=TAIL_LINES)
        node = ""
        evaluating = False
        log_paths = (plan.training.log_path, plan.evaluate_log or plan.training.log_path)
        for path in log_paths:
            path.parent.mkdir(parents=True, exist_ok=True)
        logs = [open(path, "a", encoding="utf-8") for path in dict.fromkeys(log_paths)]
        generator = task.remote(plan, code)

        async def consume() -> TrialSteps:
            nonlocal node, evaluating
            async for ref in generator:
                item = await ref
                if item[0] == "node":
                    node = item[1]
                    on_node(node, item[2])
                elif item[0] == "lines":
                    log = logs[-1] if evaluating else logs[0]
                    for text, replace_previous in item[1]:
                        log.write(text.removeprefix(EVALUATE_LINE_PREFIX) + "\n")
                        if replace_previous and tail:
                            tail[-1] = text
                        else:
                            tail.append(text)
                        on_line(text, replace_previous)
                    log.flush()
                elif item[0] == "evaluating":
                    evaluating = True
                    if on_evaluating is not None:
                        on_evaluating()
                elif item[0] == "done":
                    return item[1]
                elif item[0] == "error":
                    raise RuntimeError(f"a trial failed on Ray node {node[:8]}: {item[1]}")
            raise RuntimeError("a Ray trial ended without a result")

        consumer = asyncio.ensure_future(consume())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({consumer, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if consumer.done():
                try:
                    return consumer.result()
                except (rex.TaskCancelledError, rex.RayTaskError, rex.RuntimeEnvSetupError):
                    raise  # not a lost node: a bug, or a node that cannot run ar-tui
                except rex.RayError as exc:
                    return node, type(exc).__name__
            # Stopped: the node side ends the process group and the task ends.
            ray.cancel(generator)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer, STOP_WAIT_S)
            return TrialSteps(RunResult(exit_code=None, timed_out=False, stopped=True,
                                        seconds=time.monotonic() - started, output_bytes=0,
                                        tail="\n".join(tail), matches={}))
        except BaseException:
            with contextlib.suppress(Exception):
                ray.cancel(generator)
            raise
        finally:
            stopper.cancel()
            if not consumer.done():
                consumer.cancel()
            for log in logs:
                log.close()

