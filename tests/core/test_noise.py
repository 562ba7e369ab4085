"""Keeping only what clears the noise."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from ar_tui.agents.scripted import ScriptedProposer, ScriptStep
from ar_tui.core import events as ev
from ar_tui.core.decisions import NoiseModel, judge
from ar_tui.core.engine import Engine, EngineOptions
from ar_tui.core.ledger import read_events, read_results
from tests.conftest import make_target


def test_pooled_noise_estimate_from_repeated_runs() -> None:
    noise = NoiseModel(k=2.0)
    assert noise.sd is None and noise.band is None
    for value in (1.00, 1.02):
        noise.add("a", value)
    for value in (2.00, 2.04, 2.02):
        noise.add("b", value)
    noise.add("c", 5.0)  # a single run says nothing about noise
    # pooled: ((0.01^2*2) + (0.02^2*2)) / (1 + 2)
    expected = math.sqrt((2 * 0.0001 + 2 * 0.0004) / 3)
    assert abs(noise.sd - expected) < 1e-12
    assert noise.samples == 5 and abs(noise.band - 2 * expected) < 1e-12


def test_judge_keeps_clears_reruns_inside_and_discards_worse() -> None:
    noise = NoiseModel(k=2.0, groups={"base": [1.00, 1.02]})  # sd 0.01414, band 0.02828
    assert judge([1.05], 1.01, "min", noise, 2).status == "discard"
    assert judge([0.95], 1.01, "min", noise, 2).status == "keep"
    inside = judge([1.00], 1.01, "min", noise, 2)
    assert inside.status == "rerun" and "inside noise band" in inside.rule
    # Two runs whose mean gain clears band/sqrt(2) are kept; otherwise discarded.
    assert judge([1.00, 0.98], 1.01, "min", noise, 2).status == "keep"
    assert judge([1.00, 1.01], 1.01, "min", noise, 2).status == "discard"
    # Direction max mirrors it; no noise estimate falls back to the strict rule.
    assert judge([1.5], 1.0, "max", noise, 2).status == "keep"
    assert judge([1.0001], 1.0, "min", NoiseModel(), 2).status == "discard"
    assert judge([0.9999], 1.0, "min", NoiseModel(), 2).status == "keep"


# Each run adds the next offset from a fixed list: deterministic "noise" that
# the engine must measure from repeated runs.
NOISY_TRAIN = textwrap.dedent(
    """\
    import os
    LR = 0.5
    OFFSETS = [0.0, 0.02, 0.01, -0.01, 0.0, 0.02, 0.01, 0.0]
    counter = os.environ["NOISE_COUNTER"]
    n = int(open(counter).read()) if os.path.exists(counter) else 0
    open(counter, "w").write(str(n + 1))
    print(f"val_bpb: {(LR - 0.3) ** 2 + 1.0 + OFFSETS[n % len(OFFSETS)]:.6f}")
    """
)


async def test_a_gain_inside_the_noise_band_is_run_again_before_it_is_kept(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("NOISE_COUNTER", str(tmp_path / "counter"))
    target = make_target(tmp_path / "target", train=NOISY_TRAIN)
    run_dir = tmp_path / "run"
    # Baseline runs: 1.04, 1.06 -> mean 1.05, sd 0.01414, band 0.0283.
    # A tiny real gain (LR 0.5 -> 0.48: 1.0324 + offset): run 3 gives 1.0424,
    # inside the band: run again (1.0224), mean 1.0324, gain 0.0176 < 0.02 -> discard.
    # A large gain (LR 0.3: 1.0 + offset) clears the band at once.
    steps = [ScriptStep("LR 0.5 -> 0.48", "LR = 0.5", "LR = 0.48"), ScriptStep("LR 0.5 -> 0.3", "LR = 0.5", "LR = 0.3")]
    engine = Engine(EngineOptions(target_dir=target, tag="n", run_dir=run_dir, lookahead=0, baseline_runs=2,
                                  max_experiments=2), ScriptedProposer(steps))
    await engine.run()
    events = list(read_events(run_dir / "events.jsonl"))
    decisions = [(e.exp, e.status) for e in events if isinstance(e, ev.Decision) and e.exp != 0]
    assert decisions == [(1, "rerun"), (1, "discard"), (2, "keep")]
    noise = [e for e in events if isinstance(e, ev.NoiseEstimate)]
    assert noise[0].samples == 2 and abs(noise[0].sd - math.sqrt(0.0002)) < 1e-9
    assert noise[-1].samples == 4  # the re-run candidate's two runs joined the estimate
    _, rows, _ = read_results(run_dir / "results.tsv")
    assert [r.status for r in rows] == ["keep", "discard", "keep"]
    assert "within noise band" in rows[1].rule and "clears noise band" in rows[2].rule
    assert (run_dir / "logs" / "1.2.log").exists()
