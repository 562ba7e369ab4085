"""Opening a run: validate the target, claim and lay out the run dir, rebuild
the research state from it, and hand back a `Run`, the plain object that the
engine's parts share (in place of a back-pointer to the engine).

A part takes the `Run` and the other parts it works with (the judge, the
recorder), never the engine facade: the facade only steers (`Steering`),
emits and stops, and it hands those to the parts as `Run.steering`,
`Run.emit` and `Run.stop`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ar_tui.core import events as ev
from ar_tui.core.config import ConfigError, TargetConfig, load_target, validate_files
from ar_tui.core.engine.accounting import Accounting
from ar_tui.core.engine.disk import DiskGuard
from ar_tui.core.engine.parts import EngineOptions, Slot, Steering
from ar_tui.core.engine.state import ResearchState
from ar_tui.core.engine.strategies import make_strategy
from ar_tui.core.engine.strategies.base import Strategy
from ar_tui.core.engine.trial import Trial
from ar_tui.core.errors import UserError
from ar_tui.core.evidence import read_evidence
from ar_tui.core.executors.base import Executor, file_hashes
from ar_tui.core.executors.limits import LimitError, RunLimits, lower_engine_oom_score
from ar_tui.core.executors.process import kill_orphans
from ar_tui.core.interpreter import TargetPython, resolve_python
from ar_tui.core.money.gpu_cost import resolve_pricing
from ar_tui.core.proposer import Proposer
from ar_tui.core.records.git import GIT_ERRORS, GitError, GitRepo
from ar_tui.core.records.ledger import EventLog, Ledger, LedgerError, read_events, read_state
from ar_tui.core.records.rundir import RunDir
from ar_tui.core.records.target_data import check_data, data_sources
from ar_tui.core.sandbox.backends import resolve_sandbox
from ar_tui.core.sandbox.policy import Confinement, target_python_paths
from ar_tui.core.targets import data_home

# stop(reason, now=False, error=False): the facade's `Engine.stop`, so that a run stops one way
# whoever asks (a budget, the proposer, a failed baseline, a person).
Stop = Callable[..., None]


@dataclass
class Run:
    """An opened run: what every part of the engine reads and works on."""

    options: EngineOptions
    proposer: Proposer
    run_dir: RunDir
    target: TargetConfig
    python: TargetPython
    confinement: Confinement
    git: GitRepo
    ledger: Ledger
    event_log: EventLog
    accounting: Accounting
    state: ResearchState
    strategy: Strategy
    trial: Trial
    propose_target: Path  # the proposal worktree's copy of the target
    slots: list[Slot]
    steering: Steering
    emit: Callable[[ev.Event], None]
    stop: Stop
    disk: DiskGuard  # waits for room when the run dir's disk is full
    limits: RunLimits  # each run's caps
    engine_oom_lowered: bool = False  # the kernel, if it must kill for memory, kills a run before the engine
    resumed: bool = False
    resumed_exps: list[int] = field(default_factory=list)  # in flight when the last engine ended: run again
    node_refs: set[int] = field(default_factory=set)  # the node refs git holds now
    orphans_ended: int = 0  # training processes left by an earlier engine, ended while opening
    plateau_acted_at: int = 0  # decided experiments when a plateau was last acted on (resumed from events)
    started_at: float = field(default_factory=time.time)  # when this session opened (a plateau's pace)

    def opening_events(self) -> list[ev.Event]:
        """What the viewers hear first: the run, a sandbox that is missing,
        the experiments that run again, and a baseline already measured."""
        events: list[ev.Event] = [self.started()]
        sandbox = self.confinement.sandbox
        if not sandbox.confined and sandbox.mode != "off":
            events.append(ev.Notice(level="warning", message=sandbox.describe()))
        state = self.state
        for exp in self.resumed_exps:
            done = len(state.in_flight[exp].runs) if exp in state.in_flight else 0
            counted = f" ({done} finished run(s) count; the cut one runs again with its seed)" if done else ""
            events.append(ev.Notice(level="warning", message=f"experiment {exp} was interrupted; running it again"
                                                             f"{counted}"))
        for name, count in (("events.jsonl", self.event_log.repaired), ("results.tsv", self.ledger.repaired)):
            if count:
                events.append(ev.Notice(level="warning", message=f"{name}: set aside {count} line(s) that were not "
                                                                 f"whole records (a torn last line, or not written by "
                                                                 f"ar-tui) in {name}.rejected; the rest is intact"))
        if state.best_metric is not None:
            events.append(ev.BaselineReady(metric=state.baseline_metric or state.best_metric,
                                           commit=state.best_commit))
        return events

    def started(self) -> ev.RunStarted:
        """The event that opens the run's story (also a resumed run's)."""
        opts, target, accounting = self.options, self.target, self.accounting
        return ev.RunStarted(
            tag=opts.tag,
            target=str(target.root),
            run_dir=str(self.run_dir.path),
            agent=self.proposer.name,
            model=self.proposer.model,
            metric=target.metric,
            direction=target.direction,
            attended=self.steering.attended,
            veto_window_s=opts.veto_window_s,
            slots=[s.device for s in self.slots],
            lookahead=opts.lookahead,
            resumed=self.resumed,
            budget_usd=opts.budget_usd,
            max_experiments=opts.max_experiments,
            hours=opts.hours,
            time_budget_s=target.time_budget,
            python=self.python.description,
            sandbox=self.confinement.sandbox.describe(),
            gpu_usd_per_hour=accounting.pricing.usd_per_hour,
            budget_covers=accounting.pricing.covers,
            limits=self.limits.describe() + ("; the engine's OOM score lowered" if self.engine_oom_lowered else ""),
        )


def open_run(options: EngineOptions, proposer: Proposer, executor: Executor, run_dir: RunDir, steering: Steering,
             emit: Callable[[ev.Event], None], stop: Stop) -> Run:
    """Validate everything and lay out the run dir; raises UserError. Blocking
    (git, the file system): the facade runs it in a thread. The run dir is
    claimed for the returned run; on a failure it is released again."""
    opts = options
    accounting = Accounting()
    try:
        target = load_target(Path(opts.target_dir))
        validate_files(target)
        python = resolve_python(target)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    if opts.time_budget is not None:
        target.time_budget = float(opts.time_budget)
    accounting.configure(resolve_pricing(opts.gpu_usd_per_hour, target.gpu_usd_per_hour, opts.budget_covers,
                                         opts.budget_usd), opts.devices, target.time_budget)
    strategy = make_strategy(
        opts.strategy, direction=target.direction, debug=bool(getattr(proposer, "can_debug", False)),
        slots=len(opts.devices), **opts.strategy_options)
    try:
        limits = RunLimits.resolve(target.limits, opts.limit_memory, opts.limit_processes, opts.limit_writes,
                                   len(opts.devices), run_dir.path)
    except LimitError as exc:
        raise UserError(f"{target.source or target.root}: {exc}") from None
    sandbox = resolve_sandbox(opts.sandbox, target.sandbox.network, opts.sandbox_backends)  # SandboxError: a UserError
    confinement = Confinement(sandbox, run_dir.path, target.sandbox, data_home(), declared_env=target.env,
                              extra_read=target_python_paths(python),
                              data=data_sources(target.root, target.data))
    try:
        git = GitRepo(target.root, opts.tag)
        git.keep = list(target.sandbox.keep)
        git.data, git.data_root = list(target.data), target.root
        head = git.head_commit()
        git.check_clean()
        check_data(target.root, target.data, target.prepare)
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
    try:
        return _open_claimed(opts, proposer, executor, run_dir, steering, emit, stop, accounting, target, python,
                             confinement, strategy, git, head, limits)
    except BaseException:
        run_dir.release()
        raise


def _open_claimed(opts: EngineOptions, proposer: Proposer, executor: Executor, run_dir: RunDir, steering: Steering,
                  emit: Callable[[ev.Event], None], stop: Stop, accounting: Accounting, target: TargetConfig,
                  python: TargetPython, confinement: Confinement, strategy: Strategy, git: GitRepo,
                  head: str, limits: RunLimits) -> Run:
    state = read_state(run_dir.path) or {}
    resumed = bool(state) or run_dir.ledger.exists()
    if state.get("tag") not in (None, opts.tag):
        raise UserError(f"{run_dir.path} holds run {state['tag']!r}, not {opts.tag!r}; use another --run-dir")
    try:
        if not resumed:
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
        ledger = Ledger(run_dir.path, target.metric)
        event_log = EventLog(run_dir.path)
    except LedgerError as exc:
        raise UserError(str(exc)) from None
    ended = kill_orphans(run_dir.path)
    events = list(read_events(run_dir.events))
    accounting.restore(state, events)
    research = ResearchState.restore(state, ledger.rows, events, git, lambda exp: read_evidence(run_dir.log(exp)))
    propose_target = git.ensure_worktree(run_dir.propose_worktree, research.best_commit)
    slots = [
        Slot(index, device, run_dir.slot_worktree(index),
             git.ensure_worktree(run_dir.slot_worktree(index), research.best_commit))
        for index, device in enumerate(opts.devices)
    ]
    protected = list(target.protected)
    if (propose_target / "autoresearch.toml").exists() and "autoresearch.toml" not in protected:
        protected.append("autoresearch.toml")
    target.protected = protected
    hashes = file_hashes(propose_target, protected)
    trial = Trial(run_dir, target, git, executor, accounting.trial_emit(emit), hashes, python, confinement, limits)
    # If the kernel must kill for memory, a run goes first (its score is the highest), the engine last.
    oom_lowered = lower_engine_oom_score()
    return Run(options=opts, proposer=proposer, run_dir=run_dir, target=target, python=python,
               confinement=confinement, git=git, ledger=ledger, event_log=event_log, accounting=accounting,
               state=research, strategy=strategy, trial=trial, propose_target=propose_target, slots=slots,
               steering=steering, emit=emit, stop=stop, disk=DiskGuard(run_dir.path, event_log, steering, emit, stop),
               limits=limits, engine_oom_lowered=oom_lowered, resumed=resumed, resumed_exps=sorted(research.in_flight),
               node_refs=set(git.nodes()), orphans_ended=ended,
               plateau_acted_at=max((e.decided for e in events if isinstance(e, ev.Plateau)), default=0))
