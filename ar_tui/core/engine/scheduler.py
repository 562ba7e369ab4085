"""Scheduling: one proposer task prepares candidates while slot tasks (one per
device, each with its own worktree) run them.

With one slot and lookahead 0 this is the original sequential loop; with
lookahead K the proposer keeps up to K prepared candidates waiting per slot,
so a slot never waits for the agent to think. Decisions are serialised under
one lock, in the order runs finish; the ledger order is the order of
decisions. What a finished run means is the strategy's answer; the git and
queue work it implies is done here.

Human control (pause, veto, force-keep, mode, stop) arrives through the
engine facade, on the engine's own event loop, as the run's `Steering`; waits
for it are futures and events, never flags polled from another thread.

The scheduler takes the opened `Run` and its collaborators: the judge (what a
finished run means), the recorder (writing a decision down) and measuring
(the baseline and re-measures, run on the scheduler's slots), never the
engine.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Callable

from ar_tui.core import events as ev
from ar_tui.core.decisions import REMEASURE_BEST, RERUN
from ar_tui.core.engine.combine import CombineSource, near_misses
from ar_tui.core.engine.judging import Judge
from ar_tui.core.engine.measuring import Measuring
from ar_tui.core.engine.opening import Run
from ar_tui.core.engine.parts import MAX_FAILED_PROPOSALS_IN_ROW, Candidate, Outcome, Slot
from ar_tui.core.engine.plateau import PlateauWatch
from ar_tui.core.engine.recorder import Recorder
from ar_tui.core.engine.strategies.base import DISCARD, KEEP, REAPPLY, REBASE_FAILED_RULE, Base
from ar_tui.core.proposer import (
    Proposal,
    ProposalContext,
    ProposalFailed,
    ProposalRejected,
    ProposerStopped,
    RunStopping,
)
from ar_tui.core.records.ledger import LedgerError
from ar_tui.core.seeds import read_texts, seed_only_refusal
from ar_tui.core.workspace import Workspace


class Scheduler:
    def __init__(self, run: Run, judge: Judge, recorder: Recorder) -> None:
        self.run = run
        self.judge = judge
        self.recorder = recorder
        self.measuring = Measuring(run, judge, recorder, self)
        run.disk.bind(self.notify, self.wait_for)  # a full disk pauses the slots and the proposer
        # A resumed run's candidates that were in flight run again first.
        self.queue: deque[Candidate] = deque(run.state.in_flight.values())
        self.failed_in_row = 0
        self.proposer_done = False
        self.finish_reason = "finished"
        self._changed = asyncio.Event()
        self.decide_lock = asyncio.Lock()
        self._proposer_lock = asyncio.Lock()
        # Decisions started outside a slot (a queued proposal vetoed): awaited
        # before the run finishes, never left to run on their own.
        self.background: set[asyncio.Task] = set()
        self.plateau = PlateauWatch(self)

    # The run owns these; read through it so there is one truth.
    @property
    def state(self):
        return self.run.state

    @property
    def slots(self) -> list[Slot]:
        return self.run.slots

    def emit(self, event: ev.Event) -> None:
        self.run.emit(event)

    # ------------------------------------------------------------------ waiting

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._changed.wait()

    def gpu_budget_stops(self, starting: list[Slot]) -> bool:
        """A budget covering GPU time that runs on `starting` would cross
        stops the run cleanly (what they would have run stays queued)."""
        running = [s.device for s in self.slots if s.candidate is not None and s not in starting]
        reason = self.run.accounting.run_would_cross(self.run.options.budget_usd,
                                                     [s.device for s in starting], running)
        if reason is not None:
            self.run.stop(reason)
        return reason is not None

    def slot_state(self, slot: Slot, state: str, exp: int | None = None, detail: str = "") -> None:
        self.emit(ev.StateChanged(state=state, slot=slot.index, exp=exp, detail=detail))

    def spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    # ------------------------------------------------------------------ proposing

    def _wants_proposal(self) -> bool:
        if self.run.steering.paused or self.run.disk.full:
            return False
        free = sum(1 for s in self.slots if s.candidate is None)
        capacity = free + self.run.options.lookahead * len(self.slots)
        return len(self.queue) < capacity

    def _limit_reached(self) -> bool:
        limit = self.run.options.max_experiments
        return limit is not None and self.state.next_exp - 1 >= limit

    def context(self, exp: int, base: Base | None = None) -> ProposalContext:
        run, state = self.run, self.state
        where: dict = {}
        if base is not None:
            where = dict(
                parent_exp=base.exp,
                lineage=[state.row_of(n.exp) for n in state.lineage(base.exp)],
                siblings=[state.row_of(n.exp) for n in state.children_of(base.exp)],
                population=state.summary(run.target.direction),
                island=base.island,
                debug_of=base.debug_of,
                debug_tail=state.tails.get(base.debug_of, "") if base.debug_of is not None else "",
            )
        return ProposalContext(
            exp=exp,
            target=run.target,
            best_metric=state.best_metric,
            baseline_metric=state.baseline_metric,
            history=list(state.history),
            unseen=[(c.exp, c.description) for c in state.in_flight.values()],
            last_failure_tail=state.last_failure_tail,
            noise_sd=state.noise.sd,
            spent_usd=run.accounting.budget_spent_usd,
            budget_usd=run.options.budget_usd,
            gate=self._gate,
            **where,
            run_dir=run.run_dir.path,
            replan=self._take_replan(),
        )

    def _take_replan(self) -> bool:
        replan, self.plateau.replan = self.plateau.replan, False
        return replan

    def _combination(self) -> CombineSource | None:
        """The combine source when a plateau or the strategy asks for one and
        there are near-misses to combine; else None."""
        run = self.run
        wants = getattr(run.strategy, "wants_combination", None)
        if self.plateau.combine_asked <= 0 and not (wants is not None and wants(self.state)):
            return None
        self.plateau.combine_asked = max(0, self.plateau.combine_asked - 1)
        near = near_misses(run)
        if len(near) < 2:
            return None
        return CombineSource(run.git, run.run_dir.propose_worktree, near)

    async def _gate(self) -> None:
        await self.wait_for(lambda: not self.run.steering.paused or self.run.steering.stopping)
        if self.run.steering.stopping:
            raise RunStopping("the run is stopping")

    async def proposing(self) -> None:
        """The proposer loop as a task nothing awaits until the run ends: what
        ends it other than a stop stops the run, or the slots would wait for
        its proposals forever (a stale index.lock while proposing, or a bug)."""
        try:
            await self.proposer_loop()
        except Exception as exc:
            self.run.stop(self.recorder.crash(exc), now=True, error=True)

    async def proposer_loop(self) -> None:
        run = self.run
        while True:
            await self.wait_for(lambda: run.steering.stopping or self._wants_proposal())
            if run.steering.stopping:
                return
            if self._limit_reached():
                self._proposer_finished(f"max experiments ({run.options.max_experiments}) reached")
                return
            if run.accounting.budget_reached(run.options.budget_usd):
                run.stop(f"budget of ${run.options.budget_usd:.2f} reached "
                         f"(spent ${run.accounting.budget_spent_usd:.2f})")
                return
            exp = self.state.next_exp
            try:
                cand = await self.propose(exp)
            except LedgerError as exc:
                run.stop(f"{exc} (the rows before it are intact)", now=True, error=True)
                return
            except ProposerStopped as exc:
                run.stop(exc.reason, error=exc.error)
                return
            except ProposalFailed as exc:
                self.emit(ev.ProposalFailed(exp=exp, reason=exc.reason))
                if isinstance(exc, ProposalRejected):
                    continue  # a reviewer's verdict, not a broken proposer: the team bounds its own streak
                self.failed_in_row += 1
                if self.failed_in_row >= MAX_FAILED_PROPOSALS_IN_ROW:
                    self._proposer_finished(f"the proposer failed {self.failed_in_row} times in a row ({exc.reason})")
                    return
                continue
            self.failed_in_row = 0
            if cand is not None:
                self.queue.append(cand)
            self.notify()

    def _proposer_finished(self, reason: str) -> None:
        self.proposer_done = True
        self.finish_reason = reason
        self.maybe_finish()

    def maybe_finish(self) -> None:
        if self.proposer_done and not self.queue and all(s.candidate is None for s in self.slots):
            self.run.stop(self.finish_reason)

    async def propose(self, exp: int, adapt: Candidate | None = None, conflict: str = "") -> Candidate | None:
        """Ask the proposer for a change against the strategy's base, in the
        proposal worktree; returns it as a candidate (not yet queued), or
        None when the strategy asked for a node to be re-measured first."""
        run, state = self.run, self.state
        target, git = run.target, run.git
        worktree = run.run_dir.propose_worktree
        async with self._proposer_lock:
            combine = self._combination() if adapt is None else None
            if adapt is not None:
                # Adapting after a conflict: the same intent, on the same node's new code.
                where = Base(run.strategy.base_for_run(state, adapt), state.parent_exp(adapt.base_commit),
                             adapt.island)
            elif combine is not None:
                where = Base(state.best_commit, state.best_exp)  # near-misses go together on the best
            else:
                where = run.strategy.base_for_proposal(state)
                if where.remeasure is not None:
                    self.measuring.queue_remeasure(where.remeasure, "about to be built on again")
                    return None
            base = where.commit
            await asyncio.to_thread(git.reset, worktree, base)
            ctx = self.context(exp, where)
            if adapt is not None:
                ctx.adapt_description, ctx.adapt_diff, ctx.adapt_conflict = adapt.description, adapt.diff, conflict
            workspace = Workspace(run.propose_target, target.editable, target.protected, target.max_file_bytes)
            self.emit(ev.ProposalStarted(exp=exp, base_commit=base, unseen=[e for e, _ in ctx.unseen]))
            self.emit(ev.StateChanged(state=ev.STATE_PROPOSING, exp=exp))
            cost_before = run.accounting.cost_of(exp)
            try:
                proposal: Proposal = await (combine or run.proposer).propose(
                    ctx, workspace, run.accounting.agent_emit(exp, self.emit))
            # A LedgerError is the event log failing under one of the proposer's
            # events (a full disk): the run stops, it is not the proposer's bug.
            except (ProposalFailed, ProposerStopped, LedgerError, asyncio.CancelledError):
                raise
            except Exception as exc:  # a proposer's bug costs one proposal, not the night
                raise ProposalFailed(f"the proposer failed: {exc!r}"[:500]) from exc
            finally:
                self.emit(ev.StateChanged(state=ev.STATE_IDLE if not run.steering.paused else ev.STATE_PAUSED))
            diff = await asyncio.to_thread(git.diff, worktree, base)
            edited = read_texts(run.propose_target, git.changed_files(diff))
            await asyncio.to_thread(git.reset, worktree, base)
            cost = run.accounting.cost_of(exp) - cost_before
            if not diff.strip():
                raise ProposalFailed("the proposal changed nothing", cost)
            refused = [f for f in git.changed_files(diff) if f not in target.editable]
            if refused:
                raise ProposalFailed(f"the proposal changed files that are not editable: {', '.join(refused)}", cost)
            seed_only = seed_only_refusal(read_texts(run.propose_target, list(edited)), edited)
            if seed_only:
                raise ProposalFailed(seed_only, cost)
            if adapt is None:
                state.next_exp = max(state.next_exp, exp + 1)
            cand = Candidate(
                exp=exp,
                description=proposal.description.strip() or "(no description)",
                rationale=proposal.rationale.strip(),
                diff=diff,
                base_commit=base,
                cost_usd=(adapt.cost_usd if adapt else 0.0) + cost,
                prepared_before=sorted(c.exp for c in state.in_flight.values() if c.exp != exp),
                island=where.island,
                debug_of=where.debug_of,
                proposer=proposal.proposer or run.proposer.name,
            )
            await run.disk.write_when_space(lambda: self.recorder.diff(cand))
            state.in_flight[exp] = cand
            if adapt is None:
                state.chose_parent(where.exp)
            self.emit(ev.ProposalReady(exp=exp, description=cand.description, rationale=cand.rationale, diff=diff,
                                       base_commit=base, cost_usd=cand.cost_usd, parent_exp=where.exp,
                                       island=where.island, debug_of=where.debug_of, proposer=cand.proposer))
            self.recorder.save_state()
            return cand

    async def _adapt(self, cand: Candidate, conflict: str) -> Candidate | None:
        self.emit(ev.Notice(level="info",
                            message=f"experiment {cand.exp} conflicts with the new best; asking the agent to adapt it"))
        try:
            return await self.propose(cand.exp, adapt=cand, conflict=conflict)
        except ProposalFailed as exc:
            self.emit(ev.ProposalFailed(exp=cand.exp, reason=f"adaptation failed: {exc.reason}"))
            return None
        except ProposerStopped as exc:
            self.run.stop(exc.reason, error=exc.error)
            return None

    # ------------------------------------------------------------------ slots

    def _next_candidate(self) -> Candidate | None:
        run = self.run
        if run.steering.paused or run.steering.stopping or run.disk.full or not self.queue:
            return None
        if not run.ledger.decided(0):
            return None
        return self.queue[0]

    async def slot_loop(self, slot: Slot) -> None:
        run = self.run
        while True:
            await self.wait_for(lambda: run.steering.stopping or self._next_candidate() is not None)
            if run.steering.stopping:
                return
            if not await run.disk.ready():
                return
            if self._next_candidate() is None:
                continue
            if self.gpu_budget_stops([slot]):
                return
            cand = self.queue.popleft()
            slot.candidate = cand
            self.notify()
            try:
                await self._run_candidate(slot, cand)
            finally:
                slot.candidate = None
                if not run.steering.stopping:
                    self.slot_state(slot, ev.STATE_PAUSED if run.steering.paused else ev.STATE_IDLE)
                self.notify()
                self.maybe_finish()

    async def _veto_window(self, slot: Slot, cand: Candidate) -> str:
        loop = asyncio.get_running_loop()
        cand.window = loop.create_future()
        seconds = self.run.options.veto_window_s
        self.emit(ev.VetoWindow(exp=cand.exp, slot=slot.index, seconds=seconds, deadline=time.time() + seconds))
        self.slot_state(slot, ev.STATE_VETO_WINDOW, cand.exp, cand.description)
        try:
            return await asyncio.wait_for(asyncio.shield(cand.window), seconds)
        except asyncio.TimeoutError:
            return "start"
        finally:
            cand.window = None

    async def _run_candidate(self, slot: Slot, cand: Candidate) -> None:
        run, state = self.run, self.state
        trial = run.trial
        if cand.remeasure:
            await self.measuring.remeasure(slot, cand)
            return
        if run.steering.attended and cand.attempt == 0 and not cand.vetoed:
            answer = await self._veto_window(slot, cand)
            if answer == "stop":
                self.queue.appendleft(cand)
                return
            if answer == "veto":
                cand.vetoed = True
        if cand.vetoed:
            await self.decide_vetoed(cand)
            return
        if cand.remeasure_best and cand.parent == run.strategy.base_for_run(state, cand):
            await self.measuring.remeasure_best(slot, cand)
            return
        cand.remeasure_best = False
        base = run.strategy.base_for_run(state, cand)
        if cand.commit is None or cand.parent != base:
            conflict = await trial.build(slot, base, cand.diff)
            if conflict is not None:
                adapted = await self._adapt(cand, conflict)
                if adapted is None:
                    await self.decide(cand, ev.STATUS_DISCARD, None,
                                      f"no longer applies on the new best and could not be adapted: {conflict[:200]}")
                    return
                cand = adapted
                slot.candidate = cand
                base = run.strategy.base_for_run(state, cand)
                conflict = await trial.build(slot, base, cand.diff)
                if conflict is not None:
                    await self.decide(cand, ev.STATUS_DISCARD, None, f"adapted change does not apply: {conflict[:200]}")
                    return
            protected = trial.protected_in(cand.diff)
            if protected:
                await self.decide(cand, ev.STATUS_CRASH, None,
                                  f"integrity: changes protected file(s) {', '.join(protected)}")
                return
            cand.parent = base
            cand.commit = await trial.commit(slot, cand)
            cand.runs = []
        else:
            await trial.checkout(slot, cand.commit)
        if cand.vetoed:  # vetoed while its code was being built: it never runs
            await self.decide_vetoed(cand)
            return
        outcome = await self.start_run(slot, cand)
        await self.judge_outcome(slot, cand, outcome)

    async def start_run(self, slot: Slot, cand: Candidate) -> Outcome:
        run, state = self.run, self.state
        cand.attempt += 1
        state.attempts[cand.exp] = max(state.attempts.get(cand.exp, 0), cand.attempt)
        cand.stop = asyncio.Event()
        self.emit(ev.ExperimentStarted(exp=cand.exp, slot=slot.index, device=slot.device, commit=cand.commit or "",
                                       parent=cand.parent or "", description=cand.description, attempt=cand.attempt,
                                       prepared_before=cand.prepared_before if cand.attempt == 1 else [],
                                       log_path=str(run.run_dir.log(cand.exp, cand.attempt)),
                                       parent_exp=state.parent_exp(cand.base_commit if cand.remeasure else cand.parent),
                                       island=cand.island))
        self.slot_state(slot, ev.STATE_RUNNING, cand.exp, cand.description)
        try:
            return await run.trial.execute(slot, cand, cand.attempt)
        finally:
            cand.stop = None

    # ------------------------------------------------------------------ decisions

    async def judge_outcome(self, slot: Slot, cand: Candidate, outcome: Outcome) -> None:
        run, state = self.run, self.state
        if outcome.outcome == ev.OUTCOME_INTERRUPTED:
            # Not decided: it stays in flight and a resumed run runs it again.
            cand.attempt = 0
            cand.commit = None
            return
        cand.memory_gb = outcome.memory_gb if outcome.memory_gb is not None else cand.memory_gb
        cand.seconds += outcome.seconds
        if cand.vetoed or outcome.outcome == ev.OUTCOME_VETOED:
            await self.decide_vetoed(cand)
            return
        if outcome.outcome in (ev.OUTCOME_CRASH, ev.OUTCOME_TIMEOUT) and cand.runs and not cand.retried:
            # Its earlier runs succeeded: a transient failure (a stalled or
            # killed process), tried once more with the next seed.
            cand.retried = True
            self.emit(ev.Notice(level="warning", message=f"experiment {cand.exp}: run {cand.attempt} failed "
                                                         f"({outcome.outcome}: {outcome.message}); "
                                                         "retrying it once with the next seed"))
            self.queue.appendleft(cand)
            self.notify()
            return
        if outcome.outcome != ev.OUTCOME_OK:
            state.last_failure_tail = outcome.tail
            if cand.runs:  # the retry failed too: say what the decision rests on
                outcome.message += f" (after {len(cand.runs)} good run(s) and one retry)"
            if outcome.outcome == ev.OUTCOME_CRASH:
                state.tails[cand.exp] = outcome.tail
            # Rows without a metric are crashes, as in the original's ledger;
            # the rule says which kind.
            await self.decide(cand, ev.STATUS_CRASH, None, f"{outcome.outcome}: {outcome.message}")
            return
        if outcome.metric is not None:  # None: the run re-measured the best
            assert cand.commit is not None
            cand.runs.append(outcome.metric)
            state.noise.add(cand.commit, outcome.metric, outcome.seed)
        await self.judge.solve_ahead_for(cand)
        async with self.decide_lock:
            verdict = self.judge.verdict(cand)
            if verdict.action == KEEP and verdict.rebase and not await self._rebase(slot, cand):
                await self.decide(cand, DISCARD, verdict.metric, REBASE_FAILED_RULE, locked=True)
            elif verdict.action in (KEEP, DISCARD):
                await self.decide(cand, verdict.action, verdict.metric, verdict.rule, locked=True)
            elif verdict.action in (RERUN, REAPPLY, REMEASURE_BEST):
                cand.remeasure_best = verdict.action == REMEASURE_BEST
                self._rerun(cand, verdict.rule, fresh=verdict.action == REAPPLY)
            else:
                raise ValueError(f"strategy {run.strategy.name} gave an unknown verdict {verdict.action!r}")

    async def _rebase(self, slot: Slot, cand: Candidate) -> bool:
        base = self.run.strategy.base_for_run(self.state, cand)
        if await self.run.trial.build(slot, base, cand.diff) is not None:
            return False
        cand.parent = base
        cand.commit = await self.run.trial.commit(slot, cand)
        return True

    def _rerun(self, cand: Candidate, rule: str, fresh: bool) -> None:
        if fresh:
            cand.commit = None
            cand.runs = []
            cand.remeasure_best = False
        self.recorder.rerun(cand, rule, REAPPLY if fresh else REMEASURE_BEST if cand.remeasure_best else RERUN)
        self.queue.appendleft(cand)
        self.notify()

    async def decide_vetoed(self, cand: Candidate) -> None:
        await self.decide(cand, ev.STATUS_VETO, None, "vetoed by the user")

    async def decide(self, cand: Candidate, status: str, metric: float | None, rule: str,
                     locked: bool = False) -> None:
        if not locked:
            async with self.decide_lock:
                await self.decide(cand, status, metric, rule, locked=True)
            return
        await self.recorder.decide(cand, status, metric, rule)
        if not cand.is_baseline:
            await self.plateau.after_decision()
        self.notify()
