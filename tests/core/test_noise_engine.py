"""Honest keeps through the real engine, on tiny targets that behave like
training: the same code with the same seed gives the same metric, and any
change of the code or of the seed re-draws it around the code's true value."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

from ar_tui.agents.scripted import ScriptedProposer, ScriptStep
from ar_tui.core import events as ev
from ar_tui.core.control.view import RunView
from ar_tui.core.engine import Engine, EngineOptions
from ar_tui.core.records.ledger import read_events, read_results
from ar_tui.core.seeds import seed_for
from ar_tui.headless import HeadlessPrinter
from tests.conftest import TINY_TRAIN, make_target

NULL_KNOBS = 40
SD = 0.01


def seeded_train(effect_sd: float = 0.0) -> str:
    """A script whose metric is 1.0 + SD * gauss, drawn from a hash of its own
    source and AR_SEED; `LR = 0.3` is better by `effect_sd` noise sds; the
    `A<i>` constants change the code (and so its luck) and nothing else."""
    knobs = "\n".join(f"A{i} = 0  # a knob without effect" for i in range(NULL_KNOBS))
    return textwrap.dedent(
        """\
        import hashlib, os, random
        LR = 0.5  # the knob with a real effect at 0.3
        {knobs}
        seed = os.environ.get("AR_SEED", "none")
        print(f"seed: {{seed}}")
        source = open(__file__).read()
        luck = random.Random(hashlib.sha256((source + seed).encode()).hexdigest()).gauss(0.0, 1.0)
        effect = {effect} if LR == 0.3 else 0.0
        print(f"val_bpb: {{1.0 - effect + {sd} * luck:.6f}}")
        """
    ).format(knobs=knobs, effect=effect_sd * SD, sd=SD)


def null_steps(count: int, first: int = 0) -> list[ScriptStep]:
    return [ScriptStep(f"A{i} 0 -> 1", f"A{i} = 0 ", f"A{i} = 1 ") for i in range(first, first + count)]


def options(target: Path, run_dir: Path, **extra) -> EngineOptions:
    return EngineOptions(target_dir=target, tag="noise", run_dir=run_dir, attended=False, lookahead=0,
                         write_report=False, **extra)


def decisions(run_dir: Path) -> list[ev.Decision]:
    return [e for e in read_events(run_dir / "events.jsonl") if isinstance(e, ev.Decision)]


def seed_of(log: Path) -> int:
    return int(re.search(r"^seed: (\d+)$", log.read_text(), re.MULTILINE).group(1))


async def test_each_run_gets_its_own_seed_and_repeats_differ(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target", train=seeded_train())
    run_dir = tmp_path / "run"
    engine = Engine(options(target, run_dir, baseline_runs=3, max_experiments=1), ScriptedProposer(null_steps(1)))
    await engine.run()
    logs = [run_dir / "logs" / name for name in ("0.log", "0.2.log", "0.3.log")]
    assert seed_of(run_dir / "logs" / "1.log") == seed_for(1, 1)
    assert [seed_of(log) for log in logs] == [seed_for(0, 1), seed_for(0, 2), seed_for(0, 3)]
    metrics = [float(re.search(r"val_bpb: (\S+)", log.read_text()).group(1)) for log in logs]
    assert len(set(metrics)) == 3  # different seeds re-drew the luck
    noise = [e for e in read_events(run_dir / "events.jsonl") if isinstance(e, ev.NoiseEstimate)][-1]
    assert noise.dof == 2 and not noise.jitter_only and noise.sd > 0


async def test_a_seed_only_change_is_refused_before_training(tmp_path: Path) -> None:
    train = seeded_train().replace('seed = os.environ.get("AR_SEED", "none")',
                                   'SEED = 1337\nseed = os.environ.get("AR_SEED", str(SEED))')
    target = make_target(tmp_path / "target", train=train)
    run_dir = tmp_path / "run"
    steps = [ScriptStep("a luckier seed", "SEED = 1337", "SEED = 7"), *null_steps(1)]
    engine = Engine(options(target, run_dir, baseline_runs=2, max_experiments=2), ScriptedProposer(steps))
    await engine.run()
    events = list(read_events(run_dir / "events.jsonl"))
    refused = [e for e in events if isinstance(e, ev.ProposalFailed) and "seed" in e.reason]
    assert len(refused) == 1 and "only alters the random seed" in refused[0].reason
    started = [e.description for e in events if isinstance(e, ev.ExperimentStarted) and e.exp > 0]
    assert "a luckier seed" not in started and "A0 0 -> 1" in started


async def test_a_target_that_ignores_the_seed_is_flagged(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target", train=TINY_TRAIN)
    run_dir = tmp_path / "run"
    steps = [ScriptStep("LR 0.5 -> 0.45", "LR = 0.5", "LR = 0.45")]
    engine = Engine(options(target, run_dir, baseline_runs=3, max_experiments=1), ScriptedProposer(steps))
    view = RunView()
    engine.subscribe(view.apply)
    stopped = await engine.run()
    assert view.noise_jitter_only and view.noise_sd == 0.0 and view.noise_dof == 2
    assert stopped.noise_jitter_only
    kept = decisions(run_dir)[-1]
    assert kept.status == "keep" and "jitter only" in kept.rule


async def test_a_null_target_keeps_little_and_its_interval_holds_zero(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target", train=seeded_train())
    run_dir = tmp_path / "run"
    engine = Engine(options(target, run_dir, max_experiments=NULL_KNOBS), ScriptedProposer(null_steps(NULL_KNOBS)))
    stopped = await engine.run()
    _, rows, _ = read_results(run_dir / "results.tsv")
    assert len(rows) == NULL_KNOBS + 1
    keeps = [r for r in rows if r.status == "keep" and r.exp != 0]
    assert len(keeps) <= 4
    low, high = stopped.improvement_ci_pct
    assert low <= 0.0 <= high, stopped.improvement_text
    assert stopped.noise_dof >= 4 and stopped.noise_sd > 0
    # Every keep's rule says what was compared, over how many runs, at what confidence.
    for row in keeps:
        assert "95% confidence" in row.rule and "dof" in row.rule


async def test_a_real_gain_is_kept(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target", train=seeded_train(effect_sd=6.0))
    run_dir = tmp_path / "run"
    steps = [*null_steps(3), ScriptStep("LR 0.5 -> 0.3", "LR = 0.5", "LR = 0.3"), *null_steps(2, first=3)]
    engine = Engine(options(target, run_dir, max_experiments=6), ScriptedProposer(steps))
    stopped = await engine.run()
    final = {d.description: d.status for d in decisions(run_dir) if d.status != "rerun"}
    assert final["LR 0.5 -> 0.3"] == "keep"
    low, high = stopped.improvement_ci_pct
    assert 0 < low <= 6.0 <= high  # the true gain is 6 sds of 1%: 6% of the metric
    summary = HeadlessPrinter.format(stopped)
    assert "better (95% interval" in summary and "dof)" in summary


async def test_a_lucky_incumbent_is_remeasured(tmp_path: Path) -> None:
    # The first change is so much better that it is kept on its one run; the
    # next, a change without effect, is close to it: the best is run again.
    target = make_target(tmp_path / "target", train=seeded_train(effect_sd=30.0))
    run_dir = tmp_path / "run"
    steps = [ScriptStep("LR 0.5 -> 0.3", "LR = 0.5", "LR = 0.3"), *null_steps(1)]
    engine = Engine(options(target, run_dir, max_experiments=2), ScriptedProposer(steps))
    await engine.run()
    events = list(read_events(run_dir / "events.jsonl"))
    kept = next(e for e in events if isinstance(e, ev.Decision) and e.status == "keep" and e.exp == 1)
    assert "1 run" in kept.rule
    remeasure = [e for e in events if isinstance(e, ev.Decision) and e.exp == 2 and "re-measuring the best" in e.rule]
    assert remeasure, [e.rule for e in events if isinstance(e, ev.Decision)]
    run_of_best = [e for e in events if isinstance(e, ev.ExperimentStarted) and e.exp == 2 and e.commit == kept.commit]
    assert run_of_best and run_of_best[0].description.startswith("re-measuring the best")
    state = json.loads((run_dir / "state.json").read_text())
    assert len(state["noise"]["groups"][kept.commit]) >= 2  # the best's estimate: all its runs


async def test_resume_keeps_the_noise_state(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target", train=seeded_train())
    run_dir = tmp_path / "run"
    first = Engine(options(target, run_dir, max_experiments=3), ScriptedProposer(null_steps(3)))
    await first.run()
    before = json.loads((run_dir / "state.json").read_text())["noise"]
    dof_before = first.opened.state.noise.dof
    assert dof_before >= 4
    second = Engine(options(target, run_dir, max_experiments=5), ScriptedProposer(null_steps(2, first=3)))
    view = RunView()
    second.subscribe(view.apply)
    await second.run()
    noise_events = [e for e in read_events(run_dir / "events.jsonl") if isinstance(e, ev.NoiseEstimate)]
    resumed = next(e for e in noise_events if e.dof == dof_before)
    assert resumed is not None
    after = json.loads((run_dir / "state.json").read_text())["noise"]
    for commit, runs in before["groups"].items():
        assert after["groups"][commit][: len(runs)] == runs and after["seeds"][commit][: len(runs)] == before["seeds"][commit]
    assert second.opened.state.noise.dof >= dof_before
    # The baseline is not run again on resume.
    assert sum(1 for e in read_events(run_dir / "events.jsonl") if isinstance(e, ev.BaselineReady) and e.runs) == 1


async def test_the_sequential_design_is_solved_off_the_event_loop(tmp_path: Path, monkeypatch) -> None:
    # Each boundary is a numerical solve (scipy, 0.1 to 0.5 s): on the event
    # loop it would freeze the app at every decision. Every solve the engine
    # needs is done in a worker thread; the loop only finds them cached.
    import functools
    import threading

    from ar_tui.core import decisions as decision_rules

    loop_thread = threading.get_ident()
    solved_in: list[tuple[tuple, bool]] = []
    original = decision_rules.sequential_boundaries.__wrapped__

    @functools.lru_cache(maxsize=512)
    def recording(*args, **kwargs):
        solved_in.append((args, threading.get_ident() == loop_thread))
        return original(*args, **kwargs)

    monkeypatch.setattr(decision_rules, "sequential_boundaries", recording)
    target = make_target(tmp_path / "target", train=seeded_train())
    run_dir = tmp_path / "run"
    engine = Engine(options(target, run_dir, baseline_runs=3, max_experiments=4, max_runs=3),
                    ScriptedProposer(null_steps(4)))
    await engine.run()
    assert len(decisions(run_dir)) >= 5  # the baseline and four experiments were judged
    assert solved_in, "the engine judged with the sequential design"
    assert not [args for args, on_loop in solved_in if on_loop], "a boundary was solved on the event loop"
