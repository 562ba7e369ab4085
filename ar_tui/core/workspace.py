"""The one path through which a proposer touches files.

It implements the commands of Anthropic's text editor tool (view, str_replace,
create, insert) confined to the target's editable files, so the Claude agent
and the offline proposer edit through the same code, and a hostile or broken
request gets a clear error instead of touching anything else.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MAX_FILE_BYTES = 512 * 1024
EDITOR_TOOL_NAME = "str_replace_based_edit_tool"  # the text editor tool whose commands this implements


class WorkspaceError(Exception):
    """A refused edit; the message is shown to the agent as a tool error."""


class Workspace:
    def __init__(
        self,
        root: Path,
        editable: list[str],
        protected: list[str],
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    ) -> None:
        self.root = Path(root).resolve()
        self.editable = [self._normalise(p) for p in editable]
        self.protected = [self._normalise(p) for p in protected]
        self.max_file_bytes = max_file_bytes
        self.edits = 0

    @staticmethod
    def _normalise(rel: str) -> str:
        return os.path.normpath(rel).replace(os.sep, "/")

    def resolve(self, path: str) -> tuple[str, Path]:
        """Map a path the agent gave to (relative name, real path), refusing
        anything that is not one of the editable files."""
        if not isinstance(path, str) or not path.strip():
            raise WorkspaceError("path must be a non-empty string")
        raw = path.strip()
        candidate = Path(raw)
        if candidate.is_absolute():
            # Accept an absolute path only when it names a file inside the root
            # (agents often echo back the absolute path they were shown).
            try:
                rel = candidate.relative_to(self.root).as_posix()
            except ValueError:
                raise WorkspaceError(f"{raw}: outside the target; editable files: {', '.join(self.editable)}")
        else:
            rel = candidate.as_posix()
        rel = os.path.normpath(rel).replace(os.sep, "/")
        if rel.startswith("../") or rel == "..":
            raise WorkspaceError(f"{raw}: outside the target; editable files: {', '.join(self.editable)}")
        if rel in self.protected:
            raise WorkspaceError(f"{rel} is protected and may not be viewed for editing or changed")
        if rel not in self.editable:
            raise WorkspaceError(f"{rel} is not editable; editable files: {', '.join(self.editable)}")
        full = self.root / rel
        # A symlink could point anywhere; the editable file must be a plain file
        # inside the root.
        if full.is_symlink():
            raise WorkspaceError(f"{rel} is a symbolic link; refusing to follow it")
        if not full.resolve().is_relative_to(self.root):
            raise WorkspaceError(f"{rel}: resolves outside the target")
        return rel, full

    def read(self, path: str) -> str:
        rel, full = self.resolve(path)
        if not full.exists():
            raise WorkspaceError(f"{rel} does not exist")
        return full.read_text(encoding="utf-8", errors="replace")

    def _write(self, rel: str, full: Path, text: str) -> None:
        size = len(text.encode("utf-8"))
        if size > self.max_file_bytes:
            raise WorkspaceError(
                f"{rel} would be {size} bytes, over the cap of {self.max_file_bytes}; nothing was written"
            )
        full.parent.mkdir(parents=True, exist_ok=True)
        tmp = full.with_name(full.name + ".ar-tui-tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, full)
        self.edits += 1

    def view(self, path: str, view_range: list[int] | None = None) -> str:
        text = self.read(path)
        lines = text.split("\n")
        start, end = 1, len(lines)
        if view_range is not None:
            if (
                not isinstance(view_range, list)
                or len(view_range) != 2
                or not all(isinstance(v, int) for v in view_range)
            ):
                raise WorkspaceError("view_range must be [start, end] with integers")
            start = max(1, view_range[0])
            end = len(lines) if view_range[1] == -1 else min(len(lines), view_range[1])
            if start > end:
                raise WorkspaceError(f"view_range {view_range} is empty; the file has {len(lines)} lines")
        return "\n".join(f"{i:6d}\t{lines[i - 1]}" for i in range(start, end + 1))

    def str_replace(self, path: str, old_str: str, new_str: str) -> str:
        if not isinstance(old_str, str) or not isinstance(new_str, str):
            raise WorkspaceError("old_str and new_str must be strings")
        if old_str == "":
            raise WorkspaceError("old_str must not be empty")
        rel, full = self.resolve(path)
        text = self.read(path)
        count = text.count(old_str)
        if count == 0:
            raise WorkspaceError(f"old_str not found in {rel}; nothing was changed")
        if count > 1:
            raise WorkspaceError(
                f"old_str occurs {count} times in {rel}; include more context to make it unique"
            )
        self._write(rel, full, text.replace(old_str, new_str, 1))
        return f"edited {rel}"

    def create(self, path: str, file_text: str) -> str:
        if not isinstance(file_text, str):
            raise WorkspaceError("file_text must be a string")
        rel, full = self.resolve(path)
        self._write(rel, full, file_text)
        return f"wrote {rel}"

    def insert(self, path: str, insert_line: int, text: str) -> str:
        if not isinstance(insert_line, int) or isinstance(insert_line, bool):
            raise WorkspaceError("insert_line must be an integer")
        if not isinstance(text, str):
            raise WorkspaceError("the text to insert must be a string")
        rel, full = self.resolve(path)
        lines = self.read(path).split("\n")
        if not 0 <= insert_line <= len(lines):
            raise WorkspaceError(f"insert_line {insert_line} is outside 0..{len(lines)}")
        new_lines = text.split("\n")
        if text.endswith("\n"):
            new_lines = new_lines[:-1]
        lines[insert_line:insert_line] = new_lines
        self._write(rel, full, "\n".join(lines))
        return f"inserted {len(new_lines)} line(s) into {rel} after line {insert_line}"
