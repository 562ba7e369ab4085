"""The Ray executor on a real two-node cluster with logical GPUs (see
conftest.py and scenarios.py): placement, live logs, veto, node death,
and the resume of a killed engine."""

from __future__ import annotations

import pytest

from tests.ray.conftest import scenario

pytestmark = pytest.mark.system  # a real cluster in a network namespace: root


def statuses(rows: list[list]) -> list[tuple[int, str]]:
    return [(exp, status) for exp, status, _ in rows]


def test_two_gpu_slots_run_on_both_nodes_and_the_ledger_holds_the_evaluators_metric(findings: dict) -> None:
    found = scenario(findings, "two_slots")
    assert found["slots"] == ["ray:gpu", "ray:gpu"] and not found["error"]
    # The two baseline runs trained at once, one on each node, each given its GPU by Ray.
    baseline = [t for t in found["trials"] if t["exp"] == 0]
    assert sorted(t["node"] for t in baseline) == ["head", "worker"]
    assert {t["cuda"] for t in found["trials"]} == {"0"}
    # One row per experiment, each decided (which of keep and discard is the
    # strategy's business, tested in tests/core), none a crash.
    assert sorted(exp for exp, _ in statuses(found["rows"])) == [0, 1, 2]
    assert dict(statuses(found["rows"]))[0] == "keep"
    assert {status for _, status in statuses(found["rows"])} <= {"keep", "discard"}
    # The recorded metric is the trusted evaluator's (train.py's + 1), computed on the node.
    for exp, outcome, metric, reported in found["outcomes"]:
        assert outcome == "ok" and metric == reported + 1
    assert found["evaluating_states"] == len(found["outcomes"])
    by_exp = {exp: metric for exp, _, metric in found["rows"]}
    assert by_exp[0] == 2.04 and by_exp[1] == 2.01 and by_exp[2] == 2.0025
    # The target's prepare ran once on each node (and once where the engine runs).
    assert sorted(found["prepared_on"]) == ["engine", "head", "worker"]
    # The engine's log files hold what the nodes printed.
    assert found["log_has_lines"] and {"0.log", "1.log", "2.log", "1.eval.log"} <= set(found["logs"])


def test_log_lines_arrive_live(findings: dict) -> None:
    # Every training script waited for an answer to its first line, which the
    # observer gives only on seeing that line: none would have finished (they
    # give up after 120 s, a crash) had the lines not arrived while it ran.
    found = scenario(findings, "two_slots")
    assert len(found["trials"]) == len(found["outcomes"]) >= 4
    assert all(outcome == "ok" for _, outcome, _, _ in found["outcomes"])


def test_a_veto_ends_the_remote_process_group(findings: dict) -> None:
    found = scenario(findings, "veto")
    vetoed = found["vetoed"]
    assert vetoed["exp"] == 1 and vetoed["alive_before"]
    assert found["alive_after"] == [], "the vetoed script or its child still runs on the node"
    assert statuses(found["rows"]) == [(0, "keep"), (1, "veto")]


def test_a_killed_engine_resumed_leaves_no_orphan_on_the_cluster(findings: dict) -> None:
    found = scenario(findings, "resume_after_kill")
    # A process that left the trial's group outlived the kill -9 of its engine ...
    assert found["escaped_alive_before_resume"]
    # ... and the resumed engine ended it on its node, then ran exp 1 again.
    assert found["alive_after_resume"] == []
    assert any("left on the Ray cluster by an earlier engine" in n for n in found["notices"])
    assert "experiment 1 was interrupted; running it again" in found["notices"]
    assert len(found["rerun"]) == 1 and not found["error"]
    assert [exp for exp, _ in statuses(found["rows"])] == [0, 1]
    assert {status for _, status in statuses(found["rows"])} <= {"keep", "discard"}


def test_a_node_that_dies_mid_experiment_costs_a_rerun_not_a_crash(findings: dict) -> None:
    found = scenario(findings, "node_death")
    killed = found["killed"]
    assert killed and killed["node"] == "worker", "no experiment ran on the worker node"
    # The experiment ran again (on the node that was left, or on the worker
    # once it is back) and finished (a second run may follow: the
    # strategy's, inside the noise band).
    assert found["reruns"]
    assert len([exp for exp, _ in found["outcomes"] if exp == killed["exp"]]) == len(found["reruns"])
    assert all(outcome == "ok" for _, outcome in found["outcomes"])
    assert "crash" not in [status for _, status in statuses(found["rows"])]
    assert sorted(exp for exp, _ in statuses(found["rows"])) == [0, 1, 2] and not found["error"]
    assert any("left the cluster mid-trial" in n for n in found["notices"])
    # The slot left the pool and came back, and the run's events say so to
    # whoever reads them: the app's status line, `ar-tui status`, attach.
    assert found["capacity"][0] == [1, 2, "GPU"] and found["capacity"][-1] == [2, 2, "GPU"]
    assert any("has its 2 GPU(s) again; every slot runs" in n for n in found["notices"])


def test_a_slot_out_of_the_pool_is_shown_until_capacity_returns(findings: dict) -> None:
    from pathlib import Path

    from ar_tui.core.control.view import RunView
    from ar_tui.core.records.ledger import read_events
    from ar_tui.headless import describe_status

    found = scenario(findings, "node_death")
    view = RunView()
    said = []
    for event in read_events(Path(found["run_dir"]) / "events.jsonl"):
        view.apply(event)
        if event.kind == "capacity":
            said.append(describe_status({**view.summary(), "live": True}))
    assert len(said) >= 2
    assert "WARNING 1 slot out of the pool (the cluster has 1 of 2 GPUs)" in said[0]
    assert "out of the pool" not in said[-1] and view.capacity_warning == ""


@pytest.mark.parametrize("backend", ["bubblewrap", "landlock"])
def test_the_sandbox_holds_on_the_node(findings: dict, backend: str) -> None:
    found = scenario(findings, "sandbox_on_the_node" + ("" if backend == "bubblewrap" else f"_{backend}"))
    assert not found["error"], found["stopped"]
    assert found["sandbox"] == f"sandbox: {backend}, network off"
    rows = {exp: (status, rule, forced) for exp, status, _, rule, forced in found["rows"]}
    attacks = found["descriptions"][:-2]
    # Every attack failed inside the sandbox on its node: a crash with its
    # one-line reason. One write lands, harmlessly: the node's dir lies in
    # /tmp here, and bubblewrap makes the dirs that hold the run's mounts
    # in its private /tmp, where the file vanishes with the run (the
    # planted_node check below: nothing reached the real one).
    for exp, description in enumerate(attacks, start=1):
        status, rule, forced = rows[exp]
        assert not forced, description
        if description != "write planted.txt" or backend == "landlock":
            assert status == "crash" and "exit code 1" in rule and "\n" not in rule, (description, rule)
    # Nothing outside changed; nothing secret reached the engine's logs.
    assert found["connections"] == []
    assert not found["pwned_home"] and not found["planted_node"] and not found["ledger_planted"]
    assert not found["secret_in_logs"] and not found["ledger_in_logs"]
    # What a run left behind did not reach the next one, and the normal
    # experiments still record their metric.
    leave, find = len(attacks) + 1, len(attacks) + 2
    assert rows[leave][0] == "discard" and rows[find][0] == "keep", found["rows"]
    assert found["leftovers_shared"] == []
    assert rows[0][0] == "keep" and all(metric is not None for exp, _, metric, _, _ in found["rows"]
                                        if exp in (0, leave, find))
    # The node ran the engine's sandbox (a node with another would have said so).
    assert not any(n.startswith("Ray node ") for n in found["notices"])
    # Unconfined on the node (--sandbox off), the same read gets the key into the log.
    if backend == "bubblewrap":
        assert found["off_rows"][1][1] in ("keep", "discard") and found["off_secret_in_log"]


def test_a_ray_or_python_version_mismatch_is_one_line(findings: dict) -> None:
    found = scenario(findings, "versions")
    # The cluster's own record of its versions (what Ray's check reads) is this process's ...
    reported = found["reported"]
    assert [reported["ray_version"], reported["python_version"]] == found["engine"]
    assert found["same"] is None
    # ... and a cluster that reports another Ray or Python gets one line naming both.
    ray_version, python_version = found["engine"]
    assert found["other_ray"] == (f"the Ray cluster at 127.0.0.1:6390 runs Ray 2.0.0 on Python {python_version}, "
                                  f"this machine Ray {ray_version} on Python {python_version}: "
                                  "install the same versions on both")
    assert "\n" not in found["other_python"] and "Python 3.9.18" in found["other_python"]
