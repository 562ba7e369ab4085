"""The search benchmarks' shared runner (bench/arms.py): a real headless run
per (arm, seed) on a fresh copy of the target, and the curves read back."""

from __future__ import annotations

import asyncio
import json
import subprocess

from ar_tui.core.direction import Direction
from ar_tui.core.proposer import ResultRow
from ar_tui.core.records.ledger import read_results
from bench.arms import Arm, best_so_far, curve_of, headless_run, reach, run_arms
from tests.conftest import make_target


def test_a_headless_run_gives_the_curve_of_its_ledger_on_a_copy_and_is_read_back_not_rerun(tmp_path):
    source = make_target(tmp_path / "source")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True).stdout
    work = tmp_path / "work"
    work.mkdir()
    arm = Arm("greedy", ("--strategy", "greedy"))
    lines: list[str] = []
    curve = asyncio.run(headless_run(source, arm, 0, 3, work, direction=Direction.MIN, log=lines.append))

    results = work / "greedy-0" / "run" / "results.tsv"
    _, rows, _ = read_results(results)
    assert [r.exp for r in rows] == [0, 1, 2, 3]
    assert len(curve) == 4 and curve[0] == rows[0].metric
    kept = [r.metric for r in rows if r.status == "keep"]
    assert curve[-1] == min(kept)
    assert all(later <= earlier for earlier, later in zip(curve, curve[1:]))
    # The experiments ran on the copy: the source repository has no new branch or commit.
    assert subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True).stdout == head
    assert "autoresearch" not in subprocess.run(["git", "branch"], cwd=source, capture_output=True, text=True).stdout

    before = results.stat().st_mtime_ns
    again = asyncio.run(headless_run(source, arm, 0, 3, work, direction=Direction.MIN, log=lines.append))
    assert again == curve and results.stat().st_mtime_ns == before
    assert "read from" in lines[-1]
    saved = json.loads((work / "greedy-0" / "curve.json").read_text())
    assert saved["experiments"] == 3 and saved["flags"] == ["--strategy", "greedy"]


def test_best_so_far_follows_keeps_by_experiment_number(tmp_path):
    tsv = tmp_path / "results.tsv"
    tsv.write_text("commit\tval_rmse\tmemory_gb\tstatus\tdescription\texp\n"
                   "a\t10.0\t0.0\tkeep\tbaseline\t0\n"
                   "b\t11.0\t0.0\tdiscard\tx\t1\n"
                   "d\t8.0\t0.0\tkeep\tz\t3\n"
                   "c\t0.0\t0.0\tcrash\ty\t2\n")
    assert best_so_far(tsv, Direction.MIN, 4) == [10.0, 10.0, 10.0, 8.0, 8.0]
    higher = tsv.read_text().replace("8.0", "12.0")
    tsv.write_text(higher)
    assert best_so_far(tsv, Direction.MAX, 3) == [10.0, 10.0, 10.0, 12.0]


def test_reach_and_curve_of():
    assert reach([5.0, 4.0, 3.0], 4.0) == 1
    assert reach([5.0, 4.0, 3.0], 2.0) is None
    assert reach([float("nan"), 1.0], 2.0) == 1
    assert reach([1.0, 2.0, 3.0], 2.5, Direction.MAX) == 2
    history = [ResultRow(0, "0", 3.0, "keep", "baseline"), ResultRow(1, "1", 4.0, "discard", "a"),
               ResultRow(2, "2", None, "crash", "b"), ResultRow(3, "3", 2.0, "keep", "c")]
    assert curve_of(history, 5) == [3.0, 3.0, 3.0, 2.0, 2.0, 2.0]


def test_run_arms_goes_seed_by_seed_with_every_arm_inside_a_seed():
    calls: list[tuple[str, int]] = []

    async def one(arm: str, seed: int):
        calls.append((arm, seed))
        return [float(seed)]

    curves = asyncio.run(run_arms(["a", "b"], 2, one))
    assert calls == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]
    assert curves == {"a": [[0.0], [1.0]], "b": [[0.0], [1.0]]}
    together = asyncio.run(run_arms(["a", "b"], 1, one, parallel=True))
    assert together == {"a": [[0.0]], "b": [[0.0]]}
