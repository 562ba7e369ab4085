"""A night in Trackio, locally (TRACKIO_DIR in the test's folder): a real
headless `ar-tui` night with `--track trackio`, read back through Trackio's
own API. The night is a run, each decided experiment a run in its group; a
resumed night reopens the same runs by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from ar_tui.core.records.ledger import read_results
from ar_tui.core.records.rundir import RunDir
from tests.conftest import make_target
from tests.track.servers import ar_tui, headless_night, write_user_config



def read_project(trackio_dir: Path, project: str) -> dict[str, tuple[dict, list[dict]]]:
    """{run name: (config, logged rows)}, through Trackio's own API, in a
    fresh interpreter (Trackio reads TRACKIO_DIR once, at import)."""
    import json
    import os
    import subprocess
    import sys

    code = ("import json, trackio\nfrom trackio.sqlite_storage import SQLiteStorage\n"
            f"print(json.dumps({{run.name: [run.config, SQLiteStorage.get_logs({project!r}, run.name)] "
            f"for run in trackio.Api().runs({project!r})}}))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env=dict(os.environ, TRACKIO_DIR=str(trackio_dir)))
    return {name: (config, logs) for name, (config, logs) in json.loads(result.stdout.splitlines()[-1]).items()}


def test_a_night_is_a_run_and_each_decided_experiment_a_run_in_its_group(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target")
    env = write_user_config(tmp_path / "config.toml", '[track]\nproject = "nights"\n')
    env["TRACKIO_DIR"] = str(tmp_path / "trackio")
    run_dir = tmp_path / "run"
    night = headless_night(target, run_dir, env, "--track", "trackio")
    assert night.returncode == 0, night.stdout + night.stderr
    assert "warning" not in night.stdout

    _, rows, _ = read_results(RunDir(run_dir).ledger)
    runs = read_project(tmp_path / "trackio", "nights")
    nights = [name for name, (config, _) in runs.items() if config.get("role") == "night"]
    assert len(nights) == 1
    parent = nights[0]
    config, points = runs[parent]
    assert (config["agent"], config["strategy"], config["_Group"]) == ("offline", "tree", "night")
    assert [p["step"] for p in points if "val_bpb" in p] == [row.exp for row in rows if row.metric is not None]
    assert any(p.get("night.experiments") == 2 for p in points)
    experiments = {int(config["exp"]): (name, config, logs) for name, (config, logs) in runs.items()
                   if config.get("role") == "experiment"}
    assert sorted(experiments) == [row.exp for row in rows] == [0, 1, 2]
    for row in rows:
        name, config, logs = experiments[row.exp]
        assert name == f"{parent}-exp{row.exp}" and config["parent_run"] == parent and config["_Group"] == "night"
        assert (config["description"], config["status"], config["strategy"]) == (row.description, row.status, "tree")
        assert config["seeds"] == str(row.exp * 1000 + 1)
        figures = logs[-1]
        assert figures["val_bpb"] == pytest.approx(row.metric) and figures["memory_gb"] == pytest.approx(row.memory_gb)
        assert [p["val_bpb_run"] for p in logs if "val_bpb_run" in p] == [pytest.approx(row.metric)]
    assert (tmp_path / "trackio" / "artifacts").is_dir()

    # Resumed: the same runs, one more experiment, nothing twice.
    again = ar_tui("run", "--headless", "--run-dir", run_dir, "--max-experiments", "3", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    runs = read_project(tmp_path / "trackio", "nights")
    assert sorted(runs) == sorted([parent, *(f"{parent}-exp{exp}" for exp in range(4))])
    assert [len([p for p in logs if "val_bpb_run" in p]) for name, (_, logs) in sorted(runs.items()) if name != parent] \
        == [1, 1, 1, 1]
