"""The limit flags are the engine's run options: `ar-tui run` offers them,
the run stores them and says them at the start, a resume may change them, and
a bad value is one line with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ar_tui import cli
from ar_tui.core.records.rundir import RunDir

NIGHT = ["run", "--headless", "--unattended", "--baseline-runs", "1", "--lookahead", "0", "--sandbox", "off",
         "--agent", "offline"]


def test_the_limit_flags_are_stored_shown_and_adjustable_at_resume(tiny_target: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    run_dir = tmp_path / "run"
    code = cli.main([*NIGHT, "--target", str(tiny_target), "--run-dir", str(run_dir), "--max-experiments", "1",
                     "--limit-memory", "300MiB", "--limit-processes", "64", "--limit-writes", "none"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "limits per run: memory 300 MiB, 64 processes/threads, writes unlimited" in out
    extra = json.loads(RunDir(run_dir).options.read_text())["extra"]
    assert (extra["limit_memory"], extra["limit_processes"], extra["limit_writes"]) == ("300MiB", "64", "none")

    # Limits guard the machine, not the meaning of the results: a resume may change them.
    code = cli.main(["run", "--headless", "--run-dir", str(run_dir), "--max-experiments", "2",
                     "--limit-memory", "400MiB"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "limits per run: memory 400 MiB, 64 processes/threads" in out
    assert json.loads(RunDir(run_dir).options.read_text())["extra"]["limit_memory"] == "400MiB"


def test_a_bad_limit_is_one_line_and_exit_code_2(tiny_target: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    code = cli.main([*NIGHT, "--target", str(tiny_target), "--run-dir", str(tmp_path / "run"),
                     "--max-experiments", "1", "--limit-memory", "lots"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--limit-memory: a size like 8GiB or 512MiB, or none; not 'lots'" in err
