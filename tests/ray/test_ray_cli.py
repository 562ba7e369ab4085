"""`ar-tui run --executor ray` from the command line: the one-line refusals,
and a Ray instance started for the run on this machine."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import ar_tui_command, make_target
from tests.ray.cluster import end_processes_naming, in_loopback_namespace

pytestmark = pytest.mark.system  # Ray in a network namespace: root


def test_an_address_that_does_not_answer_is_refused_in_one_line(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target")
    done = subprocess.run([*ar_tui_command(), "run", "--headless", "--executor", "ray", "--ray-address",
                           "127.0.0.1:1", "--target", str(target), "--agent", "offline", "--run-dir",
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == ["ar-tui: cannot reach the Ray cluster at 127.0.0.1:1: Connection refused"]
    assert not (tmp_path / "run" / "results.tsv").exists()


def test_a_ray_started_for_the_run_refuses_a_cluster_without_gpus_and_runs_cpu_slots(tmp_path: Path) -> None:
    import ray  # noqa: F401

    out = tmp_path / "cli.json"
    # Ray's socket paths must fit in 107 bytes: a short temp dir of its own.
    ray_tmp = Path(tempfile.mkdtemp(prefix="ar-ray-", dir="/tmp"))
    try:
        in_loopback_namespace(Path(__file__).with_name("cli_in_namespace.py"),
                              [str(out), str(tmp_path), str(ray_tmp)], 200)
    finally:
        end_processes_naming(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    if not out.exists():
        pytest.fail("the command-line scenario wrote nothing")
    found = json.loads(out.read_text())
    refused = found["no_slots"]
    assert refused["exit"] == 2, refused["stderr"]
    # Ray's C++ core warns on its own that the namespace has no route out
    # ("[date W pid] network_util.cc: ..."); what ar-tui says is one line.
    lines = [line for line in refused["stderr"].splitlines() if line.strip() and ".cc:" not in line]
    assert len(lines) == 1 and "has no GPUs; pass --slots N to run N CPU slots" in lines[0], refused["stderr"]
    assert refused["rows"] == []
    ran = found["cpu_slot"]
    assert ran["exit"] == 0, ran["stderr"]
    assert [(exp, status) for exp, status, _ in ran["rows"]] == [(0, "keep")]
    assert ran["rows"][0][2] == pytest.approx(1.04)
