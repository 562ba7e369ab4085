"""Evidence read from training logs: the final block's figures and a compact loss curve."""

from __future__ import annotations

from pathlib import Path

from ar_tui.agents.llm import prompt
from ar_tui.core.config import TargetConfig
from ar_tui.core.evidence import RunEvidence, read_evidence
from ar_tui.core.proposer import ProposalContext, ResultRow

NANOCHAT_LOG = "device: cpu  params: 1.20M  budget: 60s\n" + "".join(
    f"\rstep {s:5d} | loss {4.0 - s * 0.001:.4f} |   41000 tok/s |  50.0% | 30.0s left" for s in range(10, 1010, 10)
) + """
---
val_bpb:          1.234567
training_seconds: 60.0
total_seconds:    71.2
peak_memory_mb:   2048.0
num_steps:        1000
num_params_M:     1.20
tokens_per_sec:   41000
device:           cpu
"""


def test_the_final_block_and_a_handful_of_loss_points_are_read(tmp_path: Path):
    log = tmp_path / "1.log"
    log.write_text(NANOCHAT_LOG)
    evidence = read_evidence(log)
    assert evidence is not None
    assert evidence.figures == {"val_bpb": 1.234567, "training_seconds": 60.0, "total_seconds": 71.2,
                                "peak_memory_mb": 2048.0, "num_steps": 1000.0, "num_params_M": 1.2,
                                "tokens_per_sec": 41000.0}
    steps = [s for s, _ in evidence.loss]
    assert len(steps) == 6 and steps[0] == 10 and steps[-1] == 1000 and steps == sorted(steps)
    assert evidence.loss[-1] == (1000, 3.0)


def test_a_missing_or_silent_log_has_no_evidence(tmp_path: Path):
    assert read_evidence(tmp_path / "nope.log") is None
    (tmp_path / "2.log").write_text("Traceback (most recent call last):\nRuntimeError: boom\n")
    assert read_evidence(tmp_path / "2.log") is None
    (tmp_path / "3.log").write_text("step 1/1 loss 1.0\n---\nval_bpb: 1.04\npeak_vram_mb: 2048.0\n")
    assert read_evidence(tmp_path / "3.log") == RunEvidence({"val_bpb": 1.04, "peak_vram_mb": 2048.0}, [(1, 1.0)])


def test_a_slower_change_reads_as_such_against_its_parent(tmp_path: Path):
    parent = RunEvidence({"num_steps": 1000, "tokens_per_sec": 41000, "training_seconds": 300, "val_bpb": 1.0},
                         [(100, 3.5), (1000, 3.0)])
    slower = RunEvidence({"num_steps": 700, "tokens_per_sec": 28700, "training_seconds": 300, "val_bpb": 1.01},
                         [(100, 3.4), (700, 3.1)])
    history = [ResultRow(0, "a", 1.0, "keep", "baseline", evidence=parent),
               ResultRow(1, "b", 1.01, "discard", "wider MLP", evidence=slower),
               ResultRow(2, "c", None, "crash", "bad idea")]
    ctx = ProposalContext(exp=3, target=TargetConfig(root=tmp_path), best_metric=1.0, baseline_metric=1.0,
                          history=history)
    text = prompt.situation_text(ctx)
    assert "## How the runs trained" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("- exp 1 discard"))
    assert "num_steps 700 (-30%)" in line and "tokens_per_sec 28700 (-30%)" in line
    assert "training_seconds 300 (+0%)" in line and "val_bpb" not in line
    assert line.endswith("loss 3.4@100 3.1@700")
    assert "- baseline: num_steps 1000" in text and "(best)" in text


def test_training_progress_reads_a_progress_line() -> None:
    from ar_tui.core.evidence import TrainingProgress, training_progress

    assert training_progress("step    17 | loss 6.2105 |    10,928 tok/s |  24.6% |  11.3s left") == TrainingProgress(
        step=17, loss=6.2105, tokens_per_s=10928.0, seconds_left=11.3)
    assert training_progress("step 1/1 loss 1.0") == TrainingProgress(step=1, loss=1.0)
    assert training_progress("val_bpb: 2.4") is None
