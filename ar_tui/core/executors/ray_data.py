"""`[target] data` on a Ray cluster: the engine's checkout holds the data;
a node uses it where it sees the same files at the same path (a shared
filesystem), and otherwise gets one copy, sent once per node with the
commit bundle. Either way every file is checked by size and SHA-256
against the engine's manifest before any run reads it.

The engine makes the manifest and the tar once per start (`DataParcel`);
the tar goes into Ray's object store once and each node fetches it at most
once (`node_data` keeps it under the node's run dir, with a stamp).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ar_tui.core.errors import UserError

CHUNK = 1 << 20


class DataMismatch(UserError):
    """The data a node would read is not the engine's; one line."""


@dataclass(frozen=True)
class Manifest:
    files: tuple[tuple[str, int, str], ...]  # target-relative path, size, sha256
    folders: tuple[str, ...]  # data paths that are folders (made on the node even when empty)

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps([self.files, self.folders]).encode()).hexdigest()[:16]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files_of(root: Path, rel: str) -> list[str]:
    path = root / rel
    if path.is_dir():
        found = []
        for folder, _, names in os.walk(path, followlinks=True):
            for name in sorted(names):
                found.append((Path(folder) / name).relative_to(root).as_posix())
        return sorted(found)
    return [rel] if path.exists() else []


def make_manifest(root: Path, data: Sequence[str]) -> Manifest:
    """Every file of the data paths under `root`, with its size and hash."""
    root = Path(root)
    files = tuple((rel, (root / rel).stat().st_size, _sha256(root / rel))
                  for d in data for rel in _files_of(root, d))
    return Manifest(files, tuple(d for d in data if (root / d).is_dir()))


def pack(root: Path, manifest: Manifest) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for rel, _, _ in manifest.files:
            tar.add(str(Path(root) / rel), arcname=rel, recursive=False)
    return buffer.getvalue()


def mismatch(root: Path, manifest: Manifest) -> str | None:
    """The first file under `root` that differs from the manifest, as a line; None when all match."""
    for rel, size, sha in manifest.files:
        path = Path(root) / rel
        if not path.is_file():
            return f"{rel} is missing"
        if path.stat().st_size != size:
            return f"{rel} is {path.stat().st_size} bytes, the engine's {size}"
        if _sha256(path) != sha:
            return f"{rel} differs from the engine's (sha256)"
    return None


def node_data(source: str, manifest: Manifest, node_root: Path, fetch: Callable[[], bytes]) -> Path:
    """The folder on this node that holds the data at its relative paths:
    `source` (the engine's checkout) when this node sees it with the same
    files, else a copy made once per node from `fetch()` (the engine's tar)."""
    node_root.mkdir(parents=True, exist_ok=True)
    copy = node_root / f"data-{manifest.digest}"
    shared_stamp = node_root / f"data-{manifest.digest}.shared"
    copy_stamp = node_root / f"data-{manifest.digest}.copied"
    with open(node_root / "data.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if shared_stamp.exists():
            return Path(source)
        if copy_stamp.exists():
            return copy
        if Path(source).is_dir() and mismatch(Path(source), manifest) is None:
            shared_stamp.write_text("the engine's checkout, seen here\n")
            return Path(source)
        shutil.rmtree(copy, ignore_errors=True)
        copy.mkdir()
        with tarfile.open(fileobj=io.BytesIO(fetch())) as tar:
            tar.extractall(copy, filter="data")
        for folder in manifest.folders:
            (copy / folder).mkdir(parents=True, exist_ok=True)
        wrong = mismatch(copy, manifest)
        if wrong is not None:
            shutil.rmtree(copy, ignore_errors=True)
            raise DataMismatch(f"[target] data arrived damaged on this node: {wrong}")
        copy_stamp.write_text("sent by the engine, checked by size and sha256\n")
        return copy
