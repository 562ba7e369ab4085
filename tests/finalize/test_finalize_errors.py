"""Bad input to `ar-tui finalize`: one clear line, nothing written."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import git
from tests.finalize.synthetic import finalize, flip, night


def test_a_dir_that_is_not_a_run_dir_is_refused_in_one_line(tmp_path: Path) -> None:
    result = finalize(tmp_path / "nowhere")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "no results.tsv here" in result.stderr


async def test_drop_null_needs_an_ablation_and_a_foreign_branch_is_not_replaced(tmp_path: Path) -> None:
    target, run_dir, _ = await night(tmp_path, steps=[flip("GAIN_A")], forced="")
    result = finalize(run_dir, "--drop-null")
    assert result.returncode == 2 and "--drop-null needs --ablate" in result.stderr
    git(target, "branch", "mine", "main")
    result = finalize(run_dir, "--into", "mine")
    assert result.returncode == 2 and "was not written by ar-tui finalize" in result.stderr
    assert not (run_dir / "PR.md").exists()
    assert git(target, "log", "--format=%s", "mine").splitlines() == ["initial"]
    # A branch finalize wrote is replaced when it runs again.
    assert finalize(run_dir).returncode == 0
    assert finalize(run_dir).returncode == 0
    assert git(target, "log", "--format=%s", "autoresearch/syn-final").splitlines() == ["GAIN_A 0 -> 1", "initial"]
