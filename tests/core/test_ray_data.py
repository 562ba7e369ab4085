"""`[target] data` on a Ray node (ar_tui/core/executors/ray_data.py): the
engine's checkout where the node sees it with the same files, else one copy
per node, every file checked by size and SHA-256. Real files, real tars;
`fetch` stands in for the object store's get, counted."""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from ar_tui.core.executors.base import RunSpec, TrialPlan
from ar_tui.core.executors.node import NODE_ROOT_ENV, node_trial
from ar_tui.core.executors.ray_data import DataMismatch, make_manifest, node_data, pack
from tests.init.repos import char_gpt

DATA = "data/shakespeare_char"


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    return char_gpt(tmp_path / "checkout")


class Fetch:
    def __init__(self, parcel: bytes) -> None:
        self.parcel = parcel
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        return self.parcel


def test_the_manifest_holds_every_file_with_its_size(checkout: Path) -> None:
    manifest = make_manifest(checkout, [DATA])
    assert [rel for rel, _, _ in manifest.files] == [f"{DATA}/meta.json", f"{DATA}/train.bin", f"{DATA}/val.bin"]
    assert all(size == (checkout / rel).stat().st_size for rel, size, _ in manifest.files)
    assert manifest.folders == (DATA,)


def test_a_node_that_sees_the_checkout_uses_it_and_fetches_nothing(checkout: Path, tmp_path: Path) -> None:
    manifest = make_manifest(checkout, [DATA])
    fetch = Fetch(pack(checkout, manifest))
    assert node_data(str(checkout), manifest, tmp_path / "node", fetch) == checkout
    assert fetch.calls == 0


def test_elsewhere_the_data_is_sent_once_per_node(checkout: Path, tmp_path: Path) -> None:
    manifest = make_manifest(checkout, [DATA])
    fetch = Fetch(pack(checkout, manifest))
    unseen = str(tmp_path / "not-on-this-node")
    first = node_data(unseen, manifest, tmp_path / "node", fetch)
    second = node_data(unseen, manifest, tmp_path / "node", fetch)  # the node's next trial
    assert first == second and fetch.calls == 1
    for rel, _, _ in manifest.files:
        assert (first / rel).read_bytes() == (checkout / rel).read_bytes()
    # Another node fetches its own copy.
    node_data(unseen, manifest, tmp_path / "other-node", fetch)
    assert fetch.calls == 2


def test_a_shared_path_holding_other_data_is_not_used(checkout: Path, tmp_path: Path) -> None:
    manifest = make_manifest(checkout, [DATA])
    parcel = pack(checkout, manifest)
    with open(checkout / DATA / "val.bin", "ab") as handle:  # what this node sees at that path differs
        handle.write(b"\x00\x01")
    fetch = Fetch(parcel)
    found = node_data(str(checkout), manifest, tmp_path / "node", fetch)
    assert found != checkout and fetch.calls == 1


def test_a_damaged_copy_is_refused_in_one_line_and_not_kept(checkout: Path, tmp_path: Path) -> None:
    manifest = make_manifest(checkout, [DATA])
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for rel, _, _ in manifest.files:
            payload = (checkout / rel).read_bytes()
            if rel.endswith("train.bin"):
                payload = payload[:-2] + bytes([payload[-2] ^ 1, payload[-1]])  # same size, one bit off
            info = tarfile.TarInfo(rel)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(DataMismatch) as caught:
        node_data(str(tmp_path / "unseen"), manifest, tmp_path / "node", Fetch(buffer.getvalue()))
    assert str(caught.value) == f"[target] data arrived damaged on this node: {DATA}/train.bin differs from the engine's (sha256)"
    assert not list((tmp_path / "node").glob("data-*"))


def test_a_trial_on_a_node_that_does_not_see_the_checkout_reads_the_sent_copy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The node side whole (`node_trial`, Ray-free): its training run, confined
    as the engine's default confines it, reads the data through the link to the
    copy that the executor's fetch brought, fetched once."""
    checkout = char_gpt(tmp_path / "checkout")
    code = subprocess.run(["git", "-C", str(checkout), "archive", "--format=tar", "HEAD"], check=True,
                          capture_output=True).stdout
    monkeypatch.setenv(NODE_ROOT_ENV, str(tmp_path / "node"))
    manifest = make_manifest(checkout, [DATA])
    fetch = Fetch(pack(checkout, manifest))
    read_data = f'import os; print("val_bpb:", os.path.getsize(os.path.join("{DATA}", "train.bin")))'
    plan = TrialPlan(
        training=RunSpec(command="", cwd=tmp_path, env={}, log_path=tmp_path / "unused.log", timeout_s=60,
                         patterns={"metric": re.compile(r"val_bpb:\s*(\d+)")}),
        protected_hashes={}, run_template=f"python -c '{read_data}'", run_marker=str(tmp_path / "run"),
        data=(DATA,), data_source=str(tmp_path / "not-on-this-node"), data_manifest=manifest)
    items = list(node_trial(plan, code, "node-1", fetch))
    assert items[0][0] == "node" and items[-1][0] == "done", items
    steps = items[-1][1]
    assert steps.training.exit_code == 0, steps.training.tail
    assert steps.training.matches["metric"] == str((checkout / DATA / "train.bin").stat().st_size)
    assert fetch.calls == 1
