"""On a Ray node the engine's limits travel with the trial and the node's own
executor applies them (the node's code path, without starting a cluster)."""

from __future__ import annotations

import asyncio
import io
import tarfile
import textwrap
from pathlib import Path

from ar_tui.core.executors.base import RunSpec, TrialPlan
from ar_tui.core.executors.limits import RunLimits
from ar_tui.core.executors.node import _node_steps, node_confinement
from ar_tui.core.sandbox.policy import NodeConfinement

HOG = textwrap.dedent(
    """\
    hoard = []
    while True:
        hoard.append(bytearray(16 << 20))
    """
)


def bundle(files: dict[str, str]) -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return data.getvalue()


async def test_a_memory_hog_on_a_node_ends_at_the_engines_memory_limit(tmp_path: Path) -> None:
    training = RunSpec(command="unused", cwd=tmp_path, env={}, log_path=tmp_path / "unused.log", timeout_s=30,
                       limits=RunLimits(memory=150 << 20, processes=64, writes=64 << 20))
    plan = TrialPlan(training=training, protected_hashes={}, run_template="python train.py",
                     run_marker=str(tmp_path / "engine-run"), confinement=NodeConfinement(mode="off"))
    trial_dir = tmp_path / "node-trial"
    trial_dir.mkdir()
    steps = await _node_steps(plan, bundle({"train.py": HOG}), trial_dir, node_confinement(plan),
                              lambda text, replace: None, asyncio.Event(), lambda: None)
    assert steps.training.exit_code != 0
    assert steps.training.limit.startswith("memory limit of 150 MiB reached")
