"""`ar-tui finalize` on a night whose truth is known (tests/finalize/synthetic.py):
the branch, PR.md, the ablation's marks, --drop-null, and the tip's metric."""

from __future__ import annotations

from pathlib import Path

from ar_tui.core.records.ledger import read_results
from tests.conftest import git
from tests.finalize.synthetic import SD, expected, finalize, flip, night, train_at


def marks_of(run_dir: Path) -> dict[str, str]:
    lines = (run_dir / "ablation.tsv").read_text().splitlines()
    names = lines[0].split("\t")
    rows = [dict(zip(names, line.split("\t"))) for line in lines[1:]]
    return {row["description"]: row["mark"] for row in rows}


async def test_finalize_ablate_drop_null_on_a_known_target(tmp_path: Path) -> None:
    target, run_dir, _ = await night(tmp_path)
    rows = read_results(run_dir / "results.tsv")[1]
    assert [(r.description, r.status) for r in rows if r.exp] == [
        ("GAIN_A 0 -> 1", "keep"), ("SMALL_X 0 -> 1", "keep"), ("NO_EFFECT 0 -> 1", "keep"),
        ("GAIN_B 0 -> 1", "keep"), ("BIG_Y 0 -> 1", "keep"), ("WORSE 0 -> 1", "discard"),
        ("WORSE 0 -> 2", "discard")]
    assert [r.forced for r in rows if r.exp == 3] == [True]

    # Without an ablation: every change on the lineage, one commit each, in order.
    plain = finalize(run_dir)
    assert plain.returncode == 0, plain.stderr
    log = git(target, "log", "--format=%s", "autoresearch/syn-final").splitlines()
    assert log == ["BIG_Y 0 -> 1", "GAIN_B 0 -> 1", "NO_EFFECT 0 -> 1", "SMALL_X 0 -> 1", "GAIN_A 0 -> 1", "initial"]
    body = git(target, "log", "-1", "--format=%B", "autoresearch/syn-final~4")
    assert "Why: GAIN_A should lower val_bpb" in body and "Experiment 1 of run syn" in body
    assert "99% interval" in body and "cost $" in body
    # The same code as the night's best.
    assert git(target, "diff", "autoresearch/syn", "autoresearch/syn-final", "--stat").strip() == ""

    result = finalize(run_dir, "--ablate", "--drop-null", "--repeats", "3")
    assert result.returncode == 0, result.stderr + result.stdout
    assert marks_of(run_dir) == {
        "GAIN_A 0 -> 1": "still matters",
        "SMALL_X 0 -> 1": "no measurable effect",  # BIG_Y covers it
        "NO_EFFECT 0 -> 1": "no measurable effect",
        "GAIN_B 0 -> 1": "still matters",
        "BIG_Y 0 -> 1": "still matters",  # 0.07 on top of SMALL_X
    }
    # --drop-null: exactly the null and the overlapped change are gone, and PR.md says so.
    log = git(target, "log", "--format=%s", "autoresearch/syn-final").splitlines()
    assert log == ["BIG_Y 0 -> 1", "GAIN_B 0 -> 1", "GAIN_A 0 -> 1", "initial"]
    assert "left out (no measurable effect): exp 2, exp 3" in result.stdout
    # The tip trains to what the truth says: all the real gains, within the noise.
    want = expected(GAIN_A=1, GAIN_B=1, BIG_Y=1)
    for seed in (11, 12):
        assert abs(train_at(target, "autoresearch/syn-final", seed) - want) < 5 * SD
    pr = (run_dir / "PR.md").read_text()
    for description in ("GAIN_A 0 -> 1", "GAIN_B 0 -> 1", "BIG_Y 0 -> 1", "SMALL_X 0 -> 1", "NO_EFFECT 0 -> 1"):
        assert description in pr
    assert "Left off this branch" in pr and "**WORSE** (2 tried)" in pr
    assert "## What the night cost" in pr and "All of them together" in pr
    report = (run_dir / "report.md").read_text()
    assert "## Ablation: does each change still matter?" in report
    # The ablation ran through the night's engine: its runs are in the night's events, on its slot.
    events = (run_dir / "events.jsonl").read_text()
    assert "ablation: without exp 5 (BIG_Y 0 -> 1)" in events


async def test_a_forced_change_that_hurts_is_marked_so_and_stays_for_a_person_to_judge(tmp_path: Path) -> None:
    target, run_dir, _ = await night(tmp_path, steps=[flip("GAIN_A"), flip("WORSE")], forced="WORSE 0 -> 1")
    result = finalize(run_dir, "--ablate", "--drop-null", "--repeats", "3")
    assert result.returncode == 0, result.stderr + result.stdout
    assert marks_of(run_dir) == {"GAIN_A 0 -> 1": "still matters", "WORSE 0 -> 1": "hurts"}
    # --drop-null leaves out only what has no measurable effect: a change that hurts is a person's call.
    assert git(target, "log", "--format=%s", "autoresearch/syn-final").splitlines() == [
        "WORSE 0 -> 1", "GAIN_A 0 -> 1", "initial"]
    assert "| hurts |" in (run_dir / "PR.md").read_text()
