"""The engine's face: `EngineHandle` for whoever watches and steers it, and
`run()`, which opens the run, runs the scheduler and closes cleanly. It only
emits, steers and runs; the parts behind it are listed in
`ar_tui.core.engine`'s docstring.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Callable, Iterable

from ar_tui.core import events as ev
from ar_tui.core.control.handle import Observer
from ar_tui.core.engine.disk import DiskGuard
from ar_tui.core.engine.judging import Judge
from ar_tui.core.engine.opening import Run, open_run
from ar_tui.core.engine.parts import Candidate, EngineOptions, Slot, Steering, resolve_window
from ar_tui.core.engine.recorder import Recorder
from ar_tui.core.engine.scheduler import Scheduler
from ar_tui.core.engine.services import Service, enter_services
from ar_tui.core.executors.base import Executor
from ar_tui.core.executors.local import LocalExecutor
from ar_tui.core.proposer import Proposer
from ar_tui.core.records.ledger import LedgerError
from ar_tui.core.records.rundir import RunDir


class Engine:
    def __init__(self, options: EngineOptions, proposer: Proposer, executor: Executor | None = None,
                 services: Iterable[Service] = ()) -> None:
        self.options = options
        self.proposer = proposer
        self.executor = executor or LocalExecutor()
        self.services = list(services)
        self.run_dir = RunDir(Path(options.run_dir).resolve())
        self.observers: list[Observer] = []
        self.steering = Steering(attended=options.attended)
        # Set once the run is opened (`run()`): the parts and what they share.
        self.opened: Run | None = None
        self.disk: DiskGuard | None = None  # the opened run's: writes events.jsonl, waits when the disk is full
        self.scheduler: Scheduler | None = None
        self.stopped: ev.RunStopped | None = None
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
        if event.persist and self.disk is not None and not self._log_broken:
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

    # ------------------------------------------------------------------ human control

    @property
    def paused(self) -> bool:
        return self.steering.paused

    @property
    def attended(self) -> bool:
        return self.steering.attended

    @property
    def stop_reason(self) -> str | None:
        return self.steering.stop_reason

    @property
    def slots(self) -> list[Slot]:
        return self.opened.slots if self.opened is not None else []

    def _notify(self) -> None:
        if self.scheduler is not None:
            self.scheduler.notify()

    def pause(self) -> None:
        if not self.steering.paused:
            self.steering.paused = True
            self.emit(ev.Paused(paused=True))
            self._notify()

    def resume(self) -> None:
        if self.steering.paused:
            self.steering.paused = False
            self.emit(ev.Paused(paused=False))
            self._notify()

    def set_attended(self, attended: bool) -> None:
        if attended != self.steering.attended:
            self.steering.attended = attended
            self.emit(ev.ModeChanged(attended=attended))
            if not attended:
                for slot in self.slots:
                    resolve_window(slot.candidate, "start")
            self._notify()

    def _find(self, exp: int | None) -> Candidate | None:
        queue = self.scheduler.queue if self.scheduler is not None else []
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
        scheduler = self.scheduler
        if scheduler is not None and cand in scheduler.queue:
            scheduler.queue.remove(cand)
            scheduler.spawn(scheduler.decide_vetoed(cand))
        elif cand.window is not None:
            resolve_window(cand, "veto")
        elif cand.stop is not None:
            cand.stop.set()
        self._notify()
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
                resolve_window(cand, "start")
                return True
        return False

    def request_stop(self, now: bool = False) -> None:
        self.stop("stopped by the user", now=now)

    def stop(self, reason: str, now: bool = False, error: bool = False) -> None:
        steering = self.steering
        if steering.stop_reason is None:
            steering.stop_reason, steering.stop_error = reason, error
            self.emit(ev.StateChanged(state=ev.STATE_STOPPING, detail=reason))
        steering.stopping = True
        for slot in self.slots:
            cand = slot.candidate
            if cand is None:
                continue
            if cand.window is not None:
                cand.interrupted = True
                resolve_window(cand, "stop")
            elif now and cand.stop is not None:
                cand.interrupted = True
                cand.stop.set()
        self._notify()

    # ------------------------------------------------------------------ the run

    async def run(self) -> ev.RunStopped:
        """Run until a budget is reached or a stop is requested. Raises
        UserError before anything starts when the input is bad."""
        run, scheduler = await self._open()
        async with contextlib.AsyncExitStack() as services:
            await enter_services(services, self.services, self, self.observers, self.emit)
            try:
                stopped = await self._run_opened(run, scheduler)
            finally:
                # A proposer may hold tasks of its own (the team's planner
                # waiting out an outage): they end with the run, not the process.
                close = getattr(self.proposer, "aclose", None)
                if close is not None:
                    await close()
        self._close()
        return stopped

    @contextlib.asynccontextmanager
    async def session(self):
        """The run opened as for a resume, without its night or services: work on a finished run
        (`finalize --ablate`) on the night's slots, executor, sandbox, records and accounting."""
        await self._open()
        try:
            yield self
        finally:
            self._close()

    async def _open(self) -> tuple[Run, Scheduler]:
        """Open the run dir (UserError on bad input) and build the parts on it."""
        run = self.opened = await asyncio.to_thread(open_run, self.options, self.proposer, self.executor,
                                                    self.run_dir, self.steering, self.emit, self.stop)
        try:
            self.disk = run.disk
            judge = Judge(run)
            scheduler = self.scheduler = Scheduler(run, judge, Recorder(run, judge))
            if run.orphans_ended:
                self.emit(ev.Notice(level="warning",
                                    message=f"ended {run.orphans_ended} training process(es) left by an earlier engine"))
        except BaseException:
            self._close()
            raise
        return run, scheduler

    async def _run_opened(self, run: Run, scheduler: Scheduler) -> ev.RunStopped:
        judge, recorder = scheduler.judge, scheduler.recorder
        for event in run.opening_events():
            self.emit(event)
        if run.state.best_metric is not None:
            await judge.solve_design_ahead(judge.band_looks())
            judge.emit_noise()
        tasks: list[asyncio.Task] = []
        try:
            recorder.save_state()
            tasks.append(asyncio.create_task(self._hours_timer()))
            await self._prepare_target(run)
            # The proposer starts now, so the first proposal is prepared while
            # the baseline trains.
            tasks.append(asyncio.create_task(scheduler.proposing()))
            if not self.steering.stopping and not run.ledger.decided(0):
                await scheduler.measuring.baseline()
            if not self.steering.stopping:
                scheduler.maybe_finish()
                await asyncio.gather(*(scheduler.slot_loop(slot) for slot in run.slots))
                await scheduler.measuring.confirm_best()
            if scheduler.background:
                await asyncio.gather(*list(scheduler.background), return_exceptions=True)
        except LedgerError as exc:
            self.stop(f"{exc} (the rows before it are intact)", now=True, error=True)
        except Exception as exc:  # a bug or a git failure: stop resumably, keep the evidence
            self.stop(recorder.crash(exc), now=True, error=True)
        except asyncio.CancelledError:
            self.stop("cancelled", now=True)
            raise
        finally:
            for task in [*tasks, *scheduler.background]:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await run.disk.close()
        return self._finish(run, recorder)

    def _finish(self, run: Run, recorder: Recorder) -> ev.RunStopped:
        with contextlib.suppress(LedgerError):
            recorder.save_state()
        stopped = recorder.night(self.steering.stop_reason or "finished", self.steering.stop_error)
        with contextlib.suppress(LedgerError):
            self.emit(ev.StateChanged(state=ev.STATE_STOPPED, detail=stopped.reason))
            self.emit(stopped)
        self.stopped = stopped
        return stopped

    def _close(self) -> None:
        if self.disk is not None:
            self.disk.close_log()
        if self.opened is not None:
            self.run_dir.release()

    async def _hours_timer(self) -> None:
        if not self.options.hours:
            return
        await asyncio.sleep(self.options.hours * 3600)
        self.stop(f"time limit of {self.options.hours:g} h reached")

    async def _prepare_target(self, run: Run) -> None:
        """Run the target's idempotent prepare command once per start."""
        if not run.target.prepare:
            return
        self.emit(ev.StateChanged(state=ev.STATE_STARTING, detail="preparing data"))
        failure = await run.trial.prepare_target(run.slots[0])
        if failure is not None:
            self.stop(failure, error=True)
