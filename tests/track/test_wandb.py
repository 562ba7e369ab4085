"""A night in W&B, offline (WANDB_MODE=offline: no server, nothing leaves
the machine): real headless `ar-tui` nights with `--track wandb`, the runs'
files read back as W&B's own records. The night is one run, each decided
experiment a run in its group; a resumed night continues the same run ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ar_tui.core.records.ledger import read_results
from ar_tui.core.records.rundir import RunDir
from ar_tui.track.sync import load_state
from tests.conftest import make_target
from tests.track.servers import ar_tui, headless_night, write_user_config
from tests.track.wandb_files import read_offline_runs



def test_a_night_is_a_run_and_each_decided_experiment_a_run_in_its_group(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target")
    env = write_user_config(tmp_path / "config.toml", '[track]\nproject = "nights"\n')
    env.update(WANDB_MODE="offline", WANDB_SILENT="true")
    env.pop("WANDB_DIR", None)
    run_dir = tmp_path / "run"
    night = headless_night(target, run_dir, env, "--track", "wandb")
    assert night.returncode == 0, night.stdout + night.stderr
    assert "warning" not in night.stdout and "wandb:" not in night.stdout  # W&B kept quiet

    _, rows, _ = read_results(RunDir(run_dir).ledger)
    runs = read_offline_runs(run_dir / "wandb")
    nights = [r for r in runs if r.job_type == "night"]
    assert len(nights) == 1 and nights[0].name == "night" and nights[0].group == "night"
    parent = nights[0]
    assert (parent.config["agent"], parent.config["strategy"]) == ("offline", "tree")
    assert ("night-" + parent.id, ["progress.png", "report.md"]) in [(n, sorted(f)) for n, f in parent.artifacts]
    assert parent.summary["experiments"] == 2 and parent.exit_code == 0
    experiments = {int(r.config["exp"]): r for r in runs if r.job_type == "experiment"}
    assert sorted(experiments) == [row.exp for row in rows] == [0, 1, 2]
    for row in rows:
        run = experiments[row.exp]
        assert run.id == f"{parent.id}-{row.exp}" and run.group == "night"
        assert run.config["parent_run"] == parent.id
        assert run.config["description"] == row.description and run.config["seeds"] == str(row.exp * 1000 + 1)
        assert (run.config["status"], run.config["strategy"]) == (row.status, "tree")
        assert f"status:{row.status}" in run.tags
        assert run.summary["val_bpb"] == pytest.approx(row.metric)
        assert run.summary["memory_gb"] == pytest.approx(row.memory_gb)
        assert [h["val_bpb_run"] for h in run.history if "val_bpb_run" in h] == [pytest.approx(row.metric)]
        files = dict(run.artifacts)[f"exp-{parent.id}-{row.exp}"]
        assert "log_tail.txt" in files and (("diff.patch" in files) == (row.exp != 0))
    assert json.loads(json.dumps(load_state(run_dir)))  # the ids are kept beside the ledger

    # Resumed: the same night run and the same experiment runs, one new experiment.
    again = ar_tui("run", "--headless", "--run-dir", run_dir, "--max-experiments", "3", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    ids = {r.id for r in read_offline_runs(run_dir / "wandb")}
    assert ids == {parent.id, *(f"{parent.id}-{exp}" for exp in range(4))}
