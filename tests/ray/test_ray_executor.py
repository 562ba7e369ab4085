"""The Ray executor on a real two-node cluster with logical GPUs (see
conftest.py and scenarios.py): placement, live logs, veto, node death,
and the resume of a killed engine."""

from __future__ import annotations

from tests.ray.conftest import scenario


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
    # give up after 30 s, a crash) had the lines not arrived while it ran.
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
    # The experiment ran again, on the node that was left, and finished
    # (a second run may follow: the strategy's, inside the noise band).
    assert found["reruns"] and found["reruns"][0]["node"] == "head"
    assert len([exp for exp, _ in found["outcomes"] if exp == killed["exp"]]) == len(found["reruns"])
    assert all(outcome == "ok" for _, outcome in found["outcomes"])
    assert "crash" not in [status for _, status in statuses(found["rows"])]
    assert sorted(exp for exp, _ in statuses(found["rows"])) == [0, 1, 2] and not found["error"]
    assert any("left the cluster mid-trial" in n for n in found["notices"])
