"""The headless summary's last lines: finalize is offered only for a night that kept something."""

from __future__ import annotations

from pathlib import Path

from ar_tui.core.records.rundir import RunDir
from ar_tui.headless import where_to_look


def test_finalize_is_offered_after_a_keep_and_not_after_a_night_that_kept_nothing(tmp_path: Path) -> None:
    paths = RunDir(tmp_path / "run")
    paths.path.mkdir()
    paths.ledger.write_text("commit\tval_bpb\n")
    assert "ar-tui finalize" in where_to_look(paths.path, kept=True)
    summary = where_to_look(paths.path, kept=False)
    assert "ar-tui finalize" not in summary
    assert summary.splitlines()[-1].startswith("open it in the app")
