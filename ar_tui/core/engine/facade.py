"""The engine's face: `EngineHandle` for whoever watches and steers it, and
`run()`, which opens the run dir, runs the scheduler and closes cleanly.

The parts behind it: `state` (the research state and its resume),
`scheduler` (proposer loop, slots, lookahead, veto window), `trial` (one run
and its evaluation), `strategy` (what a finished run means), `recorder`
(ledger row, diff, decision event) and `accounting` (tokens and dollars).
Whoever runs the engine wires what sits around it (the control socket, the
morning report) as services: async context managers entered once the run dir
is claimed and left after the run has stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import traceback
from pathlib import Path
from typing import AsyncContextManager, Callable, Iterable

from ar_tui.core import events as ev
from ar_tui.core.config import ConfigError, TargetConfig, load_target, validate_files
from ar_tui.core.control import Observer
from ar_tui.core.decisions import NoiseModel, keep_quantile, night_summary
from ar_tui.core.evidence import read_evidence
from ar_tui.core.engine.accounting import Accounting
from ar_tui.core.engine.disk import DiskGuard
from ar_tui.core.engine.parts import Candidate, EngineOptions, Slot
from ar_tui.core.engine.recorder import Recorder
from ar_tui.core.engine.scheduler import Scheduler
from ar_tui.core.engine.state import ResearchState
from ar_tui.core.engine.strategy import GreedyStrategy, Judging, Strategy, make_strategy
from ar_tui.core.engine.trial import Trial
from ar_tui.core.errors import UserError
from ar_tui.core.executors.plan import file_hashes
from ar_tui.core.gpu_cost import resolve_pricing
from ar_tui.core.git import GIT_ERRORS, GitError, GitRepo
from ar_tui.core.interpreter import TargetPython, resolve_python
from ar_tui.core.limits import LimitError, RunLimits, lower_engine_oom_score
from ar_tui.core.ledger import EventLog, Ledger, LedgerError, read_events, read_state, write_state
from ar_tui.core.proposer import Proposer
from ar_tui.core.rundir import RunDir
from ar_tui.core.runner import Executor, LocalExecutor, kill_orphans
from ar_tui.core.run_policy import Confinement, target_python_paths
from ar_tui.core.sandbox import resolve_sandbox
from ar_tui.core.targets import data_home

# A service is handed the engine once its run dir is claimed and opened.
Service = Callable[["Engine"], AsyncContextManager[object]]


class Engine:
    def __init__(self, options: EngineOptions, proposer: Proposer, executor: Executor | None = None,
                 services: Iterable[Service] = ()) -> None:
        self.options = options
        self.proposer = proposer
        self.executor = executor or LocalExecutor()
        self.services = list(services)
        self.run_dir = RunDir(Path(options.run_dir).resolve())
        self.strategy: Strategy = GreedyStrategy()  # the chosen one is made in _open, once the target is read
        self._node_refs: set[int] = set()
        self.observers: list[Observer] = []
        self.target: TargetConfig | None = None
        self.git: GitRepo | None = None
        self.ledger: Ledger | None = None
        self.event_log: EventLog | None = None
        self.state = ResearchState(noise=NoiseModel())  # rebuilt from the run dir in _open
        self.accounting = Accounting()
        self.scheduler = Scheduler(self)
        self.disk = DiskGuard(self)
        self.trial: Trial | None = None
        self.python: TargetPython | None = None
        self.confinement: Confinement | None = None
        self.limits = RunLimits()
        self.engine_oom_lowered = False
        self.recorder: Recorder | None = None
        self.propose_target: Path | None = None
        self.attended = options.attended
        self.paused = False
        self.stopping = False
        self.stop_reason: str | None = None
        self.stop_error = False
        self.resumed = False
        self.started_at = time.time()
        self._resumed_exps: list[int] = []
        self._owns_run_dir = False
        self._log_broken = False

    # ------------------------------------------------------------------ observing

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        self.observers.append(observer)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self.observers.remove(observer)

        return unsubscribe

    def emit(self, event: ev.Event) -> None:
        failure: LedgerError | None = None
        if event.persist and self.event_log is not None and not self._log_broken:
            try:
                self.disk.persist(event)  # a full disk: kept for later, and the engine waits
            except LedgerError as exc:
                # Observers still hear of it (the app, the headless printer);
                # the run then stops with the rows before it intact.
                self._log_broken = True
                failure = exc
        for observer in list(self.observers):
            try:
                observer(event)
            except Exception as exc:  # an observer's bug must not stop the night's research
                print(f"ar-tui: an observer failed on {event.kind}: {exc!r}", file=sys.stderr)
        if failure is not None:
            raise failure

    def band_looks(self, *best_runs: int) -> list[tuple[int, int, int]]:
        """The (dof, look, best runs) the noise band needs for a best of each
        of `best_runs` runs (the current best's when none is given)."""
        noise = self.state.noise
        if noise.sd is None:
            return []
        counts = best_runs or (len(noise.runs(self.state.best_commit)),)
        return [(noise.dof, 1, max(1, count)) for count in counts]

    async def solve_design_ahead(self, looks: list[tuple[int, int, int]]) -> None:
        """Solve the sequential design's boundaries for these (dof, look, best
        runs) in a thread: each is a numerical solve (0.1 to 0.5 s, and scipy's
        import the first time) that would otherwise stall the event loop, and
        the app with it. The decision or the band then finds them cached (one
        not foreseen is solved where it is needed, as before)."""
        judging = self.judging

        def solve() -> None:
            for dof, look, best_runs in looks:
                keep_quantile(judging.confidence, judging.max_runs, dof, look=look, best_runs=best_runs)

        if looks:
            await asyncio.to_thread(solve)

    def emit_noise(self) -> None:
        noise, opts = self.state.noise, self.options
        band = noise.band(len(noise.runs(self.state.best_commit)), opts.confidence, opts.max_runs)
        self.emit(ev.NoiseEstimate(sd=noise.sd, samples=noise.samples, band=band, dof=noise.dof,
                                   jitter_only=noise.jitter_only, confidence=opts.confidence))

    # ------------------------------------------------------------------ human control

    @property
    def slots(self) -> list[Slot]:
        return self.scheduler.slots

    def pause(self) -> None:
        if not self.paused:
            self.paused = True
            self.emit(ev.Paused(paused=True))
            self.scheduler.notify()

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self.emit(ev.Paused(paused=False))
            self.scheduler.notify()

    def set_attended(self, attended: bool) -> None:
        if attended != self.attended:
            self.attended = attended
            self.emit(ev.ModeChanged(attended=attended))
            if not attended:
                for slot in self.slots:
                    _resolve_window(slot.candidate, "start")
            self.scheduler.notify()

    def _find(self, exp: int | None) -> Candidate | None:
        queue = self.scheduler.queue
        # A baseline run or a re-measurement is not an experiment a person steers.
        running = [s.candidate for s in self.slots
                   if s.candidate is not None and not s.candidate.is_baseline and not s.candidate.remeasure]
        if exp is None:
            waiting = [c for c in queue if not c.remeasure]
            return running[0] if running else (waiting[0] if waiting else None)
        for cand in running + [c for c in queue if not c.remeasure]:
            if cand.exp == exp:
                return cand
        return None

    def veto(self, exp: int | None = None) -> bool:
        cand = self._find(exp)
        if cand is None or cand.vetoed:
            return False
        cand.vetoed = True
        if cand in self.scheduler.queue:
            self.scheduler.queue.remove(cand)
            self.scheduler.spawn(self.scheduler.decide_vetoed(cand))
        elif cand.window is not None:
            _resolve_window(cand, "veto")
        elif cand.stop is not None:
            cand.stop.set()
        self.scheduler.notify()
        return True

    def force_keep(self, exp: int | None = None) -> bool:
        cand = self._find(exp)
        if cand is None or cand.vetoed or cand.forced:
            return False
        cand.forced = True
        self.emit(ev.Notice(level="info", message=f"experiment {cand.exp} will be kept whatever its metric, unless it crashes"))
        return True

    def start_now(self, exp: int | None = None) -> bool:
        for slot in self.slots:
            cand = slot.candidate
            if cand is not None and cand.window is not None and (exp is None or cand.exp == exp):
                _resolve_window(cand, "start")
                return True
        return False

    def request_stop(self, now: bool = False) -> None:
        self.stop("stopped by the user", now=now)

    def stop(self, reason: str, now: bool = False, error: bool = False) -> None:
        if self.stop_reason is None:
            self.stop_reason, self.stop_error = reason, error
            self.emit(ev.StateChanged(state=ev.STATE_STOPPING, detail=reason))
        self.stopping = True
        for slot in self.slots:
            cand = slot.candidate
            if cand is None:
                continue
            if cand.window is not None:
                cand.interrupted = True
                _resolve_window(cand, "stop")
            elif now and cand.stop is not None:
                cand.interrupted = True
                cand.stop.set()
        self.scheduler.notify()

    # ------------------------------------------------------------------ setup

    def _open(self) -> None:
        """Validate everything and lay out the run dir; raises UserError."""
        opts, run_dir = self.options, self.run_dir
        try:
            target = load_target(Path(opts.target_dir))
            validate_files(target)
            self.python = resolve_python(target)
        except ConfigError as exc:
            raise UserError(str(exc)) from None
        if opts.time_budget is not None:
            target.time_budget = float(opts.time_budget)
        self.target = target
        self.accounting.configure(resolve_pricing(opts.gpu_usd_per_hour, target.gpu_usd_per_hour, opts.budget_covers,
                                                  opts.budget_usd), opts.devices, target.time_budget)
        self.strategy = make_strategy(
            opts.strategy, direction=target.direction, debug=bool(getattr(self.proposer, "can_debug", False)),
            islands=opts.islands or max(2, len(opts.devices)), migrate_every=opts.migrate_every)
        try:
            self.limits = RunLimits.resolve(target.limits, opts.limit_memory, opts.limit_processes, opts.limit_writes,
                                            len(opts.devices), run_dir.path)
        except LimitError as exc:
            raise UserError(f"{target.source or target.root}: {exc}") from None
        sandbox = resolve_sandbox(opts.sandbox, target.sandbox.network, opts.sandbox_backends)  # SandboxError: a UserError
        self.confinement = Confinement(sandbox, run_dir.path, target.sandbox, data_home(), declared_env=target.env,
                                       extra_read=target_python_paths(self.python))
        try:
            git = self.git = GitRepo(target.root, opts.tag)
            git.keep = list(target.sandbox.keep)
            head = git.head_commit()
            git.check_clean()
        except GitError as exc:
            raise UserError(str(exc)) from None
        except GIT_ERRORS as exc:
            raise UserError(f"{target.root}: git failed: {str(exc).splitlines()[0]}") from None
        try:
            run_dir.path.mkdir(parents=True, exist_ok=True)
            probe = run_dir.path / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise UserError(f"{run_dir.path}: run dir not writable ({exc.strerror or exc})") from None
        run_dir.claim()
        self._owns_run_dir = True
        state = read_state(run_dir.path) or {}
        self.resumed = bool(state) or run_dir.ledger.exists()
        if state.get("tag") not in (None, opts.tag):
            raise UserError(f"{run_dir.path} holds run {state['tag']!r}, not {opts.tag!r}; use another --run-dir")
        try:
            if not self.resumed:
                if git.branch_exists():
                    raise UserError(
                        f"branch {git.branch} already exists in {git.toplevel}; "
                        "choose another --tag, or pass that run's --run-dir to resume it"
                    )
                git.create_branch(head)
            elif not git.branch_exists():
                git.create_branch(state.get("best_commit") or head)
        except LedgerError as exc:
            raise UserError(str(exc)) from None
        try:
            self.ledger = Ledger(run_dir.path, target.metric)
            self.event_log = EventLog(run_dir.path)
        except LedgerError as exc:
            raise UserError(str(exc)) from None
        ended = kill_orphans(run_dir.path)
        if ended:
            self.emit(ev.Notice(level="warning", message=f"ended {ended} training process(es) left by an earlier engine"))
        events = list(read_events(run_dir.events))
        self.accounting.restore(state, events)
        self.state = ResearchState.restore(state, self.ledger.rows, events, git,
                                           lambda exp: read_evidence(run_dir.log(exp)))
        self.scheduler.queue.extend(self.state.in_flight.values())
        self._resumed_exps = sorted(self.state.in_flight)
        self.propose_target = git.ensure_worktree(run_dir.propose_worktree, self.state.best_commit)
        self.scheduler.slots = [
            Slot(index, device, run_dir.slot_worktree(index),
                 git.ensure_worktree(run_dir.slot_worktree(index), self.state.best_commit))
            for index, device in enumerate(opts.devices)
        ]
        protected = list(target.protected)
        if (self.propose_target / "autoresearch.toml").exists() and "autoresearch.toml" not in protected:
            protected.append("autoresearch.toml")
        target.protected = protected
        hashes = file_hashes(self.propose_target, protected)
        self.trial = Trial(run_dir, target, git, self.executor, self.accounting.trial_emit(self.emit), hashes,
                           self.python, self.confinement, self.limits)
        # If the kernel must kill for memory, a run goes first (its score is the highest), the engine last.
        self.engine_oom_lowered = lower_engine_oom_score()
        self._node_refs = set(git.nodes())
        self.recorder = Recorder(run_dir, self.ledger, self.emit, self.save_state)

    def _release(self) -> None:
        if self._owns_run_dir:
            self.run_dir.release()

    @property
    def judging(self) -> Judging:
        assert self.target is not None
        return Judging(direction=self.target.direction, metric_name=self.target.metric,
                       max_runs=self.options.max_runs, confidence=self.options.confidence,
                       min_effect=self.target.min_effect,
                       best_runs_capped=self.state.best_commit in self.scheduler.remeasure_failed)

    async def sync_nodes(self) -> None:
        """Keep a git ref for every node the strategy may still build on, and
        only for those: `git branch` stays readable, git never collects a
        commit that may become a parent, and pruned nodes let go of theirs."""
        assert self.git is not None
        live = {exp for exp in self.strategy.live_nodes(self.state, self.judging) if exp in self.state.nodes}
        if live == self._node_refs:
            return
        git, nodes = self.git, self.state.nodes

        def sync() -> None:
            for exp in live - self._node_refs:
                git.set_node(exp, nodes[exp].commit)
            for exp in self._node_refs - live:
                git.drop_node(exp)

        await asyncio.to_thread(sync)
        self._node_refs = live

    def save_state(self) -> None:
        self.disk.save_state(self.write_state_file)

    def write_state_file(self) -> None:
        write_state(self.run_dir.path, {
            "tag": self.options.tag,
            "target": str(self.target.root if self.target else ""),
            **self.state.to_state(),
            **self.accounting.to_state(),
            "updated": time.time(),
        })

    # ------------------------------------------------------------------ the run

    async def run(self) -> ev.RunStopped:
        """Run until a budget is reached or a stop is requested. Raises
        UserError before anything starts when the input is bad."""
        try:
            await asyncio.to_thread(self._open)
        except BaseException:
            self._release()
            raise
        async with contextlib.AsyncExitStack() as services:
            for service in self.services:
                try:
                    await services.enter_async_context(_guarded(self, service(self)))
                except Exception as exc:
                    self.emit(ev.Notice(level="warning", message=f"a service did not start: {exc}"))
            try:
                stopped = await self._run_opened()
            finally:
                # A proposer may hold tasks of its own (the team's planner
                # waiting out an outage): they end with the run, not the process.
                close = getattr(self.proposer, "aclose", None)
                if close is not None:
                    await close()
        self._close()
        return stopped

    async def _run_opened(self) -> ev.RunStopped:
        assert self.target is not None and self.ledger is not None
        self.emit(ev.RunStarted(
            tag=self.options.tag,
            target=str(self.target.root),
            run_dir=str(self.run_dir.path),
            agent=self.proposer.name,
            model=self.proposer.model,
            metric=self.target.metric,
            direction=self.target.direction,
            attended=self.attended,
            veto_window_s=self.options.veto_window_s,
            slots=[s.device for s in self.slots],
            lookahead=self.options.lookahead,
            resumed=self.resumed,
            budget_usd=self.options.budget_usd,
            max_experiments=self.options.max_experiments,
            hours=self.options.hours,
            time_budget_s=self.target.time_budget,
            python=self.python.description,
            sandbox=self.confinement.sandbox.describe(),
            gpu_usd_per_hour=self.accounting.pricing.usd_per_hour,
            budget_covers=self.accounting.pricing.covers,
            limits=self.limits.describe() + ("; the engine's OOM score lowered" if self.engine_oom_lowered else ""),
        ))
        if not self.confinement.sandbox.confined and self.confinement.sandbox.mode != "off":
            self.emit(ev.Notice(level="warning", message=self.confinement.sandbox.describe()))
        for exp in self._resumed_exps:
            done = len(self.state.in_flight[exp].runs) if exp in self.state.in_flight else 0
            counted = f" ({done} finished run(s) count; the cut one runs again with its seed)" if done else ""
            self.emit(ev.Notice(level="warning", message=f"experiment {exp} was interrupted; running it again{counted}"))
        for name, count in (("events.jsonl", self.event_log.repaired), ("results.tsv", self.ledger.repaired)):
            if count:
                self.emit(ev.Notice(level="warning", message=f"{name}: set aside {count} line(s) that were not whole "
                                                             f"records (a torn last line, or not written by ar-tui) "
                                                             f"in {name}.rejected; the rest is intact"))
        if self.state.best_metric is not None:
            self.emit(ev.BaselineReady(metric=self.state.baseline_metric or self.state.best_metric,
                                       commit=self.state.best_commit))
            await self.solve_design_ahead(self.band_looks())
            self.emit_noise()
        scheduler = self.scheduler
        tasks: list[asyncio.Task] = []
        try:
            self.save_state()
            tasks.append(asyncio.create_task(self._hours_timer()))
            await self._prepare_target()
            # The proposer starts now, so the first proposal is prepared while
            # the baseline trains.
            tasks.append(asyncio.create_task(scheduler.proposer_loop()))
            if not self.stopping and not self.ledger.decided(0):
                await scheduler.baseline()
            if not self.stopping:
                scheduler.maybe_finish()
                await asyncio.gather(*(scheduler.slot_loop(slot) for slot in self.slots))
                await scheduler.confirm_best()
            if scheduler.background:
                await asyncio.gather(*list(scheduler.background), return_exceptions=True)
        except LedgerError as exc:
            self.stop(f"{exc} (the rows before it are intact)", now=True, error=True)
        except Exception as exc:  # a bug or a git failure: stop resumably, keep the evidence
            self._record_crash(exc)
            self.stop(f"engine error: {exc!r:.300} (details in engine-error.log; run again to resume)",
                      now=True, error=True)
        except asyncio.CancelledError:
            self.stop("cancelled", now=True)
            raise
        finally:
            for task in [*tasks, *scheduler.background]:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self.disk.close()
        return self._finish()

    def _record_crash(self, exc: BaseException) -> None:
        with contextlib.suppress(OSError):
            with open(self.run_dir.engine_error, "a", encoding="utf-8") as handle:
                handle.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
                handle.write("".join(traceback.format_exception(exc)))

    def _finish(self) -> ev.RunStopped:
        assert self.ledger is not None and self.target is not None
        with contextlib.suppress(LedgerError):
            self.save_state()
        rows = self.ledger.rows
        kept = sum(1 for r in rows if r.status == ev.STATUS_KEEP and r.exp not in (0, None))
        experiments = sum(1 for r in rows if r.exp not in (0, None))
        state = self.state
        improvement = None
        if state.baseline_metric and state.best_metric is not None:
            improvement = 100.0 * self.target.improvement(state.best_metric, state.baseline_metric) / abs(
                state.baseline_metric)
        stopped = ev.RunStopped(
            reason=self.stop_reason or "finished",
            experiments=experiments,
            kept=kept,
            best_metric=state.best_metric,
            baseline_metric=state.baseline_metric,
            improvement_pct=improvement,
            cost_usd=self.accounting.spent_usd,
            error=self.stop_error,
            gpu_cost_usd=self.accounting.gpu_usd if self.accounting.pricing.priced else None,
            gpu_seconds=self.accounting.gpu_seconds,
        )
        baseline = next((row.commit for row in rows if row.exp == 0 and row.metric is not None), None)
        if baseline and state.best_commit:
            summary = night_summary(state.noise, baseline, state.best_commit, self.target.direction,
                                    self.options.confidence)
            stopped.improvement_ci_pct = summary["improvement_ci_pct"]
            stopped.improvement_text = summary["improvement_text"]
            stopped.noise_sd, stopped.noise_dof = summary["noise_sd"], summary["noise_dof"]
            stopped.noise_jitter_only = summary["noise_jitter_only"]
        with contextlib.suppress(LedgerError):
            self.emit(ev.StateChanged(state=ev.STATE_STOPPED, detail=stopped.reason))
            self.emit(stopped)
        self.stopped = stopped
        return stopped

    def _close(self) -> None:
        if self.event_log is not None:
            self.disk.flush_at_close()
            self.event_log.close()
        self._release()

    async def _hours_timer(self) -> None:
        if not self.options.hours:
            return
        await asyncio.sleep(self.options.hours * 3600)
        self.stop(f"time limit of {self.options.hours:g} h reached")

    async def _prepare_target(self) -> None:
        """Run the target's idempotent prepare command once per start."""
        assert self.trial is not None
        if not self.target or not self.target.prepare:
            return
        self.emit(ev.StateChanged(state=ev.STATE_STARTING, detail="preparing data"))
        failure = await self.trial.prepare_target(self.slots[0])
        if failure is not None:
            self.stop(failure, error=True)


def _resolve_window(cand: Candidate | None, answer: str) -> None:
    if cand is not None and cand.window is not None and not cand.window.done():
        cand.window.set_result(answer)


@contextlib.asynccontextmanager
async def _guarded(engine: Engine, manager: AsyncContextManager[object]):
    """Enter a service (a failure to start propagates, and is reported by the
    caller); a failure on the way out is reported to the observers and never
    hides the run's result."""
    await manager.__aenter__()
    try:
        yield
    except BaseException as exc:
        await manager.__aexit__(type(exc), exc, exc.__traceback__)
        raise
    try:
        await manager.__aexit__(None, None, None)
    except Exception as exc:
        for observer in list(engine.observers):
            with contextlib.suppress(Exception):
                observer(ev.Notice(level="warning", message=f"{exc}"))
