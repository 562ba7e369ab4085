"""Data that git ignores: the target's `[target] data` paths.

Research repositories keep their prepared data inside the checkout, in a
folder `.gitignore` excludes (`data/shakespeare/train.bin`), and the training
script opens it by relative path. Experiments run in git worktrees, which hold
tracked files only, so each worktree (and the trusted evaluator's clean
export) gets a link at the same relative path to the data in the user's
checkout. The link is what makes the data visible; the sandbox makes it
read-only (`run_policy.Confinement`: a read-only bind mount of the data under
bubblewrap, a read rule and no write rule under Landlock), and `prepare` is
the only command that may write it.

The engine's git never takes them (`GitRepo` excludes them from every
`git add` and `git clean`), and every reset puts the links back, whatever a
run did to them.

When a run dies with "No such file or directory" for a path the user's
checkout holds but git does not track, `missing_data_hint` names the key to
add.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Sequence

from ar_tui.core.errors import UserError

# `FileNotFoundError: [Errno 2] No such file or directory: 'data/x/train.bin'`
# (Python), and `cat: data/x/train.bin: No such file or directory` (tools).
_MISSING_FILE = re.compile(r"No such file or directory: '([^']+)'|(?:^|\s)([^\s:']+): No such file or directory",
                           re.MULTILINE)


class DataError(UserError):
    """A `[target] data` path that cannot be shared; the message is one line."""


def data_sources(root: Path, data: Sequence[str]) -> list[Path]:
    """The data paths in the user's checkout, absolute and resolved."""
    return [Path(os.path.realpath(Path(root) / rel)) for rel in data]


def link_data(target_dir: Path, root: Path, data: Sequence[str]) -> None:
    """Put a link to each of the checkout's data paths at the same relative
    path under `target_dir` (a worktree's or an export's target dir),
    replacing whatever a run left there. Never touches the checkout itself."""
    target_dir, root = Path(target_dir), Path(root)
    if not data or os.path.realpath(target_dir) == os.path.realpath(root):
        return
    inside = os.path.realpath(target_dir)
    for rel in data:
        link = target_dir / rel
        # Resolved: inside a sandbox only the data itself is there, not a
        # link of the checkout's that leads to it.
        source = Path(os.path.realpath(root / rel))
        _real_parents(link, target_dir, inside)
        if link.is_symlink():
            if os.readlink(link) == str(source):
                continue
            link.unlink()
        elif link.is_dir():
            shutil.rmtree(link)
        elif link.exists():
            link.unlink()
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source, target_is_directory=source.is_dir())


def _real_parents(link: Path, target_dir: Path, inside: str) -> None:
    """Each folder between `target_dir` and the link is a real folder of the
    worktree: a link a run put in its place is removed, so that nothing the
    engine does next reaches outside the worktree through it."""
    path = target_dir
    for part in link.relative_to(target_dir).parts[:-1]:
        path = path / part
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            path.unlink()
        elif path.exists() and not os.path.realpath(path).startswith(inside.rstrip("/") + "/"):
            raise DataError(f"{path}: leaves the worktree")


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=60)


def tracked_under(root: Path, rel: str) -> list[str]:
    """The files git tracks at or under `rel` in the checkout."""
    result = _git(root, "ls-files", "--", rel)
    return [line for line in result.stdout.splitlines() if line.strip()]


def is_ignored(root: Path, rel: str) -> bool:
    return _git(root, "check-ignore", "-q", "--", rel).returncode == 0


def check_data(root: Path, data: Sequence[str], prepare: str | None) -> None:
    """Refuse data paths that hold tracked files (the worktree has them
    already: a link cannot take their place) and, without a `prepare` that
    makes them, data paths the checkout does not hold. With one, a missing
    folder (a path without a suffix) is created for it to fill."""
    for rel in data:
        tracked = tracked_under(root, rel)
        if tracked:
            raise DataError(f"[target] data: {rel} holds files git tracks ({tracked[0]}); name only what git ignores, "
                            f"e.g. the files or the folder beside it")
        source = Path(root) / rel
        if os.path.lexists(source):
            continue
        if not prepare:
            raise DataError(f"[target] data: {rel} is not in {root}; run the repository's data preparation there "
                            "first (or set [target] prepare)")
        if not source.suffix:
            source.mkdir(parents=True, exist_ok=True)


def check_prepared(root: Path, data: Sequence[str]) -> None:
    """After `prepare`: every data path is there."""
    for rel in data:
        if not os.path.lexists(Path(root) / rel):
            raise DataError(f"[target] data: {rel} is not in {root} after prepare; the prepare command must make it")


def missing_paths(tail: str) -> list[str]:
    """The paths a log says were not found, in order."""
    return [m.group(1) or m.group(2) for m in _MISSING_FILE.finditer(tail)]


def missing_data(tail: str, root: Path, cwd: Path, data: Sequence[str] = ()) -> tuple[str, str, bool] | None:
    """For a run (in `cwd`, the target dir of its worktree) that died on a
    path the checkout (`root`) holds and git does not track: that path, what
    to add to `[target] data` (its folder when the folder holds no tracked
    file, else the path itself), and whether git ignores it."""
    for found in missing_paths(tail):
        rel = _relative(found, Path(cwd))
        if rel is None or any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in data):
            continue
        if not os.path.lexists(Path(root) / rel) or _git(root, "ls-files", "--error-unmatch", "--", rel).returncode == 0:
            continue
        folder = os.path.dirname(rel)
        suggest = folder if folder and not tracked_under(root, folder) else rel
        return rel, suggest, is_ignored(root, rel)
    return None


def missing_data_hint(tail: str, root: Path, cwd: Path, data: Sequence[str] = ()) -> str | None:
    """The crash line's hint for `missing_data`."""
    found = missing_data(tail, root, cwd, data)
    if found is None:
        return None
    rel, suggest, ignored = found
    why = "git ignores it" if ignored else "git does not track it"
    return f'{rel} exists in your checkout but {why}; add [target] data = ["{suggest}"]'


def _relative(path: str, cwd: Path) -> str | None:
    """`path` relative to the run's target dir, or None when it is elsewhere."""
    if os.path.isabs(path):
        for base in {str(cwd), os.path.realpath(cwd)}:
            if path.startswith(base.rstrip("/") + "/"):
                path = path[len(base.rstrip("/")) + 1:]
                break
        else:
            return None
    rel = os.path.normpath(path)
    return None if rel.startswith("..") or rel == "." else rel
