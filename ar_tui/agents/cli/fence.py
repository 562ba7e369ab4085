"""The real fence around an agent CLI's session: what it changed, kept or put back.

A CLI edits files with its own tools, so ar-tui's `Workspace` never sees the
edits as they happen. Its permission rules are a first fence only (Claude Code
in `acceptEdits` mode writes `prepare.py` when asked). So the target dir is
photographed before the session (`Fence.take`) and compared after it
(`Fence.settle`): a change to an editable, unprotected plain file is the
proposal; every other change (a protected file, a file outside the editable
set, a new file, a symlink, the worktree's `.git` file that would point git at
a hooks dir of the agent's making) is put back byte for byte, and named.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

# Files are kept in memory to put them back; a target dir is code, a few
# hundred KB. Past this, a changed file is reported as not restorable and the
# engine's reset before the next proposal puts it back instead.
MAX_KEPT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class _Entry:
    kind: str  # "file", "link", "dir"
    signature: tuple[int, int, int]  # mode, size, mtime_ns
    data: bytes | None = None  # a file's bytes, a link's target (encoded)


@dataclass
class Settlement:
    honest: list[str]  # editable files the session changed: the proposal
    reverted: list[tuple[str, str]]  # (path, why) put back
    unrestorable: list[str]  # changed and too large to have been kept


class Fence:
    def __init__(self, root: Path, editable: list[str], protected: list[str]) -> None:
        self.root = Path(root)
        self.editable = set(editable)
        self.protected = set(protected)
        self.before: dict[str, _Entry] = {}

    def _scan(self, keep_bytes: bool) -> dict[str, _Entry]:
        entries: dict[str, _Entry] = {}
        budget = MAX_KEPT_BYTES
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            base = Path(dirpath)
            for name in dirnames + filenames:
                full = base / name
                rel = full.relative_to(self.root).as_posix()
                try:
                    info = full.lstat()
                except OSError:
                    continue
                signature = (info.st_mode, info.st_size, info.st_mtime_ns)
                if stat.S_ISLNK(info.st_mode):
                    entries[rel] = _Entry("link", signature, os.readlink(full).encode())
                elif stat.S_ISDIR(info.st_mode):
                    entries[rel] = _Entry("dir", signature)
                else:
                    data = None
                    if keep_bytes and info.st_size <= budget:
                        try:
                            data = full.read_bytes()
                            budget -= len(data)
                        except OSError:
                            data = None
                    entries[rel] = _Entry("file", signature, data)
            # A symlinked dir is listed above as a link and not walked into.
            dirnames[:] = [d for d in dirnames if not (base / d).is_symlink()]
        return entries

    def take(self) -> None:
        self.before = self._scan(keep_bytes=True)

    def _changed(self, rel: str, old: _Entry | None, new: _Entry | None) -> bool:
        if old is None or new is None:
            return old is not new
        if old.kind != new.kind:
            return True
        if old.kind == "dir":
            return False  # its entries are compared one by one
        if old.kind == "link":
            return old.data != new.data
        if old.signature == new.signature:
            return False
        if old.data is None:
            return True
        try:
            return (self.root / rel).read_bytes() != old.data
        except OSError:
            return True

    def _why_not(self, rel: str, new: _Entry | None) -> str | None:
        """None when the change is honest, else why it is put back."""
        if rel in self.protected:
            return "protected"
        if rel not in self.editable:
            return "not an editable file"
        if new is None:
            return "an editable file may be edited, not deleted"
        if new.kind != "file":
            return f"an editable file must stay a plain file, not a {new.kind}"
        return None

    def settle(self) -> Settlement:
        after = self._scan(keep_bytes=False)
        honest: list[str] = []
        reverted: list[tuple[str, str]] = []
        unrestorable: list[str] = []
        # Deepest first, so that a new dir is emptied before it is removed
        # and an old dir exists again before its files are put back.
        names = sorted(set(self.before) | set(after), key=lambda r: (-r.count("/"), r))
        for rel in names:
            old, new = self.before.get(rel), after.get(rel)
            if not self._changed(rel, old, new):
                continue
            why = self._why_not(rel, new)
            if old is None and new is not None and new.kind == "dir" and not any(
                    other.startswith(rel + "/") for other in after):
                # An empty dir left behind (the mount points of Codex's own
                # sandbox when its session is killed): removed, not news.
                self._remove(self.root / rel)
                continue
            if why is None:
                honest.append(rel)
                continue
            if old is not None and old.kind == "file" and old.data is None:
                unrestorable.append(rel)
                continue
            self._remove(self.root / rel)
            reverted.append((rel, why))
        for rel in sorted(r for r, e in self.before.items() if e.kind == "dir"):
            (self.root / rel).mkdir(parents=True, exist_ok=True)
        for rel, why in reverted:
            old = self.before.get(rel)
            if old is not None:
                self._restore(rel, old)
        return Settlement(sorted(honest), sorted(reverted), sorted(unrestorable))

    def put_back(self, rel: str) -> bool:
        """Put one file back as it was before the session; False when it was not kept."""
        old = self.before.get(rel)
        if old is not None and old.kind == "file" and old.data is None:
            return False
        self._remove(self.root / rel)
        if old is not None:
            self._restore(rel, old)
        return True

    @staticmethod
    def _remove(path: Path) -> None:
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path, ignore_errors=True)

    def _restore(self, rel: str, old: _Entry) -> None:
        full = self.root / rel
        full.parent.mkdir(parents=True, exist_ok=True)
        if old.kind == "dir":
            full.mkdir(exist_ok=True)
        elif old.kind == "link":
            assert old.data is not None
            os.symlink(old.data.decode(), full)
        else:
            assert old.data is not None
            full.write_bytes(old.data)
            os.chmod(full, stat.S_IMODE(old.signature[0]))
