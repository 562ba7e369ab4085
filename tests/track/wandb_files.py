"""W&B's offline runs read back: each `run-ID.wandb` file is a log of the
client's own protobuf records (`wandb.proto.wandb_internal_pb2.Record`) in
LevelDB's log framing; the framing is read here, the records are W&B's."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

BLOCK = 32 * 1024
HEADER = 7  # ":W&B", a two-byte magic, a version byte
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[Any]:
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a W&B run file"
    position, pending = HEADER, b""
    while position + 7 <= len(data):
        if BLOCK - position % BLOCK < 7:  # a block's tail too short for a header is padding
            position += BLOCK - position % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        chunk = data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending + chunk)
            pending = b""
            yield record
        elif kind in (FIRST, MIDDLE):
            pending += chunk
        else:
            break


@dataclass
class OfflineRun:
    id: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[tuple[str, list[str]]] = field(default_factory=list)  # (name, file paths)
    exit_code: int | None = None


def _items(items) -> dict[str, Any]:
    # A key is `key`, or `nested_key` for the ones the client nests ("_wandb.runtime").
    return {item.key or ".".join(item.nested_key): json.loads(item.value_json) for item in items}


def read_offline_runs(wandb_dir: Path) -> list[OfflineRun]:
    """Every offline run file under `wandb_dir`, in the order written (a
    resumed run appears once per process that wrote to it)."""
    runs = []
    for path in sorted(Path(wandb_dir).glob("offline-run-*/run-*.wandb")):
        run = OfflineRun()
        for record in records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run.id, run.name = record.run.run_id, record.run.display_name
                run.group, run.job_type, run.tags = record.run.run_group, record.run.job_type, list(record.run.tags)
                run.config.update(_items(record.run.config.update))
            elif kind == "config":
                run.config.update(_items(record.config.update))
            elif kind == "summary":
                run.summary.update(_items(record.summary.update))
            elif kind == "history":
                run.history.append(_items(record.history.item))
            elif kind == "artifact":
                run.artifacts.append((record.artifact.name, [entry.path for entry in record.artifact.manifest.contents]))
            elif kind == "exit":
                run.exit_code = record.exit.exit_code
        runs.append(run)
    return runs
