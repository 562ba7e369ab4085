"""A night in MLflow: a real `mlflow server` (sqlite store) started by the
test, real headless `ar-tui` nights logging to it with `--track mlflow`,
everything read back through MLflow's own client. The night is one parent
run, each decided experiment one child; a resumed night adds to the same
runs; a tracker that is down costs the night nothing, and `ar-tui track`
catches it up from the ledger."""

from __future__ import annotations

from pathlib import Path

import pytest

from ar_tui.core.records.ledger import read_results
from ar_tui.core.records.rundir import RunDir
from tests.conftest import make_target
from tests.track.servers import ar_tui, free_port, headless_night, start_mlflow_server, stop, write_user_config



@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory):
    process, uri = start_mlflow_server(tmp_path_factory.mktemp("mlflow"))
    yield uri
    stop(process)


def night_runs(uri: str, project: str):
    """The night's parent run and its children, as MLflow holds them."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(project)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("ar_tui.role") == "night"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def artifact_names(client, run_id: str) -> set[str]:
    return {item.path for item in client.list_artifacts(run_id)}


def test_a_headless_night_is_a_parent_run_with_a_child_per_decided_experiment(
        tmp_path: Path, mlflow_uri: str) -> None:
    target = make_target(tmp_path / "target")
    env = write_user_config(tmp_path / "config.toml", f'[track]\nuri = "{mlflow_uri}"\nproject = "nights"\n')
    run_dir = tmp_path / "run"
    night = headless_night(target, run_dir, env, "--track", "mlflow")
    assert night.returncode == 0, night.stdout + night.stderr
    assert "warning" not in night.stdout

    _, rows, _ = read_results(RunDir(run_dir).ledger)
    client, parents, children = night_runs(mlflow_uri, "nights")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert parent.info.run_name == "night" and parent.data.params["agent"] == "offline"
    assert {child.data.tags["mlflow.parentRunId"] for child in children} == {parent.info.run_id}
    by_exp = {int(child.data.tags["ar_tui.exp"]): child for child in children}
    assert sorted(by_exp) == [row.exp for row in rows] == [0, 1, 2]
    for row in rows:
        child = by_exp[row.exp]
        assert child.data.params["description"] == row.description
        assert child.data.params["proposer"] == (row.proposer or "offline")  # the baseline's: the night's agent
        assert child.data.params["parent"] == ("" if row.parent is None else str(row.parent))
        assert child.data.params["seeds"] == str(row.exp * 1000 + 1)  # one run each: AR_SEED of attempt 1
        assert (child.data.params["agent"], child.data.params["model"]) == ("offline", "")
        assert child.data.metrics["val_bpb"] == pytest.approx(row.metric)
        assert child.data.metrics["memory_gb"] == pytest.approx(row.memory_gb)
        assert child.data.metrics["seconds"] == pytest.approx(row.seconds, abs=0.05)
        assert child.data.metrics["token_cost_usd"] == 0.0 and child.data.metrics["runs"] == 1.0
        assert (child.data.tags["status"], child.data.tags["strategy"]) == (row.status, "tree")
        assert row.commit.startswith(child.data.tags["commit"][:7])
        assert "log_tail.txt" in artifact_names(client, child.info.run_id)
        if row.exp:  # the baseline changes nothing
            assert "diff.patch" in artifact_names(client, child.info.run_id)
            knobs = child.data.params["knobs_changed"]
            assert knobs and knobs.split(":")[0] in ("LR", "WIDTH"), knobs
    assert {"progress.png", "report.md"} <= artifact_names(client, parent.info.run_id)
    assert client.get_metric_history(parent.info.run_id, "val_bpb")  # the night's chart, a point per experiment

    # A resumed night adds to the same runs: one parent, one child per experiment, none twice.
    again = ar_tui("run", "--headless", "--run-dir", run_dir, "--max-experiments", "3", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    _, parents, children = night_runs(mlflow_uri, "nights")
    assert [p.info.run_id for p in parents] == [parent.info.run_id]
    assert sorted(int(c.data.tags["ar_tui.exp"]) for c in children) == [0, 1, 2, 3]


def test_a_tracker_that_is_down_costs_the_night_nothing_and_is_caught_up_later(
        tmp_path: Path, mlflow_uri: str) -> None:
    target = make_target(tmp_path / "target")
    nowhere = f"http://127.0.0.1:{free_port()}"
    env = write_user_config(tmp_path / "config.toml", f'[track]\nuri = "{nowhere}"\nproject = "late"\n')
    run_dir = tmp_path / "run"
    night = headless_night(target, run_dir, env, "--track", "mlflow")
    assert night.returncode == 0, night.stdout + night.stderr
    assert "warning: tracker mlflow:" in night.stdout and f"ar-tui track {run_dir.resolve()} --to mlflow" in night.stdout
    _, rows, _ = read_results(RunDir(run_dir).ledger)
    assert [row.exp for row in rows] == [0, 1, 2]

    # The next morning, from the ledger: everything, once.
    sent = ar_tui("track", run_dir, "--to", "mlflow", "--uri", mlflow_uri, "--project", "late", env=env)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "3 experiments logged now, 3 in all" in sent.stdout
    client, parents, children = night_runs(mlflow_uri, "late")
    assert len(parents) == 1 and len(children) == 3
    assert {"progress.png", "report.md"} <= artifact_names(client, parents[0].info.run_id)
    twice = ar_tui("track", run_dir, "--to", "mlflow", "--uri", mlflow_uri, "--project", "late", env=env)
    assert "0 experiments logged now, 3 in all" in twice.stdout, twice.stdout + twice.stderr
    assert len(night_runs(mlflow_uri, "late")[2]) == 3
