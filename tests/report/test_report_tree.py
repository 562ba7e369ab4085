"""The morning report draws the population as a tree: each node under its
parent with its metric, the path to the best marked, islands named. Built
from a run dir written with the engine's own ledger and event writers."""

from __future__ import annotations

from pathlib import Path

from ar_tui.core import events as ev
from ar_tui.core.records.ledger import EventLog, Ledger, LedgerRow
from ar_tui.report import build_report, render_markdown, report_as_dict

T0 = 1_790_000_000.0
# (exp, parent, island, status, metric): two islands grown from the baseline;
# the best (6) is reached through a node (3) that was itself no better than its island's best.
POPULATION = [
    (0, None, None, "keep", 1.000000),
    (1, 0, 0, "keep", 0.990000),
    (2, 0, 1, "discard", 0.995000),
    (3, 1, 0, "discard", 0.991000),
    (4, 2, 1, "crash", None),
    (5, 2, 1, "discard", 0.994000),
    (6, 3, 0, "keep", 0.980000),
]


def write_population(run_dir: Path) -> None:
    ledger = Ledger(run_dir, "val_bpb")
    log = EventLog(run_dir)
    log.write(ev.RunStarted(tag="pop", target="t", run_dir=str(run_dir), agent="offline", model=None, metric="val_bpb",
                            direction="min", attended=False, veto_window_s=0.0, slots=["cpu", "cpu"], lookahead=0,
                            resumed=False, ts=T0))
    best = None
    for exp, parent, island, status, metric in POPULATION:
        if status == "keep":
            best = metric
        ledger.append(LedgerRow(commit=f"c{exp:06d}", metric=metric, memory_gb=None, status=status,
                                description="baseline" if exp == 0 else f"idea {exp}", exp=exp, parent=parent,
                                rule="r"))
        log.write(ev.Decision(exp=exp, status=status, rule="r", metric=metric, best_before=None, best_after=best,
                              commit=f"c{exp:06d}", description="baseline" if exp == 0 else f"idea {exp}",
                              parent_exp=parent, island=island, ts=T0 + exp))
    log.close()


def test_report_md_draws_the_tree_with_the_best_path_and_islands(tmp_path: Path) -> None:
    write_population(tmp_path)
    report = build_report(tmp_path)
    text = render_markdown(report)
    section = text.split("## Lineage\n", 1)[1].split("## Kept changes", 1)[0]
    tree = section.split("```\n", 2)[1]
    assert tree.splitlines() == [
        "┃ 0 ✓ 1.000000  baseline",
        "├── ┃ 1 ✓ 0.990000 [island 0]  idea 1",
        "│   └── ┃ 3 · 0.991000 [island 0]  idea 3",
        "│       └── ★ 6 ✓ 0.980000 [island 0]  idea 6",
        "└──   2 · 0.995000 [island 1]  idea 2",
        "    ├──   4 ✗ n/a [island 1]  idea 4",
        "    └──   5 · 0.994000 [island 1]  idea 5",
    ]
    assert "- island 0: best 0.980000 (exp 6), 3 nodes" in section
    assert "- island 1: best 0.994000 (exp 5), 3 nodes" in section


def test_report_json_has_the_tree_and_a_ledger_alone_gives_it_too(tmp_path: Path) -> None:
    write_population(tmp_path)
    nodes = report_as_dict(build_report(tmp_path))["lineage"]
    assert [(n["exp"], n["parent"], n["depth"]) for n in nodes] == [
        (0, None, 0), (1, 0, 1), (3, 1, 2), (6, 3, 3), (2, 0, 1), (4, 2, 2), (5, 2, 2)]
    assert [n["exp"] for n in nodes if n["on_best_path"]] == [0, 1, 3, 6]
    assert [n["exp"] for n in nodes if n["best"]] == [6]

    # Without events.jsonl the ledger's parent column draws the same tree (no islands).
    (tmp_path / "events.jsonl").unlink()
    alone = report_as_dict(build_report(tmp_path))["lineage"]
    assert [(n["exp"], n["parent"], n["depth"]) for n in alone] == [(n["exp"], n["parent"], n["depth"]) for n in nodes]
    assert all(n["island"] is None for n in alone)


def test_a_ledger_without_parents_is_drawn_as_one_greedy_lineage(tmp_path: Path) -> None:
    # karpathy/autoresearch's own results.tsv: each idea was tried on the last kept commit.
    (tmp_path / "results.tsv").write_text(
        "commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
        "a000000\t1.000000\t2.0\tkeep\tbaseline\n"
        "b000000\t0.990000\t2.0\tkeep\tfirst\n"
        "c000000\t0.995000\t2.0\tdiscard\tsecond\n"
        "d000000\t0.985000\t2.0\tkeep\tthird\n")
    nodes = report_as_dict(build_report(tmp_path))["lineage"]
    assert [(n["exp"], n["parent"]) for n in nodes] == [(0, None), (1, 0), (2, 1), (3, 1)]
    assert [n["exp"] for n in nodes if n["on_best_path"]] == [0, 1, 3]
