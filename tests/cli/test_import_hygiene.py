"""`ar-tui status` and `ar-tui ls` import neither the engine nor GitPython
(nor a UI toolkit, nor the SDK), and the app does not import the CLI: proven
in fresh interpreters, on a real run dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ar_tui.core import events as ev
from ar_tui.core.records.rundir import RunDir
from tests.conftest import ROOT

# The agents' registry is imported (for --agent's choices); the agents are not.
HEAVY = ("ar_tui.core.engine", "git", "textual", "rich", "anthropic", "ar_tui.ui", "ar_tui.agents.offline",
         "ar_tui.agents.llm", "ar_tui.agents.single", "openai", "matplotlib", "torch")


def _a_stopped_run(run_dir: Path) -> None:
    run_dir.mkdir(parents=True)
    started = ev.RunStarted(tag="quiet", target="/t", run_dir=str(run_dir), agent="offline", model=None,
                            metric="val_bpb", direction="min", attended=False, veto_window_s=60.0, slots=["cpu"],
                            lookahead=0, resumed=False, budget_usd=None, max_experiments=1, hours=None,
                            time_budget_s=5.0)
    stopped = ev.RunStopped(reason="max experiments (1) reached", experiments=1, kept=0, best_metric=1.0,
                            baseline_metric=1.0, improvement_pct=0.0, cost_usd=0.0)
    RunDir(run_dir).events.write_text(started.to_json() + "\n" + stopped.to_json() + "\n")


@pytest.mark.parametrize("command", [["status"], ["ls"], ["status", "--json"]])
def test_status_and_ls_import_no_engine_and_no_git(command: list[str], isolated_home: Path) -> None:
    _a_stopped_run(isolated_home / "runs" / "quiet")
    code = (
        "import sys\n"
        "from ar_tui.cli import main\n"
        f"code = main({command!r})\n"
        f"heavy = sorted(m for m in sys.modules if any(m == h or m.startswith(h + '.') for h in {HEAVY!r}))\n"
        "print('HEAVY', heavy)\n"
        "sys.exit(code or (3 if heavy else 0))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            env=dict(os.environ, AR_TUI_HOME=str(isolated_home)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "HEAVY []" in result.stdout
    assert "quiet" in result.stdout  # it did look at the run


def test_the_app_does_not_import_the_cli() -> None:
    code = ("import sys\nimport ar_tui.ui.app, ar_tui.ui.attached_app\n"
            "sys.exit(1 if 'ar_tui.cli' in sys.modules else 0)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
