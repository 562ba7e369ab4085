"""The bundled nanochat target lives in a git repository of its own."""

from __future__ import annotations

from pathlib import Path

from ar_tui.core import targets
from tests.conftest import git


def test_bundled_target_is_materialised_once_and_follows_a_newer_bundle(isolated_home: Path, tmp_path: Path,
                                                                         monkeypatch) -> None:
    repo = targets.materialize_bundled()
    assert repo == isolated_home / "targets" / "nanochat"
    for name in targets.BUNDLED_FILES:
        assert (repo / name).read_bytes() == (targets.bundled_source() / name).read_bytes()
    assert git(repo, "status", "--porcelain").strip() == ""
    git(repo, "branch", "autoresearch/old-night")
    first = git(repo, "rev-parse", "HEAD").strip()

    assert targets.materialize_bundled() == repo
    assert git(repo, "rev-parse", "HEAD").strip() == first  # unchanged bundle: nothing to do

    # A newer ar-tui ships a different train.py: main follows, experiment branches stay.
    newer = tmp_path / "newer"
    newer.mkdir()
    for name in targets.BUNDLED_FILES:
        (newer / name).write_bytes((targets.bundled_source() / name).read_bytes())
    (newer / "train.py").write_text((newer / "train.py").read_text() + "\n# newer\n")
    monkeypatch.setattr(targets, "bundled_source", lambda: newer)
    targets.materialize_bundled()
    assert (repo / "train.py").read_text().endswith("# newer\n")
    assert "train.py" in git(repo, "log", "-1", "--format=%s")
    assert git(repo, "rev-parse", "autoresearch/old-night").strip() == first
