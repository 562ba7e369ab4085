"""The redesign keeps behaviour identical: a scripted proposer on a
deterministic target gives the same results.tsv and the same decision events
(times, costs and commit hashes aside) as the recording made before the
engine was split into parts. One difference is deliberate and recorded: the
baseline is now decided by a `Decision` event like any other row (exp 0).

Re-record deliberately (a rule changed on purpose) with
`AR_TUI_RECORD_GOLDEN=1 python -m pytest tests/core/test_golden.py`.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

from ar_tui.agents.scripted import ScriptedProposer, ScriptStep
from ar_tui.core import events as ev
from ar_tui.core.engine import Engine, EngineOptions
from ar_tui.core.records.ledger import read_events, read_results
from tests.conftest import make_target

GOLDEN = Path(__file__).parent / "data" / "golden_greedy.json"

TRAIN = textwrap.dedent(
    """\
    import os
    LR = 0.5  # learning rate
    WIDTH = 64  # width
    CRASH = False  # a change that breaks the script
    if CRASH:
        raise RuntimeError("boom")
    print("step 1/1 loss 1.0", flush=True)
    print("---")
    print(f"val_bpb: {(LR - 0.3) ** 2 + (WIDTH - 48) ** 2 * 1e-4 + 1.0:.6f}")
    print("peak_vram_mb: 1024.0")
    """
)

STEPS = [
    ScriptStep("LR 0.5 -> 0.4", "LR = 0.5", "LR = 0.4", rationale="closer to the optimum"),
    ScriptStep("LR 0.4 -> 0.9", "LR = 0.4", "LR = 0.9"),
    ScriptStep("crash on purpose", "CRASH = False", "CRASH = True"),
    ScriptStep("WIDTH 64 -> 48", "WIDTH = 64", "WIDTH = 48"),
    ScriptStep("WIDTH 48 -> 48", "WIDTH = 48", "WIDTH = 48 "),
    ScriptStep("LR 0.4 -> 0.3", "LR = 0.4", "LR = 0.3"),
    ScriptStep("WIDTH 48 -> 40", "WIDTH = 48", "WIDTH = 40"),
]


def _record(run_dir: Path) -> dict:
    _, rows, _ = read_results(run_dir / "results.tsv")
    ledger = [
        {"exp": r.exp, "metric": r.metric, "memory_gb": r.memory_gb, "status": r.status,
         "description": r.description, "forced": r.forced, "prepared_before": r.prepared_before, "rule": r.rule,
         "rationale": r.rationale}
        for r in rows
    ]
    decisions = [
        {"exp": e.exp, "status": e.status, "rule": e.rule, "metric": e.metric, "best_before": e.best_before,
         "best_after": e.best_after, "description": e.description, "forced": e.forced}
        for e in read_events(run_dir / "events.jsonl") if isinstance(e, ev.Decision)
    ]
    return {"ledger": ledger, "decisions": decisions}


async def test_greedy_run_matches_the_recording_made_before_the_redesign(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target", train=TRAIN)
    run_dir = tmp_path / "run"
    engine = Engine(EngineOptions(target_dir=target, tag="golden", run_dir=run_dir, attended=False, lookahead=0,
                                  baseline_runs=2, max_experiments=len(STEPS), write_report=False),
                    ScriptedProposer(list(STEPS)))
    stopped = await engine.run()
    assert not stopped.error, stopped.reason
    record = _record(run_dir)
    if os.environ.get("AR_TUI_RECORD_GOLDEN"):
        GOLDEN.write_text(json.dumps(record, indent=1) + "\n")
    assert record == json.loads(GOLDEN.read_text())
