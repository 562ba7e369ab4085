"""What an executor is: the `Executor` protocol, a run's `RunSpec` and
`RunResult`, and a trial's plan, handed to an executor whole.

The engine talks to an `Executor`, so a cluster executor (Ray, Slurm) starts
the same runs without touching the engine's decisions. The sandbox travels in
the `RunSpec` and the executor applies it, so an executor on another machine
confines the run there.

Training, the protected-file check and the trusted evaluator belong together:
on a cluster they must run on the same machine, against the same files and
the same checkpoint, with only the results coming back. So the engine hands an
executor a `TrialPlan` and gets `TrialSteps` back; what the steps mean (ok,
crash, integrity, ...) is still decided by the engine, from those results.

`run_trial_steps` runs the steps through an executor's `run`: the local
executor uses it on this machine (`StepwiseExecutor`), a remote one on the node.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from ar_tui.core.executors.limits import RunLimits
from ar_tui.core.sandbox.backends import Sandbox, SandboxPolicy
from ar_tui.core.sandbox.policy import NodeConfinement

OnEvaluating = Callable[[], None]
OnNotice = Callable[[str, str], None]  # (level, message)
# (available, total, unit): the cluster's GPUs (or CPUs) for the slots, now and at the start.
OnCapacity = Callable[[int, int, str], None]
OnNodeSandbox = Callable[[str, str, bool], None]  # node, its sandbox in words, whether it confines
EVALUATE_LINE_PREFIX = "[evaluate] "
OnLine = Callable[[str, bool], None]  # (text, replaces_previous_line)


@dataclass
class RunSpec:
    command: str
    cwd: Path
    env: dict[str, str]
    log_path: Path
    timeout_s: float
    device: str = "cpu"
    patterns: dict[str, re.Pattern[str]] = field(default_factory=dict)  # name -> regex with one group
    # The command runs confined when both are set and the sandbox has a backend.
    sandbox: Sandbox | None = None
    policy: SandboxPolicy | None = None
    # Caps on the run's memory, processes and writes (ar_tui.core.executors.limits); None: none.
    limits: RunLimits | None = None
    write_paths: list[Path] = field(default_factory=list)  # where its writes are counted: worktree, scratch


@dataclass
class RunResult:
    exit_code: int | None
    timed_out: bool
    stopped: bool  # ended by the engine (veto, stop --now)
    seconds: float
    output_bytes: int
    tail: str
    matches: dict[str, str]  # pattern name -> last captured value
    limit: str = ""  # the limit the run hit, in words, when one ended it


class Executor(Protocol):
    async def run(self, spec: RunSpec, on_line: OnLine, stop: asyncio.Event) -> RunResult:
        """Run `spec` to completion, calling `on_line` for each output line;
        setting `stop` ends the run early."""
        ...

    async def run_trial(self, plan: TrialPlan, on_line: OnLine, stop: asyncio.Event,
                        on_evaluating: OnEvaluating | None = None,
                        on_notice: OnNotice | None = None,
                        on_capacity: OnCapacity | None = None,
                        on_node_sandbox: OnNodeSandbox | None = None) -> TrialSteps:
        """Run a trial's steps (training, protected-file check, evaluator) on
        one machine and return their results; see `run_trial_steps`."""
        ...


@dataclass
class TrialPlan:
    training: RunSpec
    protected_hashes: dict[str, str]  # path relative to the target dir -> sha256 the engine expects
    checkpoint: Path | None = None  # where AR_CHECKPOINT points; None without an evaluator
    evaluate: str | None = None  # the trusted evaluator's command, for this checkpoint
    evaluate_log: Path | None = None
    evaluate_timeout_s: float = 600.0
    evaluate_patterns: dict[str, re.Pattern[str]] = field(default_factory=dict)
    # The evaluator's run as the engine built it for this machine (a clean
    # export of the commit, confined); a remote executor builds its own from
    # the templates below, since these paths do not exist on its node.
    evaluation: RunSpec | None = None
    # For an executor on another machine, which builds its own environment,
    # checkout and data there:
    env_extra: dict[str, str] = field(default_factory=dict)  # what the engine added to the environment
    worktree: Path | None = None  # the slot's worktree, its HEAD the experiment's commit
    target_subdir: str = ""  # the target dir inside the worktree
    run_template: str = ""  # the target's commands as written (`python` not yet resolved),
    evaluate_template: str | None = None  # the evaluator's with {checkpoint}
    prepare: str | None = None  # the target's idempotent prepare command
    run_marker: str = ""  # the run's marker (RUN_MARKER_ENV), for finding orphans
    # [target] data: its paths, the engine's checkout that holds them, and
    # (set by a cluster executor) their manifest and the handle of their copy.
    data: tuple[str, ...] = ()
    data_source: str = ""
    data_manifest: Any = None
    data_ref: Any = None
    # How the engine confines the runs, for a node to confine them the same way with its own paths.
    confinement: NodeConfinement = field(default_factory=NodeConfinement)


@dataclass
class TrialSteps:
    training: RunResult
    protected_changed: list[str] | None = None  # None: not checked, training did not succeed
    checkpoint_missing: bool = False
    evaluation: RunResult | None = None  # None: the evaluator did not run


def file_hashes(root: Path, files: list[str]) -> dict[str, str]:
    """sha256 of each file under `root` (a target dir); a missing file hashes
    to '', so that its disappearance counts as a change."""
    hashes = {}
    for rel in files:
        path = Path(root) / rel
        hashes[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
    return hashes


def changed_files(root: Path, expected: dict[str, str]) -> list[str]:
    """The files under `root` whose sha256 is not the expected one."""
    actual = file_hashes(root, list(expected))
    return [rel for rel, digest in expected.items() if actual[rel] != digest]


async def run_trial_steps(executor: Executor, plan: TrialPlan, on_line: OnLine, stop: asyncio.Event,
                          on_evaluating: OnEvaluating | None = None) -> TrialSteps:
    """Train; if training succeeded, check the protected files; if they are
    intact and there is an evaluator, evaluate the checkpoint."""
    training = await executor.run(plan.training, on_line, stop)
    steps = TrialSteps(training)
    if training.stopped or training.timed_out or training.exit_code != 0:
        return steps
    steps.protected_changed = changed_files(plan.training.cwd, plan.protected_hashes)
    if steps.protected_changed or not plan.evaluate:
        return steps
    if on_evaluating is not None:
        on_evaluating()
    if plan.checkpoint is None or not plan.checkpoint.exists():
        steps.checkpoint_missing = True
        return steps
    assert plan.evaluate_log is not None
    spec = plan.evaluation or RunSpec(
        command=plan.evaluate, cwd=plan.training.cwd, env=plan.training.env, log_path=plan.evaluate_log,
        timeout_s=plan.evaluate_timeout_s, device=plan.training.device, patterns=plan.evaluate_patterns)
    steps.evaluation = await executor.run(
        spec, lambda text, replace: on_line(EVALUATE_LINE_PREFIX + text, replace), stop)
    return steps


class StepwiseExecutor:
    """For an executor whose runs share this machine's files: a trial is its
    steps run here, one by one, through the executor's own `run`. Its slots
    never leave the pool and its sandbox is the engine's own, so on_capacity
    and on_node_sandbox (a cluster's) are not called."""

    async def run(self, spec: RunSpec, on_line: OnLine, stop: asyncio.Event) -> RunResult:
        raise NotImplementedError

    async def run_trial(self, plan: TrialPlan, on_line: OnLine, stop: asyncio.Event,
                        on_evaluating: OnEvaluating | None = None,
                        on_notice: OnNotice | None = None,
                        on_capacity: OnCapacity | None = None,
                        on_node_sandbox: OnNodeSandbox | None = None) -> TrialSteps:
        return await run_trial_steps(self, plan, on_line, stop, on_evaluating)
