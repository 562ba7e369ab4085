"""The fence after an agent CLI's session (`ar_tui/agents/cli/fence.py`), on a real dir."""

from __future__ import annotations

import os
from pathlib import Path

from ar_tui.agents.cli.fence import Fence


def tree(root: Path) -> Path:
    root.mkdir()
    (root / "train.py").write_text("LR = 0.5\n")
    (root / "model.py").write_text("WIDTH = 64\n")
    (root / "prepare.py").write_text("DATA = 42\n")
    (root / ".git").write_text("gitdir: /somewhere/.git/worktrees/propose\n")
    (root / "pkg").mkdir()
    (root / "pkg" / "util.py").write_text("X = 1\n")
    os.chmod(root / "prepare.py", 0o640)
    return root


def test_honest_edits_stay_and_everything_else_is_put_back(tmp_path: Path):
    root = tree(tmp_path / "t")
    fence = Fence(root, ["train.py", "model.py"], ["prepare.py"])
    fence.take()
    (root / "train.py").write_text("LR = 0.4\n")
    (root / "prepare.py").write_text("DATA = 0\n")
    (root / ".git").write_text("gitdir: /tmp/evil\n")
    (root / "pkg" / "util.py").unlink()
    (root / "sitecustomize.py").write_text("import os\n")
    (root / "new").mkdir()
    (root / "new" / "hook.sh").write_text("#!/bin/sh\n")
    (root / "model.py").unlink()
    os.symlink("/etc/passwd", root / "model.py")

    settled = fence.settle()

    assert settled.honest == ["train.py"]
    assert dict(settled.reverted) == {
        ".git": "not an editable file", "model.py": "an editable file must stay a plain file, not a link",
        "new": "not an editable file", "new/hook.sh": "not an editable file", "pkg/util.py": "not an editable file",
        "prepare.py": "protected", "sitecustomize.py": "not an editable file"}
    assert (root / "train.py").read_text() == "LR = 0.4\n"
    assert (root / "prepare.py").read_text() == "DATA = 42\n" and (root / "prepare.py").stat().st_mode & 0o777 == 0o640
    assert (root / ".git").read_text().startswith("gitdir: /somewhere")
    assert (root / "pkg" / "util.py").read_text() == "X = 1\n"
    assert not (root / "model.py").is_symlink() and (root / "model.py").read_text() == "WIDTH = 64\n"
    assert sorted(p.name for p in root.iterdir()) == [".git", "model.py", "pkg", "prepare.py", "train.py"]


def test_an_untouched_tree_settles_to_nothing_and_an_empty_new_dir_goes_quietly(tmp_path: Path):
    root = tree(tmp_path / "t")
    fence = Fence(root, ["train.py"], ["prepare.py"])
    fence.take()
    (root / "train.py").write_text("LR = 0.5\n")  # rewritten with the same bytes: no change
    (root / ".codex").mkdir()
    settled = fence.settle()
    assert (settled.honest, settled.reverted, settled.unrestorable) == ([], [], [])
    assert not (root / ".codex").exists()


def test_a_deleted_editable_file_is_put_back(tmp_path: Path):
    root = tree(tmp_path / "t")
    fence = Fence(root, ["train.py"], [])
    fence.take()
    (root / "train.py").unlink()
    settled = fence.settle()
    assert settled.reverted == [("train.py", "an editable file may be edited, not deleted")]
    assert (root / "train.py").read_text() == "LR = 0.5\n"
