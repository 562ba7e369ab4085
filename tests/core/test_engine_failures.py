"""Every way a training run can go wrong is classified, recorded and survived."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ar_tui.agents.scripted import ScriptedProposer, ScriptStep
from ar_tui.core import events as ev
from ar_tui.core.engine import Engine, EngineOptions
from ar_tui.core.executors.base import StepwiseExecutor
from ar_tui.core.records.ledger import read_events, read_results
from tests.conftest import git, make_target

FAST_CONFIG = "[target]\ntime_budget = 1\ntimeout = 3\n"


def engine_for(target: Path, run_dir: Path, steps: list[ScriptStep], **kw) -> Engine:
    opts = dict(target_dir=target, tag="f", run_dir=run_dir, attended=False, lookahead=0, baseline_runs=1,
                max_experiments=len(steps))
    opts.update(kw)
    return Engine(EngineOptions(**opts), ScriptedProposer(steps))


def finished(run_dir: Path) -> list[ev.ExperimentFinished]:
    return [e for e in read_events(run_dir / "events.jsonl") if isinstance(e, ev.ExperimentFinished)]


@pytest.mark.parametrize(
    "code, outcome, message",
    [
        ("import time\ntime.sleep(60)", ev.OUTCOME_TIMEOUT, "hard timeout"),
        ("raise RuntimeError('boom at step 7')", ev.OUTCOME_CRASH, "exit code 1"),
        ("print('trained, forgot the metric')\nraise SystemExit(0)", ev.OUTCOME_NO_METRIC, "no val_bpb line"),
        ("print('val_bpb: nan')\nraise SystemExit(0)", ev.OUTCOME_NAN, "val_bpb is nan"),
        ("open('prepare.py', 'a').write('# sneaky\\n')\nprint('val_bpb: 0.1')\nraise SystemExit(0)", ev.OUTCOME_INTEGRITY,
         "protected file(s) changed during the run: prepare.py"),
    ],
)
async def test_failed_runs_are_classified_and_the_worktree_goes_back_to_best(
    tmp_path: Path, code: str, outcome: str, message: str
) -> None:
    target = make_target(tmp_path / "target", config=FAST_CONFIG)
    run_dir = tmp_path / "run"
    step = ScriptStep("break it", "LR = 0.5  # the knob the tests turn\n", f"LR = 0.5\n{code}\n")
    better = ScriptStep("LR 0.5 -> 0.4", "LR = 0.5", "LR = 0.4")
    stopped = await engine_for(target, run_dir, [step, better]).run()
    assert not stopped.error
    _, rows, _ = read_results(run_dir / "results.tsv")
    assert [(r.exp, r.status) for r in rows] == [(0, "keep"), (1, "crash"), (2, "keep")]
    assert rows[1].metric is None and message in rows[1].rule
    failed = [e for e in finished(run_dir) if e.exp == 1][0]
    assert failed.outcome == outcome
    # The next experiment ran on the best, not on the broken code.
    assert "break it" not in git(target, "log", "--format=%s", "autoresearch/f")
    assert "sneaky" not in git(target, "show", "autoresearch/f:prepare.py")


async def test_crash_tail_reaches_the_next_proposal(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target", config=FAST_CONFIG)
    steps = [ScriptStep("crash", "LR = 0.5", "LR = 0.5\nraise SystemExit('CUDA out of memory (simulated)')"),
             ScriptStep("LR 0.5 -> 0.4", "LR = 0.5", "LR = 0.4")]
    engine = engine_for(target, tmp_path / "run", steps)
    await engine.run()
    assert "CUDA out of memory (simulated)" in engine.proposer.calls[1].last_failure_tail


async def test_a_proposal_that_edits_a_protected_file_is_rejected_whatever_its_metric(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target", config=FAST_CONFIG + '[metric]\nname = "val_bpb"\n')
    run_dir = tmp_path / "run"
    # The workspace refuses the edit, so the proposal fails before it runs.
    engine = engine_for(target, run_dir, [ScriptStep("cheat", "DATA = 42", "DATA = 0", path="prepare.py")])
    stopped = await engine.run()
    events = list(read_events(run_dir / "events.jsonl"))
    failures = [e for e in events if isinstance(e, ev.ProposalFailed)]
    assert failures and "protected" in failures[0].reason
    assert not any(isinstance(e, ev.ExperimentStarted) and e.exp > 0 for e in events)
    assert "the proposer failed" in stopped.reason or "no more steps" in stopped.reason


async def test_the_trusted_evaluator_decides_the_metric_not_the_training_script(tmp_path: Path) -> None:
    # train.py prints a fake, wonderful metric; the evaluator computes the real one.
    train = (
        "import os\nLR = 0.5\n"
        "open(os.environ['AR_CHECKPOINT'], 'w').write(str(LR))\n"
        "print('val_bpb: 0.000001')\n"
    )
    evaluator = "import sys\nlr = float(open(sys.argv[1]).read())\nprint(f'val_bpb: {(lr - 0.3) ** 2 + 1:.6f}')\n"
    config = FAST_CONFIG + '[metric]\nevaluate = "python evaluate_tiny.py {checkpoint}"\n'
    target = make_target(tmp_path / "target", train=train, config=config, extra={"evaluate_tiny.py": evaluator})
    (target / "autoresearch.toml").write_text(
        config.replace("[target]\n", '[target]\nprotected = ["prepare.py", "evaluate_tiny.py"]\n'))
    git(target, "commit", "-qam", "protect the evaluator")
    run_dir = tmp_path / "run"
    steps = [ScriptStep("LR 0.5 -> 0.9", "LR = 0.5", "LR = 0.9"), ScriptStep("LR 0.5 -> 0.4", "LR = 0.5", "LR = 0.4")]
    await engine_for(target, run_dir, steps).run()
    _, rows, _ = read_results(run_dir / "results.tsv")
    assert [(r.status, r.metric) for r in rows] == [("keep", 1.04), ("discard", 1.36), ("keep", 1.01)]
    runs = {e.exp: e for e in finished(run_dir)}
    assert runs[1].reported_metric == 0.000001 and runs[1].metric == 1.36


class BrokenExecutor(StepwiseExecutor):
    """An executor whose infrastructure fails (a cluster that went away)."""

    async def run(self, spec, on_line, stop):
        raise RuntimeError("executor lost its connection")


async def test_an_engine_failure_stops_the_run_resumably_with_a_clear_reason(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target", config=FAST_CONFIG)
    run_dir = tmp_path / "run"
    engine = Engine(EngineOptions(target_dir=target, tag="f", run_dir=run_dir, attended=False, baseline_runs=1,
                                  max_experiments=1), ScriptedProposer([]), executor=BrokenExecutor())
    stopped = await engine.run()
    assert stopped.error and stopped.reason.startswith("engine error: RuntimeError('executor lost its connection')")
    assert "executor lost its connection" in (run_dir / "engine-error.log").read_text()
    assert not (run_dir / "engine.pid").exists()
    # The same run dir resumes with a working executor.
    again = await engine_for(target, run_dir, [ScriptStep("LR 0.5 -> 0.4", "LR = 0.5", "LR = 0.4")]).run()
    assert not again.error
    assert [r.status for r in read_results(run_dir / "results.tsv")[1]] == ["keep", "keep"]


class StaleLockProposer(ScriptedProposer):
    """Edits, then leaves the proposal worktree's index locked, as a git
    process that crashed there would: the engine's next git command fails."""

    async def propose(self, ctx, workspace, emit):
        proposal = await super().propose(ctx, workspace, emit)
        git_dir = git(workspace.root, "rev-parse", "--absolute-git-dir").strip()
        (Path(git_dir) / "index.lock").write_text("")
        self.lock = Path(git_dir) / "index.lock"
        return proposal


async def test_a_git_failure_while_proposing_stops_the_run_with_git_s_line(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target", config=FAST_CONFIG)
    run_dir = tmp_path / "run"
    proposer = StaleLockProposer([ScriptStep("LR 0.5 -> 0.4", "LR = 0.5", "LR = 0.4")])
    engine = Engine(EngineOptions(target_dir=target, tag="f", run_dir=run_dir, attended=False, lookahead=0,
                                  baseline_runs=1, max_experiments=1), proposer)
    # Bounded so that the hang this guards against fails the test instead of the suite.
    stopped = await asyncio.wait_for(engine.run(), 120)
    assert stopped.error and "\n" not in stopped.reason
    assert stopped.reason.startswith("engine error: git add failed: fatal: Unable to create '")
    assert "index.lock': File exists." in stopped.reason and stopped.reason.endswith("run again to resume)")
    assert "GitCommandError" in (run_dir / "engine-error.log").read_text()
    assert not (run_dir / "engine.pid").exists()
    # The lock gone, the same run dir resumes and proposes again.
    proposer.lock.unlink()
    again = await engine_for(target, run_dir, [ScriptStep("LR 0.5 -> 0.4", "LR = 0.5", "LR = 0.4")]).run()
    assert not again.error
    assert [r.status for r in read_results(run_dir / "results.tsv")[1]] == ["keep", "keep"]
