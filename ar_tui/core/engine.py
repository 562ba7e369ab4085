"""The experiment engine: propose, commit, run, judge, keep or revert, record.

Scheduling: one proposer task prepares candidates against the current best
while slot tasks (one per device, each with its own worktree) run them. With
one slot and lookahead 0 this is the original sequential loop; with lookahead
K the proposer keeps up to K prepared candidates waiting per slot, so a slot
never waits for the agent to think.

Decisions are serialised under one lock, in the order runs finish; the ledger
order is the order of decisions. A candidate whose parent is no longer the
best (another one was kept while it ran) is never kept against that stale
baseline: if it beat its own parent it is re-applied on the new best and run
again.

Human control arrives through the methods of `EngineHandle` (pause, veto,
force-keep, mode, stop), called on the engine's own event loop; waits for them
are futures and events, never flags polled from another thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import shlex
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

from ar_tui.core import events as ev
from ar_tui.core.config import ConfigError, TargetConfig, load_target, validate_files
from ar_tui.core.control import Observer
from ar_tui.core.decisions import RERUN, NoiseModel, judge
from ar_tui.core.evidence import read_evidence
from ar_tui.core.git import GIT_ERRORS, GitError, GitRepo
from ar_tui.core.ledger import EventLog, Ledger, LedgerError, LedgerRow, read_events, read_state, write_state
from ar_tui.core.proposer import (
    Proposal,
    ProposalContext,
    ProposalFailed,
    Proposer,
    ProposerStopped,
    ResultRow,
)
from ar_tui.core.runner import RUN_MARKER_ENV, Executor, LocalExecutor, RunSpec, kill_orphans
from ar_tui.core.workspace import Workspace

# A proposer that fails this many times in a row is not going to recover by itself.
MAX_FAILED_PROPOSALS_IN_ROW = 5
# Environment variables never passed to a training script: it could print them.
SECRET_ENV_PREFIXES = ("ANTHROPIC_",)
EVALUATE_TIMEOUT_S = 600.0


PID_FILE = "engine.pid"


def engine_pid(run_dir: Path) -> int | None:
    """The pid of the live engine that owns `run_dir`, or None (no pid file,
    or a stale one left by a crashed engine)."""
    try:
        pid = int((Path(run_dir) / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    if pid == os.getpid():
        return pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    try:
        import psutil

        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        # A recycled pid belongs to some other program.
        if "ar_tui" not in " ".join(proc.cmdline()) and "ar-tui" not in " ".join(proc.cmdline()):
            return None
    except Exception:
        pass
    return pid


class UserError(Exception):
    """Bad input: the engine refuses to start. The message is one line."""


@dataclass
class EngineOptions:
    target_dir: Path
    tag: str
    run_dir: Path
    time_budget: float | None = None  # overrides the target's
    max_experiments: int | None = None
    hours: float | None = None
    budget_usd: float | None = None
    attended: bool = False
    veto_window_s: float = 60.0
    devices: list[str] = field(default_factory=lambda: ["cpu"])  # one slot per entry
    lookahead: int = 1
    baseline_runs: int = 2
    max_runs: int = 2  # runs of one candidate inside the noise band
    noise_k: float = 2.0
    write_report: bool = True


@dataclass
class Candidate:
    exp: int
    description: str
    rationale: str
    diff: str
    base_commit: str
    cost_usd: float = 0.0
    prepared_before: list[int] = field(default_factory=list)
    is_baseline: bool = False
    commit: str | None = None
    parent: str | None = None
    runs: list[float] = field(default_factory=list)
    attempt: int = 0
    forced: bool = False
    vetoed: bool = False
    interrupted: bool = False
    memory_gb: float | None = None
    seconds: float = 0.0
    window: asyncio.Future | None = None
    stop: asyncio.Event | None = None

    def to_state(self) -> dict:
        return {
            "exp": self.exp,
            "description": self.description,
            "rationale": self.rationale,
            "base_commit": self.base_commit,
            "cost_usd": self.cost_usd,
            "prepared_before": self.prepared_before,
        }


@dataclass
class Slot:
    index: int
    device: str
    worktree: Path
    target_dir: Path
    candidate: Candidate | None = None


@dataclass
class Outcome:
    outcome: str
    metric: float | None
    reported: float | None
    memory_gb: float | None
    seconds: float
    exit_code: int | None
    message: str
    tail: str


def _env_for_child(run_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SECRET_ENV_PREFIXES)}
    env.update(extra)
    # `python` in a target's commands is the interpreter running ar-tui.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env[RUN_MARKER_ENV] = str(run_dir)
    return env


class Engine:
    def __init__(self, options: EngineOptions, proposer: Proposer, executor: Executor | None = None) -> None:
        self.options = options
        self.proposer = proposer
        self.executor = executor or LocalExecutor()
        self.run_dir = Path(options.run_dir).resolve()
        self.observers: list[Observer] = []
        self.target: TargetConfig | None = None
        self.git: GitRepo | None = None
        self.ledger: Ledger | None = None
        self.event_log: EventLog | None = None
        self.slots: list[Slot] = []
        self.queue: deque[Candidate] = deque()
        self.in_flight: dict[int, Candidate] = {}
        self.noise = NoiseModel(k=options.noise_k)
        self.best_commit = ""
        self.best_metric: float | None = None
        self.baseline_metric: float | None = None
        self.metric_of: dict[str, float] = {}
        self.next_exp = 1
        self.history: list[ResultRow] = []
        self.last_failure_tail = ""
        self.protected_hashes: dict[str, str] = {}
        self.attended = options.attended
        self.paused = False
        self.stopping = False
        self.stop_reason: str | None = None
        self.stop_error = False
        self.proposer_done = False
        self._finish_reason = "finished"
        self.failed_in_row = 0
        self.spent_usd = 0.0
        self.tokens = {"input": 0, "output": 0, "cache_write": 0, "cache_read": 0}
        self.cost_by_exp: dict[int, float] = {}
        self.started_at = time.time()
        self.resumed = False
        self._changed = asyncio.Event()
        self._decide_lock = asyncio.Lock()
        self._proposer_lock = asyncio.Lock()
        self.control_server = None
        self._log_broken = False
        self._propose_worktree: Path | None = None
        self._propose_target: Path | None = None

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
                self.event_log.write(event)
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

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_for(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._changed.wait()

    def _slot_state(self, slot: Slot, state: str, exp: int | None = None, detail: str = "") -> None:
        self.emit(ev.StateChanged(state=state, slot=slot.index, exp=exp, detail=detail))

    # ------------------------------------------------------------------ human control

    def pause(self) -> None:
        if not self.paused:
            self.paused = True
            self.emit(ev.Paused(paused=True))
            self._notify()

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self.emit(ev.Paused(paused=False))
            self._notify()

    def set_attended(self, attended: bool) -> None:
        if attended != self.attended:
            self.attended = attended
            self.emit(ev.ModeChanged(attended=attended))
            if not attended:
                for slot in self.slots:
                    self._resolve_window(slot.candidate, "start")
            self._notify()

    def _find(self, exp: int | None) -> Candidate | None:
        running = [s.candidate for s in self.slots if s.candidate is not None and not s.candidate.is_baseline]
        if exp is None:
            return running[0] if running else (self.queue[0] if self.queue else None)
        for cand in running + list(self.queue):
            if cand.exp == exp:
                return cand
        return None

    def veto(self, exp: int | None = None) -> bool:
        cand = self._find(exp)
        if cand is None or cand.vetoed:
            return False
        cand.vetoed = True
        if cand in self.queue:
            self.queue.remove(cand)
            asyncio.get_running_loop().create_task(self._decide_vetoed(cand))
        elif cand.window is not None:
            self._resolve_window(cand, "veto")
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
                self._resolve_window(cand, "start")
                return True
        return False

    def request_stop(self, now: bool = False) -> None:
        self._stop("stopped by the user", now=now)

    @staticmethod
    def _resolve_window(cand: Candidate | None, answer: str) -> None:
        if cand is not None and cand.window is not None and not cand.window.done():
            cand.window.set_result(answer)

    def _stop(self, reason: str, now: bool = False, error: bool = False) -> None:
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
                self._resolve_window(cand, "stop")
            elif now and cand.stop is not None:
                cand.interrupted = True
                cand.stop.set()
        self._notify()

    # ------------------------------------------------------------------ setup

    def _open(self) -> None:
        """Validate everything and lay out the run dir; raises UserError."""
        opts = self.options
        try:
            target = load_target(Path(opts.target_dir))
            validate_files(target)
        except ConfigError as exc:
            raise UserError(str(exc)) from None
        if opts.time_budget is not None:
            target.time_budget = float(opts.time_budget)
        self.target = target
        try:
            self.git = GitRepo(target.root, opts.tag)
            head = self.git.head_commit()
            self.git.check_clean()
        except GitError as exc:
            raise UserError(str(exc)) from None
        except GIT_ERRORS as exc:
            raise UserError(f"{target.root}: git failed: {str(exc).splitlines()[0]}") from None
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            probe = self.run_dir / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise UserError(f"{self.run_dir}: run dir not writable ({exc.strerror or exc})") from None

        self._claim_run_dir()
        state = read_state(self.run_dir) or {}
        has_ledger = (self.run_dir / "results.tsv").exists()
        self.resumed = bool(state) or has_ledger
        if state.get("tag") not in (None, opts.tag):
            raise UserError(f"{self.run_dir} holds run {state['tag']!r}, not {opts.tag!r}; use another --run-dir")
        try:
            if not self.resumed:
                if self.git.branch_exists():
                    raise UserError(
                        f"branch {self.git.branch} already exists in {self.git.toplevel}; "
                        "choose another --tag, or pass that run's --run-dir to resume it"
                    )
                self.git.create_branch(head)
            elif not self.git.branch_exists():
                self.git.create_branch(state.get("best_commit") or head)
        except LedgerError as exc:
            raise UserError(str(exc)) from None
        try:
            self.ledger = Ledger(self.run_dir, target.metric)
            self.event_log = EventLog(self.run_dir)
        except LedgerError as exc:
            raise UserError(str(exc)) from None
        ended = kill_orphans(self.run_dir)
        if ended:
            self.emit(ev.Notice(level="warning", message=f"ended {ended} training process(es) left by an earlier engine"))
        self._restore(state)
        worktrees = self.run_dir / "worktrees"
        self._propose_worktree = worktrees / "propose"
        self._propose_target = self.git.ensure_worktree(self._propose_worktree, self.best_commit)
        self.slots = []
        for index, device in enumerate(opts.devices):
            path = worktrees / f"slot-{index}"
            self.slots.append(Slot(index, device, path, self.git.ensure_worktree(path, self.best_commit)))
        protected = list(target.protected)
        if (self._propose_target / "autoresearch.toml").exists() and "autoresearch.toml" not in protected:
            protected.append("autoresearch.toml")
        self.target.protected = protected
        self.protected_hashes = self.git.file_hashes(self._propose_target, protected)

    def _claim_run_dir(self) -> None:
        """One engine per run dir: a live one is refused, a dead one's pid file
        is stale and replaced."""
        pid_file = self.run_dir / PID_FILE
        other = engine_pid(self.run_dir)
        if other is not None and other != os.getpid():
            raise UserError(f"{self.run_dir} is in use by a running engine (pid {other}); attach to it instead")
        try:
            pid_file.write_text(f"{os.getpid()}\n")
        except OSError as exc:
            raise UserError(f"{self.run_dir}: run dir not writable ({exc.strerror or exc})") from None
        self._owns_pid_file = True

    def _release_run_dir(self) -> None:
        if getattr(self, "_owns_pid_file", False) and engine_pid(self.run_dir) == os.getpid():
            with contextlib.suppress(OSError):
                (self.run_dir / PID_FILE).unlink()

    def _restore(self, state: dict) -> None:
        """Rebuild the picture from results.tsv (the truth), events.jsonl and state.json."""
        assert self.git is not None and self.ledger is not None
        self.best_commit = self.git.branch_tip()
        self.spent_usd = float(state.get("spent_usd", 0.0))
        self.tokens.update(state.get("tokens", {}))
        self.cost_by_exp = {int(k): v for k, v in state.get("cost_by_exp", {}).items()}
        self.noise = NoiseModel.from_dict(state["noise"]) if "noise" in state else NoiseModel(k=self.options.noise_k)
        self.noise.k = self.options.noise_k
        self.next_exp = int(state.get("next_exp", 1))
        rows = self.ledger.rows
        proposals: dict[int, ev.ProposalReady] = {}
        for event in read_events(self.run_dir / "events.jsonl"):
            if isinstance(event, ev.ProposalReady):
                proposals[event.exp] = event
            elif isinstance(event, ev.Usage) and not event.streaming:
                self.spent_usd = max(self.spent_usd, event.total_cost_usd)
        for row in rows:
            if row.exp is not None:
                self.next_exp = max(self.next_exp, row.exp + 1)
            ready = proposals.get(row.exp) if row.exp is not None else None
            self.history.append(
                ResultRow(
                    exp=row.exp or 0,
                    commit=row.commit,
                    metric=row.metric,
                    status=row.status,
                    description=row.description,
                    rationale=row.rationale,
                    diff=ready.diff if ready else "",
                    cost_usd=row.cost_usd,
                    evidence=read_evidence(self._log_path(row.exp or 0, 1)),
                )
            )
        keeps = [row for row in rows if row.status == ev.STATUS_KEEP and row.metric is not None]
        if keeps:
            last = keeps[-1]
            self.best_metric = last.metric
            baseline = next((row for row in rows if row.exp == 0), None)
            self.baseline_metric = baseline.metric if baseline else None
            # The row is written before the branch moves: a crash between the
            # two leaves the branch behind, and this repairs it.
            with contextlib.suppress(*GIT_ERRORS):
                kept = self.git.resolve(last.commit)
                if kept != self.best_commit and not self.git.is_ancestor(kept, self.best_commit):
                    self.git.set_branch(kept)
                    self.best_commit = kept
            self.metric_of[self.best_commit] = last.metric
        decided = {row.exp for row in rows if row.exp is not None}
        for exp, ready in sorted(proposals.items()):
            self.next_exp = max(self.next_exp, exp + 1)
            if exp in decided:
                continue
            cand = Candidate(
                exp=exp,
                description=ready.description,
                rationale=ready.rationale,
                diff=ready.diff,
                base_commit=ready.base_commit,
                cost_usd=ready.cost_usd,
            )
            self.in_flight[exp] = cand
            self.queue.append(cand)
        self._resumed_exps = sorted(self.in_flight)

    def _save_state(self) -> None:
        write_state(
            self.run_dir,
            {
                "tag": self.options.tag,
                "target": str(self.target.root if self.target else ""),
                "best_commit": self.best_commit,
                "best_metric": self.best_metric,
                "baseline_metric": self.baseline_metric,
                "next_exp": self.next_exp,
                "noise": self.noise.to_dict(),
                "spent_usd": self.spent_usd,
                "tokens": self.tokens,
                "cost_by_exp": self.cost_by_exp,
                "in_flight": [c.to_state() for c in self.in_flight.values()],
                "updated": time.time(),
            },
        )

    # ------------------------------------------------------------------ the run

    async def run(self) -> ev.RunStopped:
        """Run until a budget is reached or a stop is requested. Raises
        UserError before anything starts when the input is bad."""
        try:
            await asyncio.to_thread(self._open)
        except BaseException:
            self._release_run_dir()
            raise
        assert self.target is not None
        await self._start_control_server()
        self.emit(
            ev.RunStarted(
                tag=self.options.tag,
                target=str(self.target.root),
                run_dir=str(self.run_dir),
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
            )
        )
        for exp in self._resumed_exps:
            self.emit(ev.Notice(level="warning", message=f"experiment {exp} was interrupted; running it again"))
        if self.best_metric is not None:
            self.emit(ev.BaselineReady(metric=self.baseline_metric or self.best_metric, commit=self.best_commit))
            self._emit_noise()
        tasks: list[asyncio.Task] = []
        try:
            self._save_state()
            tasks.append(asyncio.create_task(self._hours_timer()))
            await self._prepare_target()
            # The proposer starts now, so the first proposal is prepared while
            # the baseline trains.
            tasks.append(asyncio.create_task(self._proposer_loop()))
            if not self.stopping and not self.ledger.decided(0):
                await self._baseline()
            if not self.stopping:
                self._maybe_finish()
                await asyncio.gather(*(self._slot_loop(slot) for slot in self.slots))
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        except LedgerError as exc:
            self._stop(f"{exc} (the rows before it are intact)", now=True, error=True)
        except Exception as exc:  # a bug or a git failure: stop resumably, keep the evidence
            self._record_crash(exc)
            self._stop(f"engine error: {exc!r:.300} (details in engine-error.log; run again to resume)",
                       now=True, error=True)
        except asyncio.CancelledError:
            self._stop("cancelled", now=True)
            for task in tasks:
                task.cancel()
            raise
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
        return await self._finish()

    def _record_crash(self, exc: BaseException) -> None:
        import traceback

        with contextlib.suppress(OSError):
            with open(self.run_dir / "engine-error.log", "a", encoding="utf-8") as handle:
                handle.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
                handle.write("".join(traceback.format_exception(exc)))

    async def _finish(self) -> ev.RunStopped:
        with contextlib.suppress(LedgerError):
            self._save_state()
        kept = sum(1 for r in self.ledger.rows if r.status == ev.STATUS_KEEP and r.exp not in (0, None))
        experiments = sum(1 for r in self.ledger.rows if r.exp not in (0, None))
        improvement = None
        if self.baseline_metric and self.best_metric is not None:
            assert self.target is not None
            improvement = 100.0 * self.target.improvement(self.best_metric, self.baseline_metric) / abs(
                self.baseline_metric
            )
        stopped = ev.RunStopped(
            reason=self.stop_reason or "finished",
            experiments=experiments,
            kept=kept,
            best_metric=self.best_metric,
            baseline_metric=self.baseline_metric,
            improvement_pct=improvement,
            cost_usd=self.spent_usd,
            error=self.stop_error,
        )
        with contextlib.suppress(LedgerError):
            self.emit(ev.StateChanged(state=ev.STATE_STOPPED, detail=stopped.reason))
            self.emit(stopped)
        if self.options.write_report and self.ledger.rows:
            await self._write_report()
        if self.control_server is not None:
            with contextlib.suppress(Exception):
                await self.control_server.close()
        if self.event_log is not None:
            self.event_log.close()
        self._release_run_dir()
        return stopped

    async def _start_control_server(self) -> None:
        """The run's Unix socket, through which `ar-tui attach`, `status` and
        `stop` reach this engine."""
        try:
            from ar_tui.core.server import ControlServer
        except ImportError:
            return
        try:
            self.control_server = ControlServer(self, self.run_dir)
            await self.control_server.start()
        except OSError as exc:
            self.control_server = None
            self.emit(ev.Notice(level="warning", message=f"no control socket, attach will not work: {exc}"))

    async def _write_report(self) -> None:
        try:
            from ar_tui.core.report import write_report
        except ImportError:
            return
        try:
            await asyncio.to_thread(write_report, self.run_dir)
        except Exception as exc:  # the run is over; a report failure must not hide its result
            for observer in list(self.observers):
                with contextlib.suppress(Exception):
                    observer(ev.Notice(level="warning", message=f"could not write the report: {exc}"))

    async def _hours_timer(self) -> None:
        if not self.options.hours:
            return
        await asyncio.sleep(self.options.hours * 3600)
        self._stop(f"time limit of {self.options.hours:g} h reached")

    async def _prepare_target(self) -> None:
        """Run the target's idempotent prepare command once per start."""
        assert self.target is not None
        if not self.target.prepare:
            return
        slot = self.slots[0]
        self.emit(ev.StateChanged(state=ev.STATE_STARTING, detail="preparing data"))
        spec = RunSpec(
            command=self.target.prepare,
            cwd=slot.target_dir,
            env=_env_for_child(self.run_dir, self.target.env),
            log_path=self.run_dir / "logs" / "prepare.log",
            timeout_s=3600,
        )
        stop = asyncio.Event()
        result = await self.executor.run(spec, lambda text, replace: self.emit(
            ev.LogLine(exp=0, slot=0, text=text, replace=replace)), stop)
        if result.exit_code != 0:
            last = result.tail.strip().splitlines()[-1] if result.tail.strip() else ""
            self._stop(f"prepare command failed (exit {result.exit_code}): {last}", error=True)

    # ------------------------------------------------------------------ baseline

    async def _baseline(self) -> None:
        assert self.target is not None
        # One stop event for the baseline's runs on every slot: a stop --now ends them all.
        cand = Candidate(exp=0, description="baseline", rationale="", diff="", base_commit=self.best_commit,
                         is_baseline=True, commit=self.best_commit, parent=self.best_commit, stop=asyncio.Event())
        needed = max(1, self.options.baseline_runs)
        outcomes: list[Outcome] = []
        while len(outcomes) < needed and not self.stopping:
            batch = self.slots[: needed - len(outcomes)]
            results = await asyncio.gather(*(self._run_baseline_once(slot, cand) for slot in batch))
            outcomes.extend(results)
            failed = [o for o in results if o.outcome != ev.OUTCOME_OK]
            if failed:
                if any(o.outcome == ev.OUTCOME_INTERRUPTED for o in failed):
                    return
                first = failed[0]
                self.last_failure_tail = first.tail
                self._append_row(cand, ev.STATUS_CRASH, None, f"baseline {first.outcome}: {first.message}")
                self._stop(f"the baseline failed ({first.outcome}: {first.message}); fix the target and run again",
                           error=True)
                return
        if not outcomes:
            return
        # A stop asked for during the baseline still records the runs that finished.
        metrics = [o.metric for o in outcomes if o.metric is not None]
        for metric in metrics:
            self.noise.add(self.best_commit, metric)
        mean = sum(metrics) / len(metrics)
        cand.memory_gb = max((o.memory_gb for o in outcomes if o.memory_gb is not None), default=None)
        cand.seconds = sum(o.seconds for o in outcomes)
        cand.runs = metrics
        self.baseline_metric = self.best_metric = mean
        self.metric_of[self.best_commit] = mean
        self._append_row(cand, ev.STATUS_KEEP, mean, f"baseline, mean of {len(metrics)} run(s)")
        self.history.append(ResultRow(0, self.best_commit[:7], mean, ev.STATUS_KEEP, "baseline",
                                      evidence=read_evidence(self._log_path(0, 1))))
        self.emit(ev.BaselineReady(metric=mean, commit=self.best_commit, runs=metrics))
        self._emit_noise()
        self._save_state()

    async def _run_baseline_once(self, slot: Slot, cand: Candidate) -> Outcome:
        await asyncio.to_thread(self.git.reset, slot.worktree, self.best_commit)
        cand.attempt += 1
        attempt = cand.attempt
        slot.candidate = cand
        try:
            self.emit(ev.ExperimentStarted(exp=0, slot=slot.index, device=slot.device, commit=self.best_commit,
                                           parent=self.best_commit, description="baseline", attempt=attempt,
                                           log_path=str(self._log_path(0, attempt))))
            self._slot_state(slot, ev.STATE_RUNNING, 0, "baseline")
            return await self._execute(slot, cand, attempt)
        finally:
            slot.candidate = None
            self._slot_state(slot, ev.STATE_IDLE)
            self._notify()

    def _emit_noise(self) -> None:
        self.emit(ev.NoiseEstimate(sd=self.noise.sd, samples=self.noise.samples, band=self.noise.band))

    # ------------------------------------------------------------------ proposing

    def _free_slots(self) -> int:
        return sum(1 for s in self.slots if s.candidate is None)

    def _allocated(self) -> int:
        return self.next_exp - 1

    def _wants_proposal(self) -> bool:
        if self.paused:
            return False
        capacity = self._free_slots() + self.options.lookahead * len(self.slots)
        return len(self.queue) < capacity

    def _limit_reached(self) -> bool:
        limit = self.options.max_experiments
        return limit is not None and self._allocated() >= limit

    def _budget_reached(self) -> bool:
        budget = self.options.budget_usd
        return budget is not None and self.spent_usd >= budget

    def _context(self, exp: int) -> ProposalContext:
        assert self.target is not None
        unseen = [(c.exp, c.description) for c in self.in_flight.values()]
        return ProposalContext(
            exp=exp,
            target=self.target,
            best_metric=self.best_metric,
            baseline_metric=self.baseline_metric,
            history=list(self.history),
            unseen=unseen,
            last_failure_tail=self.last_failure_tail,
            noise_sd=self.noise.sd,
            spent_usd=self.spent_usd,
            budget_usd=self.options.budget_usd,
            gate=self._gate,
        )

    async def _gate(self) -> None:
        await self._wait_for(lambda: not self.paused or self.stopping)
        if self.stopping:
            raise asyncio.CancelledError()

    def _agent_emit(self, exp: int) -> Callable[[ev.Event], None]:
        def emit(event: ev.Event) -> None:
            if isinstance(event, ev.Usage) and not event.streaming:
                self.tokens["input"] += event.input_tokens
                self.tokens["output"] += event.output_tokens
                self.tokens["cache_write"] += event.cache_write_5m_tokens + event.cache_write_1h_tokens
                self.tokens["cache_read"] += event.cache_read_tokens
                if event.cost_usd is not None:
                    self.spent_usd += event.cost_usd
                    self.cost_by_exp[exp] = self.cost_by_exp.get(exp, 0.0) + event.cost_usd
                input_side = self.tokens["input"] + self.tokens["cache_write"] + self.tokens["cache_read"]
                event.total_input_tokens = self.tokens["input"]
                event.total_output_tokens = self.tokens["output"]
                event.total_cache_write_tokens = self.tokens["cache_write"]
                event.total_cache_read_tokens = self.tokens["cache_read"]
                event.total_cost_usd = self.spent_usd
                event.cache_hit_share = self.tokens["cache_read"] / input_side if input_side else 0.0
            self.emit(event)

        return emit

    async def _proposer_loop(self) -> None:
        assert self.target is not None and self._propose_target is not None
        while True:
            await self._wait_for(lambda: self.stopping or self._wants_proposal())
            if self.stopping:
                return
            if self._limit_reached():
                self._proposer_finished(f"max experiments ({self.options.max_experiments}) reached")
                return
            if self._budget_reached():
                self._stop(f"budget of ${self.options.budget_usd:.2f} reached (spent ${self.spent_usd:.2f})")
                return
            exp = self.next_exp
            try:
                cand = await self._propose(exp)
            except LedgerError as exc:
                self._stop(f"{exc} (the rows before it are intact)", now=True, error=True)
                return
            except ProposerStopped as exc:
                self._stop(exc.reason, error=not exc.reason.startswith("budget"))
                return
            except ProposalFailed as exc:
                self.failed_in_row += 1
                self.emit(ev.ProposalFailed(exp=exp, reason=exc.reason))
                if self.failed_in_row >= MAX_FAILED_PROPOSALS_IN_ROW:
                    self._proposer_finished(f"the proposer failed {self.failed_in_row} times in a row ({exc.reason})")
                    return
                continue
            self.failed_in_row = 0
            self.queue.append(cand)
            self._notify()

    def _proposer_finished(self, reason: str) -> None:
        self.proposer_done = True
        self._finish_reason = reason
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.proposer_done and not self.queue and all(s.candidate is None for s in self.slots):
            self._stop(self._finish_reason)

    async def _propose(self, exp: int, adapt: Candidate | None = None, conflict: str = "") -> Candidate:
        """Ask the proposer for a change against the current best, in the
        proposal worktree; returns it as a candidate (not yet queued)."""
        assert self.target is not None and self._propose_target is not None
        async with self._proposer_lock:
            base = self.best_commit
            await asyncio.to_thread(self.git.reset, self._propose_worktree, base)
            ctx = self._context(exp)
            if adapt is not None:
                ctx.adapt_description, ctx.adapt_diff, ctx.adapt_conflict = adapt.description, adapt.diff, conflict
            workspace = Workspace(self._propose_target, self.target.editable, self.target.protected,
                                  self.target.max_file_bytes)
            self.emit(ev.ProposalStarted(exp=exp, base_commit=base, unseen=[e for e, _ in ctx.unseen]))
            self.emit(ev.StateChanged(state=ev.STATE_PROPOSING, exp=exp))
            cost_before = self.cost_by_exp.get(exp, 0.0)
            try:
                proposal: Proposal = await self.proposer.propose(ctx, workspace, self._agent_emit(exp))
            except (ProposalFailed, ProposerStopped, asyncio.CancelledError):
                raise
            except Exception as exc:  # a proposer's bug costs one proposal, not the night
                raise ProposalFailed(f"the proposer failed: {exc!r}"[:500]) from exc
            finally:
                self.emit(ev.StateChanged(state=ev.STATE_IDLE if not self.paused else ev.STATE_PAUSED))
            diff = await asyncio.to_thread(self.git.diff, self._propose_worktree, base)
            await asyncio.to_thread(self.git.reset, self._propose_worktree, base)
            cost = self.cost_by_exp.get(exp, 0.0) - cost_before
            if not diff.strip():
                raise ProposalFailed("the proposal changed nothing", cost)
            touched = self.git.changed_files(diff)
            refused = [f for f in touched if f not in self.target.editable]
            if refused:
                raise ProposalFailed(f"the proposal changed files that are not editable: {', '.join(refused)}", cost)
            if adapt is None:
                self.next_exp = max(self.next_exp, exp + 1)
            cand = Candidate(
                exp=exp,
                description=proposal.description.strip() or "(no description)",
                rationale=proposal.rationale.strip(),
                diff=diff,
                base_commit=base,
                cost_usd=(adapt.cost_usd if adapt else 0.0) + cost,
                prepared_before=sorted(c.exp for c in self.in_flight.values() if c.exp != exp),
            )
            self._record_diff(cand)
            self.in_flight[exp] = cand
            self.emit(ev.ProposalReady(exp=exp, description=cand.description, rationale=cand.rationale, diff=diff,
                                       base_commit=base, cost_usd=cand.cost_usd))
            self._save_state()
            return cand

    def _record_diff(self, cand: Candidate) -> None:
        path = self.run_dir / "diffs" / f"{cand.exp}.diff"
        try:
            path.parent.mkdir(exist_ok=True)
            path.write_text(cand.diff, encoding="utf-8")
        except OSError as exc:
            raise LedgerError(f"cannot write {path}: {exc.strerror or exc}") from None

    # ------------------------------------------------------------------ slots

    def _next_candidate(self) -> Candidate | None:
        if self.paused or self.stopping or not self.queue:
            return None
        if not self.ledger.decided(0):
            return None
        return self.queue[0]

    async def _slot_loop(self, slot: Slot) -> None:
        while True:
            await self._wait_for(lambda: self.stopping or self._next_candidate() is not None)
            if self.stopping:
                return
            cand = self.queue.popleft()
            slot.candidate = cand
            self._notify()
            try:
                await self._run_candidate(slot, cand)
            finally:
                slot.candidate = None
                if not self.stopping:
                    self._slot_state(slot, ev.STATE_PAUSED if self.paused else ev.STATE_IDLE)
                self._notify()
                self._maybe_finish()

    async def _veto_window(self, slot: Slot, cand: Candidate) -> str:
        loop = asyncio.get_running_loop()
        cand.window = loop.create_future()
        seconds = self.options.veto_window_s
        self.emit(ev.VetoWindow(exp=cand.exp, slot=slot.index, seconds=seconds, deadline=time.time() + seconds))
        self._slot_state(slot, ev.STATE_VETO_WINDOW, cand.exp, cand.description)
        try:
            return await asyncio.wait_for(asyncio.shield(cand.window), seconds)
        except asyncio.TimeoutError:
            return "start"
        finally:
            cand.window = None

    async def _run_candidate(self, slot: Slot, cand: Candidate) -> None:
        assert self.target is not None and self.git is not None
        if self.attended and cand.attempt == 0 and not cand.vetoed:
            answer = await self._veto_window(slot, cand)
            if answer == "stop":
                self.queue.appendleft(cand)
                return
            if answer == "veto":
                cand.vetoed = True
        if cand.vetoed:
            await self._decide_vetoed(cand)
            return
        fresh_code = cand.commit is None or cand.parent != self.best_commit
        if fresh_code:
            await asyncio.to_thread(self.git.reset, slot.worktree, self.best_commit)
            conflict = await asyncio.to_thread(self.git.apply, slot.worktree, cand.diff)
            if conflict is not None:
                adapted = await self._adapt(cand, conflict)
                if adapted is None:
                    await self._decide(cand, ev.STATUS_DISCARD, None,
                                       f"no longer applies on the new best and could not be adapted: {conflict[:200]}")
                    return
                cand = adapted
                slot.candidate = cand
                await asyncio.to_thread(self.git.reset, slot.worktree, self.best_commit)
                conflict = await asyncio.to_thread(self.git.apply, slot.worktree, cand.diff)
                if conflict is not None:
                    await self._decide(cand, ev.STATUS_DISCARD, None, f"adapted change does not apply: {conflict[:200]}")
                    return
            touched = self.git.changed_files(cand.diff)
            protected = [f for f in touched if f in self.target.protected]
            if protected:
                await self._decide(cand, ev.STATUS_CRASH, None,
                                   f"integrity: changes protected file(s) {', '.join(protected)}")
                return
            message = f"exp {cand.exp}: {cand.description}"
            cand.parent = self.best_commit
            cand.commit = await asyncio.to_thread(self.git.commit, slot.worktree, message)
            cand.runs = []
        else:
            await asyncio.to_thread(self.git.reset, slot.worktree, cand.commit)
        cand.attempt += 1
        cand.stop = asyncio.Event()
        self.emit(ev.ExperimentStarted(exp=cand.exp, slot=slot.index, device=slot.device, commit=cand.commit,
                                       parent=cand.parent or "", description=cand.description, attempt=cand.attempt,
                                       prepared_before=cand.prepared_before if cand.attempt == 1 else [],
                                       log_path=str(self._log_path(cand.exp, cand.attempt))))
        self._slot_state(slot, ev.STATE_RUNNING, cand.exp, cand.description)
        outcome = await self._execute(slot, cand, cand.attempt)
        cand.stop = None
        await self._judge(slot, cand, outcome)

    async def _adapt(self, cand: Candidate, conflict: str) -> Candidate | None:
        self.emit(ev.Notice(level="info",
                            message=f"experiment {cand.exp} conflicts with the new best; asking the agent to adapt it"))
        try:
            return await self._propose(cand.exp, adapt=cand, conflict=conflict)
        except ProposalFailed as exc:
            self.emit(ev.ProposalFailed(exp=cand.exp, reason=f"adaptation failed: {exc.reason}"))
            return None
        except ProposerStopped as exc:
            self._stop(exc.reason, error=True)
            return None

    def _log_path(self, exp: int, attempt: int) -> Path:
        name = f"{exp}.log" if attempt <= 1 else f"{exp}.{attempt}.log"
        return self.run_dir / "logs" / name

    async def _execute(self, slot: Slot, cand: Candidate, attempt: int) -> Outcome:
        """Run the training command (and the trusted evaluator) and classify the result."""
        assert self.target is not None
        target = self.target
        extra = dict(target.env)
        extra["AR_TIME_BUDGET"] = f"{target.time_budget:g}"
        if slot.device.startswith("cuda:"):
            extra["CUDA_VISIBLE_DEVICES"] = slot.device.split(":", 1)[1]
        checkpoint = self.run_dir / "checkpoints" / f"{cand.exp}.{attempt}.pt"
        if target.evaluate:
            checkpoint.parent.mkdir(exist_ok=True)
            extra["AR_CHECKPOINT"] = str(checkpoint)
        env = _env_for_child(self.run_dir, extra)
        patterns = {"metric": target.metric_regex, "memory": re.compile(target.memory_pattern, re.MULTILINE)}
        spec = RunSpec(command=target.run, cwd=slot.target_dir, env=env, log_path=self._log_path(cand.exp, attempt),
                       timeout_s=target.hard_timeout, device=slot.device, patterns=patterns)

        def on_line(text: str, replace: bool) -> None:
            self.emit(ev.LogLine(exp=cand.exp, slot=slot.index, text=text, replace=replace))

        assert cand.stop is not None
        result = await self.executor.run(spec, on_line, cand.stop)
        reported = _parse_float(result.matches.get("metric"))
        memory = _parse_float(result.matches.get("memory"))
        memory_gb = memory / 1024 if memory is not None else None
        outcome = Outcome(ev.OUTCOME_OK, reported, reported, memory_gb, result.seconds, result.exit_code, "",
                          "")
        if result.stopped:
            outcome.outcome = ev.OUTCOME_VETOED if cand.vetoed else ev.OUTCOME_INTERRUPTED
            outcome.message = "vetoed by the user" if cand.vetoed else "stopped"
        elif result.timed_out:
            outcome.outcome, outcome.message = ev.OUTCOME_TIMEOUT, f"killed after the hard timeout of {target.hard_timeout:g} s"
        elif result.exit_code != 0:
            outcome.outcome, outcome.message = ev.OUTCOME_CRASH, f"exit code {result.exit_code}"
        else:
            changed = [f for f, h in self.git.file_hashes(slot.target_dir, target.protected).items()
                       if h != self.protected_hashes.get(f)]
            if changed:
                outcome.outcome = ev.OUTCOME_INTEGRITY
                outcome.message = f"protected file(s) changed during the run: {', '.join(changed)}"
            elif target.evaluate:
                await self._evaluate(slot, cand, attempt, checkpoint, env, outcome)
            if outcome.outcome == ev.OUTCOME_OK:
                if outcome.metric is None:
                    outcome.outcome, outcome.message = ev.OUTCOME_NO_METRIC, f"no {target.metric} line in the output"
                elif not math.isfinite(outcome.metric):
                    outcome.outcome, outcome.message = ev.OUTCOME_NAN, f"{target.metric} is {outcome.metric}"
        if outcome.outcome not in (ev.OUTCOME_OK, ev.OUTCOME_VETOED, ev.OUTCOME_INTERRUPTED):
            outcome.tail = result.tail[-4000:]
        with contextlib.suppress(OSError):
            if checkpoint.exists():
                checkpoint.unlink()
        self.emit(ev.ExperimentFinished(exp=cand.exp, slot=slot.index, outcome=outcome.outcome, metric=outcome.metric,
                                        reported_metric=outcome.reported, memory_gb=outcome.memory_gb,
                                        seconds=outcome.seconds, exit_code=outcome.exit_code, message=outcome.message,
                                        tail=outcome.tail))
        return outcome

    async def _evaluate(self, slot: Slot, cand: Candidate, attempt: int, checkpoint: Path, env: dict[str, str],
                        outcome: Outcome) -> None:
        """The trusted evaluator computes the metric that is recorded; what the
        training script printed is shown but not trusted."""
        assert self.target is not None
        self._slot_state(slot, ev.STATE_EVALUATING, cand.exp)
        if not checkpoint.exists():
            outcome.outcome = ev.OUTCOME_INTEGRITY
            outcome.message = f"the training script saved no checkpoint to AR_CHECKPOINT ({checkpoint.name})"
            outcome.metric = None
            return
        command = self.target.evaluate.replace("{checkpoint}", shlex.quote(str(checkpoint)))
        log = self._log_path(cand.exp, attempt).with_suffix(".eval.log")
        spec = RunSpec(command=command, cwd=slot.target_dir, env=env, log_path=log,
                       timeout_s=max(EVALUATE_TIMEOUT_S, self.target.time_budget), device=slot.device,
                       patterns={"metric": self.target.metric_regex})
        result = await self.executor.run(spec, lambda text, replace: self.emit(
            ev.LogLine(exp=cand.exp, slot=slot.index, text=f"[evaluate] {text}", replace=replace)), cand.stop)
        if result.stopped:
            outcome.outcome = ev.OUTCOME_VETOED if cand.vetoed else ev.OUTCOME_INTERRUPTED
            return
        if result.exit_code != 0 or result.timed_out:
            last = result.tail.strip().splitlines()[-1] if result.tail.strip() else f"exit code {result.exit_code}"
            outcome.outcome = ev.OUTCOME_INTEGRITY
            outcome.message = f"the trusted evaluator refused the run: {last[:300]}"
            outcome.metric = None
            outcome.tail = result.tail
            return
        outcome.metric = _parse_float(result.matches.get("metric"))

    # ------------------------------------------------------------------ decisions

    async def _judge(self, slot: Slot, cand: Candidate, outcome: Outcome) -> None:
        assert self.target is not None
        if outcome.outcome == ev.OUTCOME_INTERRUPTED:
            # Not decided: it stays in flight and a resumed run runs it again.
            cand.attempt = 0
            cand.commit = None
            return
        cand.memory_gb = outcome.memory_gb if outcome.memory_gb is not None else cand.memory_gb
        cand.seconds += outcome.seconds
        if cand.vetoed or outcome.outcome == ev.OUTCOME_VETOED:
            await self._decide_vetoed(cand)
            return
        if outcome.outcome != ev.OUTCOME_OK:
            self.last_failure_tail = outcome.tail
            # Rows without a metric are crashes, as in the original's ledger;
            # the rule says which kind.
            await self._decide(cand, ev.STATUS_CRASH, None, f"{outcome.outcome}: {outcome.message}")
            return
        metric = outcome.metric
        assert metric is not None and cand.commit is not None
        cand.runs.append(metric)
        self.noise.add(cand.commit, metric)
        async with self._decide_lock:
            best = self.best_metric
            assert best is not None
            stale = cand.parent != self.best_commit
            if cand.forced:
                if stale and not await self._rebase_forced(slot, cand):
                    await self._decide(cand, ev.STATUS_DISCARD, sum(cand.runs) / len(cand.runs),
                                       "forced keep, but the change conflicts with a newer best", locked=True)
                    return
                await self._decide(cand, ev.STATUS_KEEP, sum(cand.runs) / len(cand.runs), "forced keep by the user",
                                   locked=True)
                return
            if stale:
                parent_metric = self.metric_of.get(cand.parent or "", best)
                verdict = judge(cand.runs, parent_metric, self.target.direction, self.noise, 10**9, self.target.metric)
                if verdict.status == ev.STATUS_DISCARD:
                    await self._decide(cand, ev.STATUS_DISCARD, verdict.metric,
                                       f"{verdict.rule} (against its own parent; a newer best exists)", locked=True)
                    return
                self._rerun(cand, f"{self.target.metric} {verdict.metric:.6f} beat its parent, but a newer best was "
                                  f"kept while it ran: re-applying it on the new best and running again", fresh=True)
                return
            verdict = judge(cand.runs, best, self.target.direction, self.noise, self.options.max_runs,
                            self.target.metric)
            if verdict.status == RERUN:
                self._rerun(cand, verdict.rule, fresh=False)
                return
            await self._decide(cand, verdict.status, verdict.metric, verdict.rule, locked=True)

    async def _rebase_forced(self, slot: Slot, cand: Candidate) -> bool:
        await asyncio.to_thread(self.git.reset, slot.worktree, self.best_commit)
        if await asyncio.to_thread(self.git.apply, slot.worktree, cand.diff) is not None:
            return False
        cand.parent = self.best_commit
        cand.commit = await asyncio.to_thread(self.git.commit, slot.worktree, f"exp {cand.exp}: {cand.description}")
        return True

    def _rerun(self, cand: Candidate, rule: str, fresh: bool) -> None:
        if fresh:
            cand.commit = None
            cand.runs = []
        self.emit(ev.Decision(exp=cand.exp, status=RERUN, rule=rule, metric=sum(cand.runs) / len(cand.runs)
                              if cand.runs else None, best_before=self.best_metric, best_after=None,
                              commit=cand.commit or "", description=cand.description, cost_usd=cand.cost_usd))
        self._emit_noise()
        self.queue.appendleft(cand)
        self._notify()

    async def _decide_vetoed(self, cand: Candidate) -> None:
        await self._decide(cand, ev.STATUS_VETO, None, "vetoed by the user")

    async def _decide(self, cand: Candidate, status: str, metric: float | None, rule: str,
                      locked: bool = False) -> None:
        if not locked:
            async with self._decide_lock:
                await self._decide(cand, status, metric, rule, locked=True)
            return
        assert self.target is not None
        best_before = self.best_metric
        cand.cost_usd = max(cand.cost_usd, self.cost_by_exp.get(cand.exp, 0.0))
        commit = cand.commit or cand.base_commit
        self._append_row(cand, status, metric, rule, commit=commit)
        if status == ev.STATUS_KEEP and cand.commit is not None:
            old = self.best_commit
            await asyncio.to_thread(self.git.advance_branch, cand.commit, old)
            self.best_commit = cand.commit
            self.best_metric = metric if metric is not None else self.best_metric
            if metric is not None:
                self.metric_of[cand.commit] = metric
        self.in_flight.pop(cand.exp, None)
        self.history.append(ResultRow(cand.exp, commit[:7], metric, status, cand.description, cand.rationale,
                                      cand.diff, cand.cost_usd, read_evidence(self._log_path(cand.exp, cand.attempt))))
        self.emit(ev.Decision(exp=cand.exp, status=status, rule=rule, metric=metric, best_before=best_before,
                              best_after=self.best_metric, commit=commit, description=cand.description,
                              forced=cand.forced and status == ev.STATUS_KEEP, cost_usd=cand.cost_usd))
        self._emit_noise()
        self._save_state()
        self._notify()

    def _append_row(self, cand: Candidate, status: str, metric: float | None, rule: str, commit: str | None = None
                    ) -> None:
        assert self.ledger is not None
        self.ledger.append(LedgerRow(
            commit=commit or cand.commit or cand.base_commit,
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
        ))


def _parse_float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text.strip().rstrip(",;"))
    except ValueError:
        return None


RunEngine = Callable[[], Awaitable[ev.RunStopped]]
