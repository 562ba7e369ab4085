"""Writing a decision down, all of it in one place: the diff (when the
proposal is ready), then per decision the ledger row, the branch, the
research state, the `Decision` event (a re-run's too), the noise band, the
state file and the git refs of the nodes the strategy may still build on.
And at the end the night's summary (`RunStopped`), or the engine's own crash.

The row comes first because results.tsv is the truth a resume rebuilds from:
a crash after the row and before the branch moves is repaired on resume (see
`ResearchState.restore`); a crash before the row re-runs the experiment.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback

from ar_tui.core import events as ev
from ar_tui.core.decisions import RERUN, night_summary
from ar_tui.core.engine.judging import Judge
from ar_tui.core.engine.opening import Run
from ar_tui.core.engine.parts import Candidate
from ar_tui.core.evidence import read_evidence
from ar_tui.core.records.git import git_failure
from ar_tui.core.records.ledger import LedgerError, LedgerRow, write_state


class Recorder:
    def __init__(self, run: Run, judge: Judge) -> None:
        self.run = run
        self.judge = judge
        self.run_dir = run.run_dir
        self.ledger = run.ledger
        self.emit = run.emit
        self._node_refs = set(run.node_refs)

    def diff(self, cand: Candidate) -> None:
        path = self.run_dir.diff(cand.exp)
        try:
            path.parent.mkdir(exist_ok=True)
            path.write_text(cand.diff, encoding="utf-8")
        except OSError as exc:
            raise LedgerError(f"cannot write {path}: {exc.strerror or exc}") from None

    async def decide(self, cand: Candidate, status: str, metric: float | None, rule: str) -> None:
        """Write down a decided candidate (the scheduler holds its decision lock)."""
        run, state = self.run, self.run.state
        best_before = None if cand.is_baseline else state.best_metric
        cand.cost_usd = max(cand.cost_usd, run.accounting.cost_of(cand.exp))
        cand.gpu_usd = run.accounting.gpu_usd_of(cand.exp)
        commit = cand.commit or cand.base_commit
        parent_exp = None if cand.is_baseline else state.parent_exp(cand.parent or cand.base_commit)
        # A full disk: the row waits for room (the engine pauses meanwhile).
        await run.disk.write_when_space(lambda: self.row(cand, status, metric, rule, commit, parent_exp))
        if status == ev.STATUS_KEEP and cand.commit is not None and not cand.is_baseline:
            await asyncio.to_thread(run.git.advance_branch, cand.commit, state.best_commit)
        state.record(cand, status, metric, commit, parent_exp,
                     read_evidence(run.run_dir.log(cand.exp, max(cand.attempt, 1))))
        self.decision(cand, status, metric, rule, commit, best_before, state.best_metric, parent_exp)
        if not cand.is_baseline:
            self.judge.emit_noise()
        self.save_state()
        await self.sync_nodes()

    def rerun(self, cand: Candidate, rule: str, next_run: str) -> None:
        """A candidate that runs again before it is decided: a `Decision` of its
        own, with no row; `next_run` (rerun, remeasure, reapply) is what a
        resume continues with."""
        self.emit(ev.Decision(exp=cand.exp, status=RERUN, rule=rule, metric=cand.mean,
                              best_before=self.run.state.best_metric, best_after=None, commit=cand.commit or "",
                              description=cand.description, cost_usd=cand.cost_usd, next_run=next_run))
        self.judge.emit_noise()
        # The runs so far (and any re-measure of the best) survive a kill.
        self.save_state()

    def row(self, cand: Candidate, status: str, metric: float | None, rule: str, commit: str,
            parent_exp: int | None) -> None:
        self.ledger.append(LedgerRow(
            commit=commit,
            metric=metric,
            memory_gb=cand.memory_gb,
            status=status,
            description=cand.description,
            exp=cand.exp,
            cost_usd=cand.cost_usd,
            seconds=cand.seconds,
            forced=cand.forced and status == ev.STATUS_KEEP,
            rule=rule,
            rationale=cand.rationale,
            prepared_before=cand.prepared_before,
            parent=parent_exp,
            proposer=cand.proposer,
            gpu_usd=cand.gpu_usd,
        ))

    def decision(self, cand: Candidate, status: str, metric: float | None, rule: str, commit: str,
                 best_before: float | None, best_after: float | None, parent_exp: int | None) -> None:
        self.emit(ev.Decision(exp=cand.exp, status=status, rule=rule, metric=metric, best_before=best_before,
                              best_after=best_after, commit=commit, description=cand.description,
                              forced=cand.forced and status == ev.STATUS_KEEP, cost_usd=cand.cost_usd,
                              parent_exp=parent_exp, island=cand.island, gpu_usd=cand.gpu_usd))

    def save_state(self) -> None:
        """Write state.json; on a full disk, once there is room again."""
        self.run.disk.save_state(self.write_state_file)

    def write_state_file(self) -> None:
        run = self.run
        write_state(run.run_dir.path, {
            "tag": run.options.tag,
            "target": str(run.target.root),
            **run.state.to_state(),
            **run.accounting.to_state(),
            "updated": time.time(),
        })

    async def sync_nodes(self) -> None:
        """Keep a git ref for every node the strategy may still build on, and
        only for those: `git branch` stays readable, git never collects a
        commit that may become a parent, and pruned nodes let go of theirs."""
        run = self.run
        live = {exp for exp in run.strategy.live_nodes(run.state, self.judge.judging) if exp in run.state.nodes}
        if live == self._node_refs:
            return
        git, nodes = run.git, run.state.nodes

        def sync() -> None:
            for exp in live - self._node_refs:
                git.set_node(exp, nodes[exp].commit)
            for exp in self._node_refs - live:
                git.drop_node(exp)

        await asyncio.to_thread(sync)
        self._node_refs = live

    def crash(self, exc: BaseException) -> str:
        """The engine's own failure, with its traceback, for whoever fixes it
        (engine-error.log); returns the one line the run stops with."""
        with contextlib.suppress(OSError):
            with open(self.run_dir.engine_error, "a", encoding="utf-8") as handle:
                handle.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
                handle.write("".join(traceback.format_exception(exc)))
        what = git_failure(exc) or f"{exc!r:.300}"
        return f"engine error: {what} (details in engine-error.log; run again to resume)"

    def night(self, reason: str, error: bool) -> ev.RunStopped:
        """The night in one event: what was tried, kept and spent, and the
        improvement with its interval."""
        run = self.run
        rows, state, accounting = run.ledger.rows, run.state, run.accounting
        kept = sum(1 for r in rows if r.status == ev.STATUS_KEEP and r.exp not in (0, None))
        experiments = sum(1 for r in rows if r.exp not in (0, None))
        improvement = None
        if state.baseline_metric and state.best_metric is not None:
            improvement = 100.0 * run.target.improvement(state.best_metric, state.baseline_metric) / abs(
                state.baseline_metric)
        stopped = ev.RunStopped(
            reason=reason,
            experiments=experiments,
            kept=kept,
            best_metric=state.best_metric,
            baseline_metric=state.baseline_metric,
            improvement_pct=improvement,
            cost_usd=accounting.spent_usd,
            error=error,
            gpu_cost_usd=accounting.gpu_usd if accounting.pricing.priced else None,
            gpu_seconds=accounting.gpu_seconds,
        )
        baseline = next((row.commit for row in rows if row.exp == 0 and row.metric is not None), None)
        if baseline and state.best_commit:
            summary = night_summary(state.noise, baseline, state.best_commit, run.target.direction,
                                    run.options.confidence)
            stopped.improvement_ci_pct = summary["improvement_ci_pct"]
            stopped.improvement_text = summary["improvement_text"]
            stopped.noise_sd, stopped.noise_dof = summary["noise_sd"], summary["noise_dof"]
            stopped.noise_jitter_only = summary["noise_jitter_only"]
        return stopped
