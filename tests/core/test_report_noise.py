"""The report states the night's gain with an interval, the noise with its
degrees of freedom, each keep as solid or not, and spend by role: from a
real engine run on a seeded target."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from ar_tui.agents.scripted import ScriptedProposer, ScriptStep
from ar_tui.core.engine import Engine, EngineOptions
from ar_tui.report.build import build_report, report_as_dict
from ar_tui.report.markdown import render_markdown
from tests.conftest import ROOT, make_target

SEEDED = textwrap.dedent(
    """\
    import os, random
    LR = 0.5  # learning rate
    noise = random.Random(int(os.environ["AR_SEED"])).gauss(0, 0.01)
    print(f"val_bpb: {(LR - 0.3) ** 2 + 1.0 + noise:.6f}")
    """
)


async def test_report_json_has_the_interval_noise_and_spend_by_role(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target", train=SEEDED)
    run_dir = tmp_path / "run"
    # A gain of 0.09 (9 noise sds): kept, then confirmed on fresh runs at the end.
    engine = Engine(EngineOptions(target_dir=target, tag="r", run_dir=run_dir, attended=False, lookahead=0,
                                  baseline_runs=4, max_experiments=1),
                    ScriptedProposer([ScriptStep("LR 0.5 -> 0.2", "LR = 0.5", "LR = 0.2")]))
    stopped = await engine.run()
    assert not stopped.error, stopped.reason
    report = build_report(run_dir)
    assert report.kept == 1 and report.noise_sd is not None and report.noise_dof >= 3
    low, high = report.improvement_ci_pct
    assert 0 < low <= report.improvement_pct <= high
    assert "interval" in report.improvement_text
    assert report.cost_by_role == {} or set(report.cost_by_role) == {"agent"}
    assert report.rejected_before_training == 0
    markdown = render_markdown(report, chart=False)
    assert "over" in markdown and "dof" in markdown
    assert any(word in markdown for word in ("- solid", "- unconfirmed", "- not solid"))
    figures = json.loads(subprocess.run([sys.executable, "-m", "ar_tui.cli", "report", str(run_dir), "--json"],
                                        cwd=ROOT, capture_output=True, text=True, check=True).stdout)
    for key in ("improvement_pct", "improvement_ci_pct", "noise_sd", "noise_dof", "cost_by_role",
                "rejected_before_training"):
        assert key in figures
    assert figures["improvement_ci_pct"] == list(report.improvement_ci_pct)
    assert report_as_dict(report)["noise_dof"] == report.noise_dof
