"""The node side of a cluster executor: what a trial does on the machine the
cluster put it on (see ray.py for the engine's side of `--executor ray`).
Nothing here imports Ray: a Slurm or Kubernetes executor reuses it whole.

A trial arrives (for Ray, as a task running `node_trial`, a generator) with its plan and
the experiment commit's files as a tar. It unpacks them in a fresh dir of
this run's dir on the node, resolves the sandbox the plan asks for on this
machine (`Confinement.for_node`: the engine's mode and backend, the node's
own paths), runs the target's prepare once per node, then training, the
protected-file check and the trusted evaluator (on a second, fresh unpack)
with the same `run_trial_steps` as the local executor, each run confined as
on the engine's machine. Lines go back as they come; only results return.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import queue
import shlex
import shutil
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Callable

from ar_tui.core.errors import UserError
from ar_tui.core.executors.base import OnEvaluating, OnLine, RunResult, RunSpec, TrialPlan, TrialSteps, run_trial_steps
from ar_tui.core.executors.local import LocalExecutor
from ar_tui.core.executors.process import TERM_GRACE_S
from ar_tui.core.interpreter import KIND_OWN, TargetPython
from ar_tui.core.records.target_data import data_sources, link_data
from ar_tui.core.sandbox.policy import Confinement, RunScratch, runs_editable_file

# Brings the tar of the engine's [target] data (a cluster's object store get).
FetchData = Callable[[], bytes]
PREPARE_TIMEOUT_S = 3600.0
# How long the node side waits for more lines before sending what it has: few
# enough round trips for a flooding child, and still live.
LINE_BATCH_S = 0.05
# A stopped trial's node side gets this long to end its process group and say so.
STOP_WAIT_S = TERM_GRACE_S + 10.0
NODE_ROOT_ENV = "AR_TUI_RAY_NODE_ROOT"


def run_key(run_marker: str) -> str:
    """A short name for the run, the same on every node."""
    return hashlib.sha256(run_marker.encode()).hexdigest()[:16]


def node_run_root(run_marker: str) -> Path:
    """This run's directory on a node: checkouts, the prepare stamp, and the
    value of the run marker that every process of the run carries there."""
    base = Path(os.environ.get(NODE_ROOT_ENV) or Path(tempfile.gettempdir()) / "ar-tui-ray")
    return (base / run_key(run_marker)).resolve()


def one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.splitlines()[:2])[:300]


def node_python() -> TargetPython:
    """On a node, `python` in the target's commands is the interpreter that
    runs ar-tui's Ray workers there: the cluster's environment holds the
    target's dependencies (its `setup`), not a checkout's untracked .venv."""
    return TargetPython(KIND_OWN, Path(sys.executable), f"python: {sys.executable} (the Ray node's)")


def _unpack(code: bytes, dest: Path) -> Path:
    with tarfile.open(fileobj=io.BytesIO(code)) as bundle:
        bundle.extractall(dest, filter="data")
    return dest


def _node_data(plan: TrialPlan, fetch_data: FetchData | None) -> Path:
    """Where [target] data is on this node (see ray_data): the engine's
    checkout when this node sees it, else the copy `fetch_data` brings."""
    from ar_tui.core.executors.ray_data import node_data

    def fetch() -> bytes:
        if fetch_data is None:
            raise UserError(f"[target] data: this node does not see {plan.data_source} and no copy was sent")
        return fetch_data()

    return node_data(plan.data_source, plan.data_manifest, node_run_root(plan.run_marker), fetch)


def _node_plan(plan: TrialPlan, code: bytes, trial_dir: Path, scratch: RunScratch,
               confinement: Confinement, data_root: Path | None = None) -> tuple[TrialPlan, RunSpec | None]:
    """The engine's plan with this node's paths, interpreter, environment and
    confinement (every run of the target's code confined as on the engine's
    machine), and the node's prepare run (None without one)."""
    from ar_tui.core.executors.process import child_env

    python = node_python()
    root = node_run_root(plan.run_marker)
    worktree = _unpack(code, trial_dir / "code")
    target_dir = worktree / plan.target_subdir
    if data_root is not None:
        link_data(target_dir, data_root, plan.data)
    extra = dict(plan.env_extra)
    extra.pop("CUDA_VISIBLE_DEVICES", None)  # Ray's assignment on this node, never the engine machine's
    checkpoint = None
    if plan.checkpoint is not None and plan.evaluate_template:
        checkpoint = scratch.checkpoint_dir / plan.checkpoint.name
        extra["AR_CHECKPOINT"] = str(checkpoint)
    env = child_env(root, extra, python, scratch)  # the marker: this run's dir on the node
    train_env, policy = confinement.training(env, worktree, scratch)
    training = replace(plan.training, command=python.command(plan.run_template), cwd=target_dir, env=train_env,
                       log_path=trial_dir / "train.log", sandbox=confinement.sandbox, policy=policy,
                       write_paths=[worktree, scratch.root])  # the engine's limits, counted on this node
    evaluate = evaluation = None
    if checkpoint is not None:
        assert plan.evaluate_template is not None
        evaluate = python.command(plan.evaluate_template.replace("{checkpoint}", shlex.quote(str(checkpoint))))
        # The evaluator trusts nothing the run made: a fresh copy of the
        # commit's files, confined to it, the checkpoint and the data.
        export = _unpack(code, scratch.export) / plan.target_subdir
        if data_root is not None:
            link_data(export, data_root, plan.data)
        eval_env, eval_policy = confinement.evaluation(env, export, scratch)
        evaluation = RunSpec(command=evaluate, cwd=export, env=eval_env, log_path=trial_dir / "evaluate.log",
                             timeout_s=plan.evaluate_timeout_s, device=plan.training.device,
                             patterns=plan.evaluate_patterns, sandbox=confinement.sandbox, policy=eval_policy,
                             limits=plan.training.limits, write_paths=[scratch.root])
    prepare = None
    if plan.prepare:
        prepare = RunSpec(command=python.command(plan.prepare), cwd=target_dir, env=env, log_path=root / "prepare.log",
                          timeout_s=PREPARE_TIMEOUT_S, device=plan.training.device)
        # A prepare that runs an editable file runs code the agent may have written.
        if runs_editable_file(plan.prepare, plan.confinement.editable):
            prepare.env, prepare.policy = confinement.preparation(env, worktree, scratch)
            prepare.sandbox = confinement.sandbox
    node_plan = replace(plan, training=training, checkpoint=checkpoint, evaluate=evaluate,
                        evaluate_log=trial_dir / "evaluate.log", evaluation=evaluation)
    return node_plan, prepare


async def _prepare_once(plan: TrialPlan, prepare: RunSpec | None, on_line: OnLine,
                        stop: asyncio.Event) -> RunResult | None:
    """The target's prepare, once per node for this run (a stamp remembers it;
    a lock keeps two slots on one node from running it together). None when
    it succeeded or had run already; the failed run otherwise."""
    import fcntl

    if prepare is None:
        return None
    root = node_run_root(plan.run_marker)
    digest = hashlib.sha256(f"{plan.prepare}\n{sorted(plan.protected_hashes.items())}".encode()).hexdigest()[:16]
    stamp = root / f"prepared-{digest}"
    with open(root / "prepare.lock", "w") as lock:
        await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
        if stamp.exists():
            return None
        result = await LocalExecutor().run(prepare, lambda text, rep: on_line(f"[prepare] {text}", rep), stop)
        if result.exit_code == 0 and not result.stopped and not result.timed_out:
            stamp.write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))
            return None
        return result


def node_confinement(plan: TrialPlan) -> Confinement:
    """The confinement the plan asks for, with this node's paths (SandboxError
    under --sandbox require on a node that has none)."""
    return Confinement.for_node(plan.confinement, node_run_root(plan.run_marker), node_python(),
                                engine_run_dir=plan.run_marker)


async def _node_steps(plan: TrialPlan, code: bytes, trial_dir: Path, confinement: Confinement, on_line: OnLine,
                      stop: asyncio.Event, on_evaluating: OnEvaluating,
                      fetch_data: FetchData | None = None) -> TrialSteps:
    # The run's scratch (its temp dir, home, checkpoint, the evaluator's
    # clean copy) lies outside this run's dir on the node, as on the engine's machine.
    scratch = RunScratch.create(f"ray-{run_key(plan.run_marker)}")
    try:
        data_root = None
        if plan.data and plan.data_manifest is not None:
            data_root = await asyncio.to_thread(_node_data, plan, fetch_data)
            confinement.data = [str(p) for p in data_sources(data_root, plan.data)]
        node_plan, prepare = _node_plan(plan, code, trial_dir, scratch, confinement, data_root)
        failed = await _prepare_once(node_plan, prepare, on_line, stop)
        if failed is not None:
            failed.tail = f"the target's prepare failed on this node\n{failed.tail}"
            return TrialSteps(failed)
        return await run_trial_steps(LocalExecutor(), node_plan, on_line, stop, on_evaluating)
    finally:
        scratch.remove()


def node_trial(plan: TrialPlan, code: bytes, node: str, fetch_data: FetchData | None = None):
    """A trial on this node (a generator; `node` names the node for the
    engine; `fetch_data` brings the engine's copy of [target] data): yields ("node", node, the sandbox in force there), then runs the
    steps in a thread with its own event loop and yields ("lines", [(text,
    replace), ...]), ("evaluating",), then ("done", steps). A cancel arrives
    here as KeyboardInterrupt: the steps are stopped, which ends the child's
    whole process group. Ray runs it as a task (`ray.ray_node_trial`); a
    Slurm or Kubernetes executor would run it in its job the same way."""
    root = node_run_root(plan.run_marker)
    root.mkdir(parents=True, exist_ok=True)
    try:
        confinement = node_confinement(plan)
    except UserError as exc:  # --sandbox require, and this node has none: the engine stops with the line
        yield ("node", node, "")
        yield ("error", str(exc))
        return
    yield ("node", node, confinement.sandbox.describe())
    trial_dir = root / f"trial-{uuid.uuid4().hex[:12]}"
    trial_dir.mkdir()
    items: queue.Queue = queue.Queue()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def steps() -> None:
        try:
            result = await _node_steps(plan, code, trial_dir, confinement,
                                       lambda text, rep: items.put(("line", text, rep)), stop,
                                       lambda: items.put(("evaluating",)), fetch_data)
            items.put(("done", result))
        except BaseException as exc:  # reported to the engine, which stops resumably
            items.put(("error", f"{type(exc).__name__}: {one_line(exc)}"))

    worker = threading.Thread(target=lambda: loop.run_until_complete(steps()), daemon=True)
    worker.start()
    try:
        while True:
            try:
                # A timeout, so that a cancel's KeyboardInterrupt is seen here.
                item = items.get(timeout=0.5)
            except queue.Empty:
                continue
            if item[0] != "line":
                yield item
                if item[0] in ("done", "error"):
                    return
                continue
            lines = [(item[1], item[2])]
            deadline = time.monotonic() + LINE_BATCH_S
            pending = None
            while pending is None and time.monotonic() < deadline:
                try:
                    nxt = items.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt[0] == "line":
                    lines.append((nxt[1], nxt[2]))
                else:
                    pending = nxt
            yield ("lines", lines)
            if pending is not None:
                yield pending
                if pending[0] in ("done", "error"):
                    return
    finally:
        if worker.is_alive():
            loop.call_soon_threadsafe(stop.set)
            worker.join(STOP_WAIT_S)
        shutil.rmtree(trial_dir, ignore_errors=True)


def end_orphans_on_node(run_marker: str) -> int:
    """Ray task, one per node: end every process an earlier engine of this run
    left on this node."""
    from ar_tui.core.executors.process import kill_orphans

    root = node_run_root(run_marker)
    return kill_orphans(root) if root.exists() else 0
