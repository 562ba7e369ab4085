"""The sequential loop end to end on a tiny real target: propose, commit, run,
judge, keep or revert, record."""

from __future__ import annotations

import json
from pathlib import Path

from ar_tui.agents.scripted import ScriptedProposer, ScriptStep
from ar_tui.core import events as ev
from ar_tui.core.engine import Engine, EngineOptions
from ar_tui.core.records.ledger import read_events, read_results
from tests.conftest import git


def options(target: Path, run_dir: Path, **kw) -> EngineOptions:
    base = dict(target_dir=target, tag="t1", run_dir=run_dir, attended=False, lookahead=0, baseline_runs=1)
    base.update(kw)
    return EngineOptions(**base)


async def test_keep_and_discard_move_the_branch_only_on_improvement(tiny_target: Path, run_dir: Path) -> None:
    proposer = ScriptedProposer([
        ScriptStep("LR 0.5 -> 0.4", "LR = 0.5", "LR = 0.4"),   # better: 1.01 vs 1.04
        ScriptStep("LR 0.4 -> 0.9", "LR = 0.4", "LR = 0.9"),   # worse
        ScriptStep("LR 0.4 -> 0.3", "LR = 0.4", "LR = 0.3"),   # better still
    ])
    engine = Engine(options(tiny_target, run_dir, max_experiments=3), proposer)
    seen: list[ev.Event] = []
    engine.subscribe(seen.append)
    stopped = await engine.run()

    assert stopped.reason == "max experiments (3) reached"
    assert not stopped.error
    metric, rows, torn = read_results(run_dir / "results.tsv")
    assert metric == "val_bpb" and not torn
    assert [(r.exp, r.status) for r in rows] == [(0, "keep"), (1, "keep"), (2, "discard"), (3, "keep")]
    assert rows[-1].metric == 1.0
    assert rows[0].memory_gb == 2.0
    # The branch tip is the best kept state and carries the description.
    tip = git(tiny_target, "rev-parse", "autoresearch/t1").strip()
    assert tip.startswith(rows[-1].commit)
    assert "LR = 0.3" in git(tiny_target, "show", "autoresearch/t1:train.py")
    assert "LR 0.4 -> 0.3" in git(tiny_target, "log", "-1", "--format=%s", "autoresearch/t1")
    # The user's checkout is untouched.
    assert git(tiny_target, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    assert "LR = 0.5" in (tiny_target / "train.py").read_text()
    # Every persisted event is in events.jsonl, in order.
    persisted = [e for e in seen if e.persist]
    replayed = list(read_events(run_dir / "events.jsonl"))
    assert [e.to_dict() for e in replayed] == [e.to_dict() for e in persisted]
    assert (run_dir / "logs" / "1.log").read_text().count("val_bpb") == 1
    assert (run_dir / "diffs" / "2.diff").read_text().count("+LR = 0.9") == 1
    # The agent was shown what happened before.
    assert [r.status for r in proposer.calls[-1].history] == ["keep", "keep", "discard"]
    assert stopped.improvement_pct is not None and abs(stopped.improvement_pct - 100 * 0.04 / 1.04) < 1e-6
