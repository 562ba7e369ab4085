"""Runs that measure instead of trying something new: the baseline's
seed-varied runs, a node run again before it is built on further, the best
run again against a close challenger, and the best confirmed before the run
ends. A collaborator of the scheduler: it runs on the scheduler's slots and
queue, and hands what it measured back to the scheduler's decisions."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Awaitable, Callable

from ar_tui.core import events as ev
from ar_tui.core.decisions import mean
from ar_tui.core.engine.finished_runs import add_once
from ar_tui.core.engine.judging import Judge
from ar_tui.core.engine.opening import Run
from ar_tui.core.engine.parts import Candidate, Outcome, Slot
from ar_tui.core.engine.recorder import Recorder
from ar_tui.core.seeds import next_attempt

if TYPE_CHECKING:
    from ar_tui.core.engine.scheduler import Scheduler


class Measuring:
    def __init__(self, run: Run, judge: Judge, recorder: Recorder, scheduler: "Scheduler") -> None:
        self.run = run
        self.judge = judge
        self.recorder = recorder
        self.scheduler = scheduler
        self.state = run.state
        self.emit = run.emit

    def queue_remeasure(self, exp: int, why: str) -> None:
        """Run a decided node again with a new seed, ahead of new proposals."""
        node = self.state.nodes[exp]
        self.state.remeasuring.add(exp)
        cand = Candidate(exp=exp, description=node.description, rationale="", diff="", base_commit=node.commit,
                         commit=node.commit, parent=node.commit, runs=list(node.runs), remeasure=True,
                         island=node.island, attempt=self.state.attempts.get(exp, 1))
        self.emit(ev.Notice(level="info", message=f"re-measuring experiment {exp} ({why}): "
                                                  f"its estimate rests on {len(node.runs)} run(s)"))
        self.scheduler.queue.appendleft(cand)

    async def baseline(self) -> None:
        """The baseline's seed-varied repeats. Those that finished before a
        kill count; a cut one runs again with its seed. A repeat that crashes
        or times out once another has a metric is transient: it is tried once
        more with the next seed, and the baseline rests on fewer runs when
        that fails too. Only a baseline without a single metric ends the night."""
        run, state = self.run, self.state
        # One stop event for the baseline's runs on every slot: a stop --now ends them all.
        cand = Candidate(exp=0, description="baseline", rationale="", diff="", base_commit=state.best_commit,
                         is_baseline=True, commit=state.best_commit, parent=state.best_commit, stop=asyncio.Event())
        needed = max(1, run.options.baseline_runs)
        so_far = state.baseline_so_far
        ok: list[Outcome] = [Outcome(r.outcome, r.metric, r.metric, r.memory_gb, r.seconds, 0, "", "", r.seed)
                             for r in so_far.finished if r.ok][:needed]
        if so_far.finished or so_far.cut:
            self.emit(ev.Notice(level="info", message=f"the baseline's {len(ok)} finished run(s) count; "
                                                      f"{max(0, needed - len(ok))} to go"))
        attempts = _Attempts(so_far.cut, so_far.last_attempt)
        lost: list[Outcome] = []  # repeats that failed, and failed again when retried
        retries = 0  # failed repeats waiting for their one retry
        while len(ok) + len(lost) < needed and not run.steering.stopping:
            if not await run.disk.ready():
                return
            batch = run.slots[: needed - len(ok) - len(lost)]
            if self.scheduler.gpu_budget_stops(batch):
                return
            tries = [attempts.next() for _ in batch]
            is_retry = [i < retries for i in range(len(batch))]
            retries -= sum(is_retry)
            done = len(ok) + len(lost)
            results = await asyncio.gather(*(self._run_baseline_once(slot, cand, (min(done + i + 1, needed), needed),
                                                                     attempt)
                                             for i, (slot, attempt) in enumerate(zip(batch, tries))))
            if any(o.outcome == ev.OUTCOME_INTERRUPTED for o in results):
                return
            ok.extend(o for o in results if o.outcome == ev.OUTCOME_OK)
            for attempt, retried, outcome in zip(tries, is_retry, results):
                if outcome.outcome == ev.OUTCOME_OK:
                    continue
                transient = outcome.outcome in (ev.OUTCOME_CRASH, ev.OUTCOME_TIMEOUT)
                if not ok:
                    await self._baseline_failed(cand, outcome)
                    return
                if transient and not retried:
                    retries += 1
                    self.emit(ev.Notice(level="warning", message=f"baseline run {attempt} failed ({outcome.outcome}: "
                                                                 f"{outcome.message}); retrying it once with the next seed"))
                else:
                    lost.append(outcome)
        if not ok:
            return
        # A stop asked for during the baseline still records the runs that finished.
        metrics = [o.metric for o in ok if o.metric is not None]
        for outcome in ok:
            if outcome.metric is not None:
                add_once(state.noise, state.best_commit, outcome.metric, outcome.seed)
        cand.memory_gb = max((o.memory_gb for o in ok if o.memory_gb is not None), default=None)
        cand.seconds = sum(o.seconds for o in ok)
        cand.runs = metrics
        mean = cand.mean
        assert mean is not None
        state.baseline_metric = mean
        rule = f"baseline, mean of {len(metrics)} run(s)"
        if lost:
            rule += (f"; fewer than the {needed} planned: {len(lost)} failed twice "
                     f"(last: {lost[-1].outcome}: {lost[-1].message})")
        await self.scheduler.decide(cand, ev.STATUS_KEEP, mean, rule)
        self.emit(ev.BaselineReady(metric=mean, commit=state.best_commit, runs=metrics))
        await self.judge.solve_design_ahead(self.judge.band_looks())
        self.judge.emit_noise()

    async def _baseline_failed(self, cand: Candidate, failed: Outcome) -> None:
        self.state.last_failure_tail = failed.tail
        await self.scheduler.decide(cand, ev.STATUS_CRASH, None, f"baseline {failed.outcome}: {failed.message}")
        self.run.stop(f"the baseline failed ({failed.outcome}: {failed.message}); fix the target and run again",
                      error=True)

    async def confirm_best(self) -> None:
        """Before the morning report, run a kept best with fresh seeds until it
        has as many runs made after its keep as the baseline has: its own runs
        were chosen for looking good, so only fresh ones measure the night's
        improvement fairly. Skipped when the user stopped the run, when it
        failed, and when no seed noise was measured (fresh runs would say
        nothing new)."""
        run, state = self.run, self.state
        noise = state.noise
        if run.steering.stop_error or run.steering.stop_reason == "stopped by the user" or not run.slots:
            return
        if noise.sd is None or noise.jitter_only or not noise.runs(state.best_commit):
            return
        fresh = len(noise.fresh_runs(state.best_commit))
        needed = run.options.baseline_runs - fresh
        best = state.best_commit
        which = f"exp {state.best_exp}" if state.best_exp else "the baseline"
        # Runs of exp 0 after the baseline's: their seeds continue its sequence.
        cand = Candidate(exp=0, description=f"confirming {which}, the best, on fresh seeds: the runs that kept it "
                                            f"were picked for looking good",
                         rationale="", diff="", base_commit=best,
                         is_baseline=True, commit=best, parent=best, stop=asyncio.Event())
        cand.attempt = next_attempt(0, [s for seeds in noise.seeds.values() for s in seeds]) - 1

        async def record(_: Candidate, outcome: Outcome) -> bool:
            if outcome.outcome != ev.OUTCOME_OK or outcome.metric is None:
                return False  # the best stays as measured
            noise.add(best, outcome.metric, outcome.seed)
            state.best_metric = state.metric_of[best] = mean(noise.runs(best))
            self.recorder.save_state()
            return True

        await self.spread([cand] * max(0, needed), record, counted=(fresh + 1, run.options.baseline_runs))
        # Once, after them all: solving the band's boundaries takes seconds,
        # and a slot must not wait on it between two runs.
        await self.judge.solve_design_ahead(self.judge.band_looks())
        self.judge.emit_noise()

    async def spread(self, runs: list[Candidate], record: Callable[[Candidate, Outcome], Awaitable[bool]],
                     counted: tuple[int, int] | None = None) -> None:
        """Run measuring runs that do not depend on one another (the closing
        confirmations, an ablation's leave-one-out runs) over every slot at
        once: each slot takes the next run as soon as it is free, so no slot
        idles while another works through the list one run at a time.
        `record` is awaited as each run finishes, in the order they finish;
        False from it (a failed run) starts nothing more. A run that a budget
        would cross is not started. `counted` (the first run's place, the
        series' size) numbers the runs of a counted series as they start.
        A run that crashes or times out is transient the first time: it runs
        once more, with the next seed. A full disk halts the series."""
        run = self.run
        pending = deque(runs)
        started = 0
        halted = False
        retried = False
        # The closing confirmations run while the night is already stopping;
        # a stop asked for after they began ends them (a stop --now interrupts
        # the running ones, which ends them too).
        stopping_before = run.steering.stopping

        async def work(slot: Slot) -> None:
            nonlocal halted, started, retried
            while pending and not halted and not (run.steering.stopping and not stopping_before):
                running = [s.device for s in run.slots if s.candidate is not None and s is not slot]
                if run.accounting.run_would_cross(run.options.budget_usd, [slot.device], running):
                    halted = True
                    return
                if not await run.disk.ready():
                    halted = True
                    return
                cand = pending.popleft()
                repeat = (counted[0] + started, counted[1]) if counted is not None else None
                started += 1
                outcome = await self._run_baseline_once(slot, cand, repeat)
                if outcome.outcome in (ev.OUTCOME_CRASH, ev.OUTCOME_TIMEOUT) and not retried:
                    retried = True
                    started -= 1
                    self.emit(ev.Notice(level="warning", message=f"{cand.description}: a run failed "
                                                                 f"({outcome.message}); retrying it once with the next seed"))
                    pending.appendleft(cand)
                    continue
                if outcome.outcome == ev.OUTCOME_INTERRUPTED or not await record(cand, outcome):
                    halted = True

        await asyncio.gather(*(work(slot) for slot in run.slots))

    async def _run_baseline_once(self, slot: Slot, cand: Candidate, repeat: tuple[int, int] | None,
                                 attempt: int | None = None) -> Outcome:
        """One measuring run: attempt `attempt`, else the one after the last; of
        a counted series when `repeat` is (this run, the runs in all)."""
        run = self.run
        assert cand.commit is not None
        await run.trial.checkout(slot, cand.commit)
        if attempt is None:
            attempt = cand.attempt + 1
        cand.attempt = max(cand.attempt, attempt)
        slot.candidate = cand
        try:
            place, series = repeat or (0, 0)
            self.emit(ev.ExperimentStarted(exp=cand.exp, slot=slot.index, device=slot.device, commit=cand.commit,
                                           parent=cand.commit, description=cand.description, attempt=attempt,
                                           log_path=str(run.run_dir.log(cand.exp, attempt)),
                                           repeat=place, repeats=series))
            self.scheduler.slot_state(slot, ev.STATE_RUNNING, cand.exp, cand.description)
            return await run.trial.execute(slot, cand, attempt)
        finally:
            slot.candidate = None
            self.scheduler.slot_state(slot, ev.STATE_IDLE)
            self.scheduler.notify()

    async def remeasure(self, slot: Slot, cand: Candidate) -> None:
        run, state = self.run, self.state
        assert cand.commit is not None
        await run.trial.checkout(slot, cand.commit)
        outcome = await self.scheduler.start_run(slot, cand)
        if outcome.outcome in (ev.OUTCOME_CRASH, ev.OUTCOME_TIMEOUT) and node_runs(state, cand.exp):
            # Other runs of this commit succeeded: a transient failure, tried once more with the next seed.
            self.emit(ev.Notice(level="warning", message=f"re-measuring experiment {cand.exp} failed "
                                                         f"({outcome.message}); retrying it once with the next seed"))
            await run.trial.checkout(slot, cand.commit)
            outcome = await self.scheduler.start_run(slot, cand)
        if outcome.outcome == ev.OUTCOME_INTERRUPTED:
            state.remeasuring.discard(cand.exp)  # asked for again when it matters again
            return
        async with self.scheduler.decide_lock:
            if outcome.outcome == ev.OUTCOME_OK and outcome.metric is not None:
                state.noise.add(cand.commit, outcome.metric, outcome.seed)
                estimate = state.remeasured(cand.exp, outcome.metric)
                node = state.nodes[cand.exp]
                self.emit(ev.Remeasured(exp=cand.exp, metric=outcome.metric, estimate=estimate, runs=len(node.runs),
                                        reason="a node about to be built on again"))
                await self.judge.solve_design_ahead(self.judge.band_looks())
                self.judge.emit_noise()
            else:
                state.remeasuring.discard(cand.exp)
                self.emit(ev.Remeasured(exp=cand.exp, metric=None, estimate=state.nodes[cand.exp].metric,
                                        runs=len(state.nodes[cand.exp].runs),
                                        reason=f"the re-run failed ({outcome.outcome}: {outcome.message})"))
            self.recorder.save_state()
        await self.recorder.sync_nodes()

    async def remeasure_best(self, slot: Slot, cand: Candidate) -> None:
        """Run the best again with a new seed (as an attempt of the
        challenger's experiment, so its seed and log are its own), then decide
        the challenger again against the mean of all the best's runs."""
        run, state = self.run, self.state
        best = state.best_commit
        cand.remeasure_best = False
        await run.trial.checkout(slot, best)
        cand.attempt += 1
        cand.stop = asyncio.Event()
        self.emit(ev.ExperimentStarted(exp=cand.exp, slot=slot.index, device=slot.device, commit=best, parent=best,
                                       description=f"re-measuring the best for: {cand.description}",
                                       attempt=cand.attempt, log_path=str(run.run_dir.log(cand.exp, cand.attempt)),
                                       parent_exp=state.best_exp))
        self.scheduler.slot_state(slot, ev.STATE_RUNNING, cand.exp, "re-measuring the best")
        outcome = await run.trial.execute(slot, cand, cand.attempt)
        cand.stop = None
        if outcome.outcome in (ev.OUTCOME_INTERRUPTED, ev.OUTCOME_VETOED):
            await self.scheduler.judge_outcome(slot, cand, outcome)
            return
        if outcome.outcome == ev.OUTCOME_OK and outcome.metric is not None:
            if best == state.best_commit:
                state.noise.add(best, outcome.metric, outcome.seed)
                if state.best_exp in state.nodes:
                    state.remeasured(state.best_exp, outcome.metric)
                state.best_metric = state.metric_of[best] = mean(state.noise.runs(best))
        else:
            self.judge.remeasure_failed.add(best)
            self.emit(ev.Notice(level="warning", message=f"re-measuring the best failed ({outcome.message}); "
                                                         f"deciding experiment {cand.exp} without it"))
        # Not a run of the candidate: no metric of its own to add.
        await self.scheduler.judge_outcome(slot, cand,
                                           Outcome(ev.OUTCOME_OK, None, None, None, outcome.seconds, 0, "", ""))


class _Attempts:
    """The attempts a baseline runs next: the ones a kill cut short first
    (their seeds are owed), then new ones after the last."""

    def __init__(self, cut: list[int], last: int) -> None:
        self.cut = list(cut)
        self.last = last

    def next(self) -> int:
        if self.cut:
            return self.cut.pop(0)
        self.last += 1
        return self.last


def node_runs(state, exp: int) -> list[float]:
    node = state.nodes.get(exp)
    return list(node.runs) if node is not None else []
