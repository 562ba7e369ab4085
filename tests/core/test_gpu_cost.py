"""The whole cost: each run's GPU time priced at --gpu-usd-per-hour, counted to
its row in results.tsv, summed for the night, and capped with --budget-usd
when the budget covers all. Real engine runs on tiny real targets (real git,
real child processes); the expected figures are recomputed here from the
events the engine wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ar_tui.agents.scripted import ScriptedProposer, ScriptStep
from ar_tui.core import events as ev
from ar_tui.core.config import ConfigError, load_target
from ar_tui.core.engine import Engine, EngineOptions
from ar_tui.core.errors import UserError
from ar_tui.core.money.gpu_cost import devices_in
from ar_tui.core.records.ledger import Ledger, read_events, read_results, read_state
from ar_tui.report import build_report, report_as_dict
from tests.conftest import git, make_target

# $1 per device-second: a run's dollars are its seconds.
RATE = 3600.0
FAST = "[target]\ntime_budget = 1\ntimeout = 5\n"


def engine_for(target: Path, run_dir: Path, steps: list[ScriptStep], **kw) -> Engine:
    opts = dict(target_dir=target, tag="g", run_dir=run_dir, attended=False, lookahead=0, baseline_runs=2,
                max_experiments=len(steps), write_report=False)
    opts.update(kw)
    return Engine(EngineOptions(**opts), ScriptedProposer(steps))


def finished_runs(run_dir: Path) -> list[ev.ExperimentFinished]:
    return [e for e in read_events(run_dir / "events.jsonl") if isinstance(e, ev.ExperimentFinished)]


def gpu_of_rows(run_dir: Path) -> dict[int, float]:
    """Each row's GPU cost recomputed from the runs before its decision."""
    spent: dict[int, float] = {}
    at_decision: dict[int, float] = {}
    for event in read_events(run_dir / "events.jsonl"):
        if isinstance(event, ev.ExperimentFinished):
            spent[event.exp] = spent.get(event.exp, 0.0) + event.held_seconds * RATE / 3600
        elif isinstance(event, ev.Decision) and event.status != "rerun":
            at_decision[event.exp] = spent.get(event.exp, 0.0)
    return at_decision


STEPS = [ScriptStep("LR 0.5 -> 0.4", "LR = 0.5", "LR = 0.4"), ScriptStep("LR 0.4 -> 0.9", "LR = 0.4", "LR = 0.9"),
         ScriptStep("LR 0.4 -> 0.3", "LR = 0.4", "LR = 0.3")]


def test_a_slot_counts_its_devices() -> None:
    assert [devices_in(d) for d in ("cpu", "cuda:0", "cuda:0,1", "cuda:2,3,5")] == [1, 1, 2, 3]


async def test_each_row_costs_the_gpu_time_of_its_runs_training_and_evaluation(tmp_path: Path) -> None:
    # The evaluator takes a known extra time: the slot is held while it runs too.
    train = ("import os, time\nLR = 0.5\ntime.sleep(0.1)\n"
             "open(os.environ['AR_CHECKPOINT'], 'w').write(str(LR))\nprint('val_bpb: 0.1')\n")
    evaluator = ("import sys, time\ntime.sleep(0.3)\nlr = float(open(sys.argv[1]).read())\n"
                 "print(f'val_bpb: {(lr - 0.3) ** 2 + 1:.6f}')\n")
    config = FAST.replace("[target]\n", '[target]\nprotected = ["prepare.py", "evaluate_tiny.py"]\n') + \
        '[metric]\nevaluate = "python evaluate_tiny.py {checkpoint}"\n'
    target = make_target(tmp_path / "target", train=train, config=config, extra={"evaluate_tiny.py": evaluator})
    run_dir = tmp_path / "run"
    # One slot of two GPUs: every second it holds costs two.
    stopped = await engine_for(target, run_dir, STEPS, gpu_usd_per_hour=RATE, devices=["cuda:0,1"]).run()
    assert not stopped.error, stopped.reason

    runs = finished_runs(run_dir)
    assert len(runs) >= 2 + len(STEPS)  # the baseline's two runs, then each experiment (re-runs too)
    for run in runs:
        assert run.held_seconds >= run.seconds + 0.3  # training and the evaluator's 0.3 s
        assert run.gpu_seconds == pytest.approx(2 * run.held_seconds)
        assert run.gpu_usd == pytest.approx(run.gpu_seconds * RATE / 3600)
    total = sum(run.gpu_usd for run in runs)
    assert runs[-1].total_gpu_usd == pytest.approx(total)

    _, rows, _ = read_results(run_dir / "results.tsv")
    expected = gpu_of_rows(run_dir)
    assert [r.exp for r in rows] == [0, 1, 2, 3]
    for row in rows:  # the column keeps six decimals
        assert row.gpu_usd == pytest.approx(2 * expected[row.exp], abs=2e-6), row
    # The baseline's row holds both its runs.
    assert rows[0].gpu_usd == pytest.approx(sum(2 * r.held_seconds for r in runs if r.exp == 0 and
                                                r.ts <= runs[1].ts), abs=2e-6)
    # The night's total counts every run, the best's confirming runs after its row too.
    assert stopped.gpu_cost_usd == pytest.approx(total)
    assert stopped.gpu_cost_usd >= sum(r.gpu_usd for r in rows) - 1e-5


async def test_a_budget_covering_all_stops_before_the_cap_with_the_ledger_consistent(tmp_path: Path) -> None:
    # Each run sleeps 0.4 s: about $0.5 a run at $1 a second.
    target = make_target(tmp_path / "target",
                         config='[target]\ntime_budget = 0.4\ntimeout = 5\n[target.env]\nTINY_SLEEP = "0.4"\n')
    run_dir = tmp_path / "run"
    # Every idea is worse than the baseline, so each one starts from it.
    steps = [ScriptStep(f"LR -> 0.9{i}", "LR = 0.5", f"LR = 0.9{i}") for i in range(8)]
    cap = 2.6
    engine = engine_for(target, run_dir, steps, baseline_runs=1, gpu_usd_per_hour=RATE, budget_usd=cap,
                        budget_covers="all")
    stopped = await engine.run()
    assert stopped.reason.startswith(f"budget of ${cap:.2f} reached"), stopped.reason
    assert not stopped.error

    runs = finished_runs(run_dir)
    spent = sum(run.gpu_usd for run in runs)
    assert stopped.gpu_cost_usd == pytest.approx(spent)
    assert stopped.gpu_cost_usd + stopped.cost_usd <= cap  # it stopped before the cap ...
    # The next run is expected to take as long as the longest so far (the
    # time budget, 0.4 s, before any ran).
    expected = max(0.4, max(run.held_seconds for run in runs))
    assert spent + expected > cap  # ... because the next run would have crossed it, not sooner
    assert len(runs) < 1 + len(steps)

    # The ledger holds every decided experiment, each priced by its runs;
    # the one that did not start is not a row, and waits for a resume.
    _, rows, torn = read_results(run_dir / "results.tsv")
    assert not torn
    expected = gpu_of_rows(run_dir)
    assert [r.exp for r in rows] == list(range(len(rows)))
    for row in rows:
        assert row.gpu_usd == pytest.approx(expected[row.exp], abs=2e-6)
    started = {e.exp for e in read_events(run_dir / "events.jsonl") if isinstance(e, ev.ExperimentStarted)}
    assert started == {r.exp for r in rows}
    state = read_state(run_dir)
    assert state["gpu"]["usd"] == pytest.approx(spent)

    # A higher budget goes on from there, at the same rate, with what was queued.
    queued = {c["exp"] for c in state["in_flight"]}
    assert queued  # the proposal that did not start
    again = await engine_for(target, run_dir, steps, baseline_runs=1, gpu_usd_per_hour=RATE, budget_usd=cap + 1.5,
                             budget_covers="all", max_experiments=len(rows) + 1).run()
    _, more, _ = read_results(run_dir / "results.tsv")
    assert len(more) > len(rows), again.reason
    assert again.gpu_cost_usd + again.cost_usd <= cap + 1.5
    assert again.gpu_cost_usd == pytest.approx(sum(run.gpu_usd for run in finished_runs(run_dir)))
    assert queued <= {r.exp for r in more}


async def test_a_budget_of_tokens_only_lets_gpu_time_run_past_it(tmp_path: Path) -> None:
    # The default: --budget-usd caps the agent's tokens (here none), not GPU time.
    target = make_target(tmp_path / "target", config=FAST)
    stopped = await engine_for(target, tmp_path / "run", STEPS[:2], baseline_runs=1, gpu_usd_per_hour=RATE * 100,
                               budget_usd=0.5).run()
    assert stopped.reason == "max experiments (2) reached"
    assert stopped.gpu_cost_usd > 0.5


async def test_the_rate_can_come_from_autoresearch_toml_and_bad_choices_are_refused(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target", config=FAST + "[cost]\ngpu_usd_per_hour = 2.5\n")
    assert load_target(target).gpu_usd_per_hour == 2.5
    run_dir = tmp_path / "run"
    stopped = await engine_for(target, run_dir, STEPS[:1], baseline_runs=1).run()
    started = next(e for e in read_events(run_dir / "events.jsonl") if isinstance(e, ev.RunStarted))
    assert started.gpu_usd_per_hour == 2.5
    assert stopped.gpu_cost_usd == pytest.approx(sum(r.held_seconds for r in finished_runs(run_dir)) * 2.5 / 3600)

    (target / "autoresearch.toml").write_text(FAST + "[cost]\ngpu_usd_per_hour = \"cheap\"\n")
    with pytest.raises(ConfigError, match=r"autoresearch.toml:\d+: cost.gpu_usd_per_hour: must be a price"):
        load_target(target)

    plain = make_target(tmp_path / "plain", config=FAST)
    with pytest.raises(UserError, match="--budget-covers all needs a GPU price"):
        await engine_for(plain, tmp_path / "run2", STEPS[:1], budget_usd=1.0, budget_covers="all").run()
    assert not (tmp_path / "run2" / "results.tsv").exists()


async def test_a_ledger_from_before_the_column_reads_and_resumes(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target", config=FAST)
    run_dir = tmp_path / "run"
    await engine_for(target, run_dir, STEPS, baseline_runs=1, max_experiments=1).run()
    # Make it the ledger an older ar-tui wrote: no gpu_usd column, no price.
    ledger = run_dir / "results.tsv"
    old = "".join("\t".join(line.split("\t")[:-1]) + "\n" for line in ledger.read_text().splitlines())
    assert "gpu_usd" not in old
    ledger.write_text(old)
    _, rows, torn = read_results(ledger)
    assert not torn and [(r.exp, r.gpu_usd) for r in rows] == [(0, None), (1, None)]

    # Resumed with a price: the old rows stay unpriced, the new ones are priced.
    await engine_for(target, run_dir, STEPS, baseline_runs=1, max_experiments=2, gpu_usd_per_hour=RATE).run()
    header = ledger.read_text().splitlines()[0].split("\t")
    assert header[:5] == ["commit", "val_bpb", "memory_gb", "status", "description"] and header[-1] == "gpu_usd"
    _, rows, torn = read_results(ledger)
    assert not torn
    assert [r.exp for r in rows] == [0, 1, 2]
    assert rows[0].gpu_usd is None and rows[1].gpu_usd is None
    assert rows[2].gpu_usd == pytest.approx(gpu_of_rows(run_dir)[2], abs=2e-6) and rows[2].gpu_usd > 0
    assert len(Ledger(run_dir, "val_bpb").rows) == 3  # the engine's own reader agrees
    report = report_as_dict(build_report(run_dir))
    assert [row["gpu_usd"] for row in report["rows"]] == [None, None, pytest.approx(rows[2].gpu_usd)]


async def test_report_json_gives_gpu_token_and_total_cost(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target", config=FAST)
    run_dir = tmp_path / "run"
    stopped = await engine_for(target, run_dir, STEPS, baseline_runs=1, gpu_usd_per_hour=RATE).run()
    figures = report_as_dict(build_report(run_dir))
    assert figures["gpu_cost_usd"] == pytest.approx(stopped.gpu_cost_usd)
    assert figures["token_cost_usd"] == pytest.approx(stopped.cost_usd)
    assert figures["total_cost_usd"] == pytest.approx(stopped.gpu_cost_usd + stopped.cost_usd)
    assert figures["gpu_usd_per_hour"] == RATE
    assert figures["gpu_hours"] == pytest.approx(sum(r.gpu_seconds for r in finished_runs(run_dir)) / 3600)
    experiments, kept = figures["experiments"], figures["kept"]
    assert kept >= 1
    assert figures["total_cost_per_experiment"] == pytest.approx(figures["total_cost_usd"] / experiments)
    assert figures["total_cost_per_kept"] == pytest.approx(figures["total_cost_usd"] / kept)
    assert figures["gpu_cost_per_kept"] == pytest.approx(figures["gpu_cost_usd"] / kept)
    json.dumps(figures)  # plain JSON types


def test_unpriced_gpu_time_is_unknown_not_zero(tmp_path: Path) -> None:
    """A run without a price: the report says n/a for GPU, and the total is the tokens'."""
    import asyncio

    target = make_target(tmp_path / "target", config=FAST)
    run_dir = tmp_path / "run"
    stopped = asyncio.run(engine_for(target, run_dir, STEPS[:1], baseline_runs=1).run())
    assert stopped.gpu_cost_usd is None
    _, rows, _ = read_results(run_dir / "results.tsv")
    assert all(r.gpu_usd is None for r in rows)
    figures = report_as_dict(build_report(run_dir))
    assert figures["gpu_cost_usd"] is None and figures["total_cost_usd"] == figures["token_cost_usd"]
    assert git(target, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"


async def test_the_gpu_time_is_rebuilt_from_the_events_when_state_json_lags(tmp_path: Path) -> None:
    from ar_tui.core.engine.accounting import Accounting

    target = make_target(tmp_path / "target", config=FAST)
    run_dir = tmp_path / "run"
    await engine_for(target, run_dir, STEPS, baseline_runs=1, gpu_usd_per_hour=RATE).run()
    state = read_state(run_dir)
    events = list(read_events(run_dir / "events.jsonl"))
    # As if the engine died before state.json recorded any of it.
    restored = Accounting()
    restored.restore({k: v for k, v in state.items() if k != "gpu"}, events)
    assert restored.gpu_usd == pytest.approx(state["gpu"]["usd"])
    assert restored.gpu_seconds == pytest.approx(state["gpu"]["seconds"])
    assert restored.longest_run_s == pytest.approx(state["gpu"]["longest_run_s"])
    assert {int(k): pytest.approx(v) for k, v in state["gpu"]["usd_by_exp"].items()} == restored.gpu_usd_by_exp
