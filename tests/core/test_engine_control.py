"""Human control reaches the engine as decisions, and the ledger records them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from ar_tui.agents.scripted import ScriptedProposer, ScriptStep
from ar_tui.core import events as ev
from ar_tui.core.engine import Engine, EngineOptions
from ar_tui.core.proposer import Proposal
from ar_tui.core.records.ledger import read_events, read_results
from tests.conftest import git

SLOW = ScriptStep("slow and worse", "LR = 0.5", "LR = 0.9\nimport time; time.sleep(30)")
BETTER = ScriptStep("LR 0.5 -> 0.4", "LR = 0.5", "LR = 0.4")
WORSE = ScriptStep("LR 0.5 -> 0.9", "LR = 0.5", "LR = 0.9")


def make_engine(target: Path, run_dir: Path, steps: list[ScriptStep], **kw) -> Engine:
    opts = dict(target_dir=target, tag="c", run_dir=run_dir, attended=False, lookahead=0, baseline_runs=1,
                max_experiments=len(steps))
    opts.update(kw)
    return Engine(EngineOptions(**opts), ScriptedProposer(steps))


def on(engine: Engine, kind: type, action) -> None:
    def observer(event: ev.Event) -> None:
        if isinstance(event, kind) and getattr(event, "exp", None) != 0:
            action(event)
    engine.subscribe(observer)


def statuses(run_dir: Path) -> list[tuple[int, str]]:
    return [(r.exp, r.status) for r in read_results(run_dir / "results.tsv")[1]]


async def test_veto_aborts_the_running_experiment(tiny_target: Path, run_dir: Path) -> None:
    engine = make_engine(tiny_target, run_dir, [SLOW, BETTER])
    vetoed: list[bool] = []
    on(engine, ev.ExperimentStarted, lambda e: e.exp == 1 and vetoed.append(engine.veto()))
    started = time.monotonic()
    await engine.run()
    assert vetoed == [True]
    assert time.monotonic() - started < 25  # the 30 s run did not finish
    assert statuses(run_dir) == [(0, "keep"), (1, "veto"), (2, "keep")]
    finished = [e for e in read_events(run_dir / "events.jsonl") if isinstance(e, ev.ExperimentFinished)]
    assert [e.outcome for e in finished if e.exp == 1] == [ev.OUTCOME_VETOED]
    assert "slow and worse" not in git(tiny_target, "log", "--format=%s", "autoresearch/c")


async def test_veto_in_the_window_rejects_a_proposal_before_it_runs(tiny_target: Path, run_dir: Path) -> None:
    engine = make_engine(tiny_target, run_dir, [WORSE, BETTER], attended=True, veto_window_s=30)
    on(engine, ev.VetoWindow, lambda e: engine.veto(e.exp) if e.exp == 1 else engine.start_now(e.exp))
    started = time.monotonic()
    await engine.run()
    assert time.monotonic() - started < 25
    assert statuses(run_dir) == [(0, "keep"), (1, "veto"), (2, "keep")]
    events = list(read_events(run_dir / "events.jsonl"))
    assert not any(isinstance(e, ev.ExperimentStarted) and e.exp == 1 for e in events)


async def test_the_veto_window_runs_the_proposal_when_it_expires(tiny_target: Path, run_dir: Path) -> None:
    engine = make_engine(tiny_target, run_dir, [BETTER], attended=True, veto_window_s=0.5)
    await engine.run()
    events = list(read_events(run_dir / "events.jsonl"))
    window = next(e for e in events if isinstance(e, ev.VetoWindow))
    start = next(e for e in events if isinstance(e, ev.ExperimentStarted) and e.exp == 1)
    assert start.ts - window.ts >= 0.45
    assert statuses(run_dir) == [(0, "keep"), (1, "keep")]


async def test_switching_to_unattended_starts_a_waiting_proposal(tiny_target: Path, run_dir: Path) -> None:
    engine = make_engine(tiny_target, run_dir, [BETTER], attended=True, veto_window_s=60)
    on(engine, ev.VetoWindow, lambda e: engine.set_attended(False))
    started = time.monotonic()
    await engine.run()
    assert time.monotonic() - started < 30
    events = list(read_events(run_dir / "events.jsonl"))
    assert any(isinstance(e, ev.ModeChanged) and not e.attended for e in events)
    assert statuses(run_dir) == [(0, "keep"), (1, "keep")]


async def test_force_keep_keeps_a_worse_experiment_and_marks_it(tiny_target: Path, run_dir: Path) -> None:
    engine = make_engine(tiny_target, run_dir, [WORSE])
    on(engine, ev.ExperimentStarted, lambda e: engine.force_keep(e.exp))
    await engine.run()
    _, rows, _ = read_results(run_dir / "results.tsv")
    assert (rows[1].status, rows[1].forced, rows[1].metric) == ("keep", True, 1.36)
    assert "LR = 0.9" in git(tiny_target, "show", "autoresearch/c:train.py")


async def test_force_keep_does_not_keep_a_crash(tiny_target: Path, run_dir: Path) -> None:
    crash = ScriptStep("crash", "LR = 0.5", "LR = 0.5\nraise SystemExit(3)")
    engine = make_engine(tiny_target, run_dir, [crash])
    on(engine, ev.ExperimentStarted, lambda e: engine.force_keep(e.exp))
    await engine.run()
    assert statuses(run_dir) == [(0, "keep"), (1, "crash")]


async def test_pause_starts_nothing_until_resume(tiny_target: Path, run_dir: Path) -> None:
    engine = make_engine(tiny_target, run_dir, [WORSE, BETTER])
    loop = asyncio.get_running_loop()

    def pause_once(event: ev.Decision) -> None:
        if event.exp == 1:
            engine.pause()
            loop.call_later(1.5, engine.resume)

    on(engine, ev.Decision, pause_once)
    await engine.run()
    events = list(read_events(run_dir / "events.jsonl"))
    paused = next(e for e in events if isinstance(e, ev.Paused) and e.paused)
    resumed = next(e for e in events if isinstance(e, ev.Paused) and not e.paused)
    assert resumed.ts - paused.ts >= 1.4
    starts = [e for e in events if isinstance(e, (ev.ExperimentStarted, ev.ProposalStarted)) and e.ts > paused.ts]
    assert starts and all(e.ts >= resumed.ts for e in starts)
    assert statuses(run_dir) == [(0, "keep"), (1, "discard"), (2, "keep")]


class PricedProposer(ScriptedProposer):
    """Reports a fixed cost per proposal, as an API agent would."""

    async def propose(self, ctx, workspace, emit) -> Proposal:
        proposal = await super().propose(ctx, workspace, emit)
        emit(ev.Usage(exp=ctx.exp, model="m", input_tokens=1000, output_tokens=100, cache_write_5m_tokens=0,
                      cache_write_1h_tokens=0, cache_read_tokens=3000, cost_usd=0.4))
        return proposal


async def test_dollar_budget_stops_the_loop_cleanly(tiny_target: Path, run_dir: Path) -> None:
    steps = [ScriptStep(f"LR -> 0.9{i}", "LR = 0.5", f"LR = 0.9{i}") for i in range(6)]
    engine = Engine(EngineOptions(target_dir=tiny_target, tag="c", run_dir=run_dir, lookahead=0, baseline_runs=1,
                                  budget_usd=1.0), PricedProposer(steps))
    stopped = await engine.run()
    assert stopped.reason.startswith("budget of $1.00 reached") and not stopped.error
    assert abs(stopped.cost_usd - 1.2) < 1e-9
    _, rows, _ = read_results(run_dir / "results.tsv")
    assert len(rows) == 4 and [r.cost_usd for r in rows[1:]] == [0.4, 0.4, 0.4]
    usage = [e for e in read_events(run_dir / "events.jsonl") if isinstance(e, ev.Usage)]
    assert usage[-1].total_cost_usd == stopped.cost_usd
    assert abs(usage[-1].cache_hit_share - 9000 / 12000) < 1e-9


async def test_hours_budget_stops_after_the_running_experiment(tiny_target: Path, run_dir: Path) -> None:
    slow = ScriptStep("slow", "LR = 0.5", "LR = 0.4\nimport time; time.sleep(3)")
    engine = make_engine(tiny_target, run_dir, [slow, BETTER], hours=1.5 / 3600, max_experiments=None)
    stopped = await engine.run()
    assert stopped.reason == "time limit of 0.000416667 h reached"
    # The experiment that was running when time ran out was finished and decided.
    assert statuses(run_dir) == [(0, "keep"), (1, "keep")]
