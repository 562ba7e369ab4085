"""A transient failure (a stalled or crashed repeat) is retried once with the
next seed; the night stops only when the baseline cannot produce a metric."""

from __future__ import annotations

import textwrap
from pathlib import Path

from ar_tui.agents.scripted import ScriptStep
from ar_tui.core import events as ev
from tests.conftest import make_target
from tests.robust.helpers import FAST_CONFIG, engine_for, events_of, notices, rows

# The baseline's second repeat (seed 2) stops making progress: SIGSTOP, as a
# process stopped from outside; the hard timeout ends it.
STALLING_TRAIN = textwrap.dedent(
    """\
    import os, signal
    LR = 0.5
    seed = int(os.environ["AR_SEED"])
    if seed in {int(s) for s in os.environ.get("STALL_SEEDS", "").split(",") if s}:
        os.kill(os.getpid(), signal.SIGSTOP)
    if seed in {int(s) for s in os.environ.get("CRASH_SEEDS", "").split(",") if s}:
        raise RuntimeError("flaky node")
    print(f"val_bpb: {(LR - 0.3) ** 2 + 1.0 + (seed % 1000) * 1e-4:.6f}")
    """
)


def target_with(tmp_path: Path, stall: str = "", crash: str = "") -> Path:
    env = f'env = {{ STALL_SEEDS = "{stall}", CRASH_SEEDS = "{crash}" }}\n'
    return make_target(tmp_path / "target", train=STALLING_TRAIN, config=FAST_CONFIG + env)


def baseline_seeds(run_dir: Path) -> list[tuple[int | None, str]]:
    return [(e.seed, e.outcome) for e in events_of(run_dir) if isinstance(e, ev.ExperimentFinished) and e.exp == 0]


async def test_a_stalled_baseline_repeat_is_retried_with_the_next_seed_and_the_night_goes_on(tmp_path: Path) -> None:
    target = target_with(tmp_path, stall="2")
    run_dir = tmp_path / "run"
    steps = [ScriptStep("LR 0.5 -> 0.4", "LR = 0.5", "LR = 0.4")]
    stopped = await engine_for(target, run_dir, steps, baseline_runs=3).run()
    assert not stopped.error, stopped.reason
    # (Runs of exp 0 after these confirm the kept best before the night ends.)
    assert baseline_seeds(run_dir)[:4] == [(1, "ok"), (2, "timeout"), (3, "ok"), (4, "ok")]
    result = rows(run_dir)
    assert [(r.exp, r.status) for r in result] == [(0, "keep"), (1, "keep")]
    assert result[0].rule == "baseline, mean of 3 run(s)"
    assert any("baseline run 2 failed (timeout" in m and "retrying it once" in m for m in notices(run_dir))


async def test_a_repeat_that_fails_twice_leaves_a_baseline_of_fewer_runs_and_says_so(tmp_path: Path) -> None:
    target = target_with(tmp_path, crash="2,3")
    run_dir = tmp_path / "run"
    stopped = await engine_for(target, run_dir, [ScriptStep("LR 0.5 -> 0.4", "LR = 0.5", "LR = 0.4")],
                               baseline_runs=2).run()
    assert not stopped.error, stopped.reason
    assert baseline_seeds(run_dir)[:3] == [(1, "ok"), (2, "crash"), (3, "crash")]
    rule = rows(run_dir)[0].rule
    assert rule.startswith("baseline, mean of 1 run(s); fewer than the 2 planned: 1 failed twice") and "flaky node" in rule


async def test_a_baseline_without_any_metric_still_ends_the_night(tmp_path: Path) -> None:
    target = target_with(tmp_path, crash="1")
    run_dir = tmp_path / "run"
    stopped = await engine_for(target, run_dir, [ScriptStep("LR 0.5 -> 0.4", "LR = 0.5", "LR = 0.4")],
                               baseline_runs=3).run()
    assert stopped.error and stopped.reason.startswith("the baseline failed (crash: RuntimeError: flaky node")
    assert baseline_seeds(run_dir) == [(1, "crash")]


async def test_a_candidates_rerun_that_crashes_is_retried_once(tmp_path: Path) -> None:
    # Seed noise large enough that the candidate is run again; its second run (seed 1002) crashes.
    train = STALLING_TRAIN.replace("(seed % 1000) * 1e-4", "(seed % 7) * 3e-3")
    target = make_target(tmp_path / "target", train=train,
                         config=FAST_CONFIG + 'env = { STALL_SEEDS = "", CRASH_SEEDS = "1002" }\n')
    run_dir = tmp_path / "run"
    steps = [ScriptStep("LR 0.5 -> 0.49", "LR = 0.5", "LR = 0.49")]
    stopped = await engine_for(target, run_dir, steps, baseline_runs=3).run()
    assert not stopped.error, stopped.reason
    runs = [(e.seed, e.outcome) for e in events_of(run_dir) if isinstance(e, ev.ExperimentFinished) and e.exp == 1]
    assert runs[:3] == [(1001, "ok"), (1002, "crash"), (1003, "ok")], runs
    assert any("experiment 1: run 2 failed (crash" in m for m in notices(run_dir))
    assert rows(run_dir)[1].status in ("keep", "discard")
