"""One trial: put a candidate's code in a slot's worktree, run it, evaluate
it with the trusted evaluator, and classify what happened.

The metric that is recorded is the evaluator's when the target has one; what
the training script printed is shown but not trusted. Protected files are
hashed before and after the run: a run that changed one is an integrity
failure, whatever it printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import shlex
from pathlib import Path
from typing import Callable

from ar_tui.core import events as ev
from ar_tui.core.config import TargetConfig
from ar_tui.core.engine.parts import EVALUATE_TIMEOUT_S, Candidate, Outcome, Slot
from ar_tui.core.executors.base import Executor, RunSpec, TrialPlan, TrialSteps
from ar_tui.core.executors.failures import crash_reason
from ar_tui.core.executors.limits import RunLimits
from ar_tui.core.executors.process import child_env
from ar_tui.core.interpreter import TargetPython
from ar_tui.core.errors import UserError
from ar_tui.core.records.git import GIT_ERRORS, GitRepo
from ar_tui.core.records.rundir import RunDir
from ar_tui.core.records.target_data import check_prepared, missing_data_hint
from ar_tui.core.sandbox.policy import Confinement, RunScratch, runs_editable_file
from ar_tui.core.seeds import SEED_ENV, seed_for

PREPARE_TIMEOUT_S = 3600.0


def parse_float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text.strip().rstrip(",;"))
    except ValueError:
        return None


def last_line(text: str) -> str:
    stripped = text.strip()
    return stripped.splitlines()[-1] if stripped else ""


class Trial:
    def __init__(self, run_dir: RunDir, target: TargetConfig, git: GitRepo, executor: Executor,
                 emit: Callable[[ev.Event], None], protected_hashes: dict[str, str], python: TargetPython,
                 confinement: Confinement, limits: RunLimits | None = None) -> None:
        self.confinement = confinement  # every run of the target's code is confined by it
        self.limits = limits  # caps on each run's memory, processes and writes
        self.run_dir = run_dir
        self.target = target
        self.python = python
        self.git = git
        self.executor = executor
        self.emit = emit
        self.protected_hashes = protected_hashes

    # ------------------------------------------------------------------ code

    async def checkout(self, slot: Slot, commit: str) -> None:
        await asyncio.to_thread(self.git.reset, slot.worktree, commit)

    async def build(self, slot: Slot, base: str, diff: str) -> str | None:
        """Put `diff` on `base` in the slot's worktree; the conflict text, or None."""
        await self.checkout(slot, base)
        return await asyncio.to_thread(self.git.apply, slot.worktree, diff)

    def protected_in(self, diff: str) -> list[str]:
        return [f for f in self.git.changed_files(diff) if f in self.target.protected]

    async def commit(self, slot: Slot, cand: Candidate) -> str:
        return await asyncio.to_thread(self.git.commit, slot.worktree, f"exp {cand.exp}: {cand.description}")

    # ------------------------------------------------------------------ running

    async def prepare_target(self, slot: Slot) -> str | None:
        """Run the target's idempotent prepare command; the failure line, or None."""
        if not self.target.prepare:
            return None
        scratch = RunScratch.create("prepare")
        spec = RunSpec(command=self.python.command(self.target.prepare), cwd=slot.target_dir,
                       env=child_env(self.run_dir.path, self.target.env, self.python, scratch),
                       log_path=self.run_dir.prepare_log, timeout_s=PREPARE_TIMEOUT_S)
        # A prepare that runs an editable file runs code the agent may have written.
        if runs_editable_file(self.target.prepare, self.target.editable):
            spec.env, spec.policy = self.confinement.preparation(spec.env, slot.worktree, scratch)
            spec.sandbox = self.confinement.sandbox
        try:
            result = await self.executor.run(spec, lambda text, replace: self.emit(
                ev.LogLine(exp=0, slot=slot.index, text=f"{ev.PREPARE_LOG_PREFIX}{text}", replace=replace)),
                asyncio.Event())
        finally:
            scratch.remove()
        if result.exit_code != 0:
            hint = await asyncio.to_thread(missing_data_hint, result.tail, self.target.root, slot.target_dir,
                                           self.target.data)
            return f"prepare command failed: {crash_reason(result.tail, result.exit_code, self.python.description, hint)}"
        try:
            check_prepared(self.target.root, self.target.data)  # a [target] data path prepare was to write
        except UserError as exc:
            return str(exc)
        return None

    async def execute(self, slot: Slot, cand: Candidate, attempt: int) -> Outcome:
        """Run the training command (and the trusted evaluator) and classify the result."""
        target = self.target
        extra = dict(target.env)
        extra["AR_TIME_BUDGET"] = f"{target.time_budget:g}"
        seed = seed_for(cand.exp, attempt)
        extra[SEED_ENV] = str(seed)
        if slot.device.startswith("cuda:"):
            extra["CUDA_VISIBLE_DEVICES"] = slot.device.split(":", 1)[1]
        # The checkpoint lives in the run's own scratch dir, outside the run dir:
        # the one place besides its worktree that the confined run may write.
        scratch = RunScratch.create(f"exp{cand.exp}")
        checkpoint = scratch.checkpoint
        if target.evaluate:
            extra["AR_CHECKPOINT"] = str(checkpoint)
        env = child_env(self.run_dir.path, extra, self.python, scratch)
        train_env, policy = self.confinement.training(env, slot.worktree, scratch)
        patterns = {"metric": target.metric_regex, "memory": re.compile(target.memory_pattern, re.MULTILINE)}
        spec = RunSpec(command=self.python.command(target.run), cwd=slot.target_dir, env=train_env,
                       log_path=self.run_dir.log(cand.exp, attempt), timeout_s=target.hard_timeout,
                       device=slot.device, patterns=patterns, sandbox=self.confinement.sandbox, policy=policy,
                       limits=self.limits, write_paths=[slot.worktree, scratch.root])

        def on_line(text: str, replace: bool) -> None:
            self.emit(ev.LogLine(exp=cand.exp, slot=slot.index, text=text, replace=replace))

        assert cand.stop is not None
        evaluate = evaluation = None
        if target.evaluate:
            evaluate = self.python.command(target.evaluate.replace("{checkpoint}", shlex.quote(str(checkpoint))))
            # The evaluator trusts nothing the run made: it runs in a fresh copy
            # of the experiment's commit, confined to it, the checkpoint and the data.
            export = await asyncio.to_thread(self.git.export, cand.commit, scratch.export)
            eval_env, eval_policy = self.confinement.evaluation(env, export, scratch)
            evaluation = RunSpec(command=evaluate, cwd=export, env=eval_env,
                                 log_path=self.run_dir.eval_log(cand.exp, attempt),
                                 timeout_s=max(EVALUATE_TIMEOUT_S, target.time_budget), device=slot.device,
                                 patterns={"metric": target.metric_regex}, sandbox=self.confinement.sandbox,
                                 policy=eval_policy, limits=self.limits, write_paths=[scratch.root])
        plan = TrialPlan(
            training=spec, protected_hashes={f: self.protected_hashes.get(f, "") for f in target.protected},
            checkpoint=checkpoint if target.evaluate else None, evaluate=evaluate,
            evaluate_log=self.run_dir.eval_log(cand.exp, attempt),
            evaluate_timeout_s=max(EVALUATE_TIMEOUT_S, target.time_budget),
            evaluate_patterns={"metric": target.metric_regex}, evaluation=evaluation, env_extra=extra,
            worktree=slot.worktree,
            target_subdir=slot.target_dir.relative_to(slot.worktree).as_posix(), run_template=target.run,
            evaluate_template=target.evaluate, prepare=target.prepare, run_marker=str(self.run_dir.path),
            data=tuple(target.data), data_source=str(target.root),
            confinement=self.confinement.portable(target.editable))
        try:
            steps = await self.executor.run_trial(
                plan, on_line, cand.stop,
                on_evaluating=lambda: self.emit(ev.StateChanged(state=ev.STATE_EVALUATING, slot=slot.index,
                                                                exp=cand.exp)),
                on_notice=lambda level, message: self.emit(ev.Notice(level=level, message=message)),
                on_capacity=lambda available, total, unit: self.emit(
                    ev.CapacityChanged(available=available, total=total, unit=unit)),
                on_node_sandbox=lambda node, sandbox, confined: self.emit(
                    ev.NodeSandbox(node=node, sandbox=sandbox, confined=confined)))
        except BaseException:
            scratch.remove()
            raise
        result = steps.training
        reported = parse_float(result.matches.get("metric"))
        memory = parse_float(result.matches.get("memory"))
        memory_gb = memory / 1024 if memory is not None else None
        outcome = Outcome(ev.OUTCOME_OK, reported, reported, memory_gb, result.seconds, result.exit_code, "", "",
                          seed)
        if result.stopped:
            outcome.outcome = ev.OUTCOME_VETOED if cand.vetoed else ev.OUTCOME_INTERRUPTED
            outcome.message = "vetoed by the user" if cand.vetoed else "stopped"
        elif result.timed_out:
            outcome.outcome = ev.OUTCOME_TIMEOUT
            outcome.message = f"killed after the hard timeout of {target.hard_timeout:g} s"
        elif result.limit:
            outcome.outcome = ev.OUTCOME_CRASH
            outcome.message = f"{result.limit}: {crash_reason(result.tail, result.exit_code, self.python.description)}"
        elif result.exit_code != 0:
            outcome.outcome = ev.OUTCOME_CRASH
            hint = await asyncio.to_thread(missing_data_hint, result.tail, target.root, slot.target_dir, target.data)
            outcome.message = crash_reason(result.tail, result.exit_code, self.python.description, hint)
        else:
            changed = steps.protected_changed or []
            if changed:
                outcome.outcome = ev.OUTCOME_INTEGRITY
                outcome.message = f"protected file(s) changed during the run: {', '.join(changed)}"
            elif target.evaluate:
                self._evaluate(cand, steps, checkpoint, outcome)
            if outcome.outcome == ev.OUTCOME_OK:
                if outcome.metric is None:
                    outcome.outcome, outcome.message = ev.OUTCOME_NO_METRIC, f"no {target.metric} line in the output"
                elif not math.isfinite(outcome.metric):
                    outcome.outcome, outcome.message = ev.OUTCOME_NAN, f"{target.metric} is {outcome.metric}"
        if outcome.outcome not in (ev.OUTCOME_OK, ev.OUTCOME_VETOED, ev.OUTCOME_INTERRUPTED):
            outcome.tail = result.tail[-4000:]
        scratch.remove()
        if outcome.outcome != ev.OUTCOME_OK:
            # A failed run gives its space back before its row is written:
            # what it left in the worktree (checkpoints filling a disk) goes now.
            with contextlib.suppress(*GIT_ERRORS):
                await asyncio.to_thread(self.git.clean, slot.worktree)
        self.emit(ev.ExperimentFinished(exp=cand.exp, slot=slot.index, outcome=outcome.outcome, metric=outcome.metric,
                                        reported_metric=outcome.reported, memory_gb=outcome.memory_gb,
                                        seconds=outcome.seconds, exit_code=outcome.exit_code, message=outcome.message,
                                        tail=outcome.tail, held_seconds=outcome.seconds + (
                                            steps.evaluation.seconds if steps.evaluation is not None else 0.0),
                                        attempt=attempt, seed=seed))
        return outcome

    def _evaluate(self, cand: Candidate, steps: TrialSteps, checkpoint: Path, outcome: Outcome) -> None:
        """The trusted evaluator computes the metric that is recorded."""
        if steps.checkpoint_missing:
            outcome.outcome = ev.OUTCOME_INTEGRITY
            outcome.message = f"the training script saved no checkpoint to AR_CHECKPOINT ({checkpoint.name})"
            outcome.metric = None
            return
        result = steps.evaluation
        assert result is not None
        if result.stopped:
            outcome.outcome = ev.OUTCOME_VETOED if cand.vetoed else ev.OUTCOME_INTERRUPTED
            return
        if result.exit_code != 0 or result.timed_out:
            last = last_line(result.tail) or f"exit code {result.exit_code}"
            outcome.outcome = ev.OUTCOME_INTEGRITY
            outcome.message = f"the trusted evaluator refused the run: {last[:300]}"
            outcome.metric = None
            outcome.tail = result.tail
            return
        outcome.metric = parse_float(result.matches.get("metric"))
