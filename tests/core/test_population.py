"""Tree and island search: parent choice in milliseconds on the strategy
alone, then real runs on tiny targets through the real engine."""

from __future__ import annotations

import textwrap
from pathlib import Path

from ar_tui.agents.scripted import ScriptedProposer, ScriptStep
from ar_tui.core import events as ev
from ar_tui.core.decisions import NoiseModel
from ar_tui.core.engine import Engine, EngineOptions
from ar_tui.core.engine.state import Node, ResearchState
from ar_tui.core.engine.strategies.islands import IslandStrategy
from ar_tui.core.engine.strategies.tree import TreeStrategy
from ar_tui.core.proposer import ResultRow
from ar_tui.core.records.ledger import read_events, read_results
from tests.conftest import git, make_target


def population(*nodes: tuple[int, float | None, int | None, int, str], sd: float = 0.01) -> ResearchState:
    """Nodes as (exp, metric, parent, children, status); the best is the lowest metric."""
    noise = NoiseModel()
    noise.add("seed-a", 1.0)
    noise.add("seed-a", 1.0 + sd * 2 ** 0.5)  # two runs 1.41 sd apart: sd == `sd`
    s = ResearchState(noise=noise)
    for exp, metric, parent, children, status in nodes:
        s.nodes[exp] = Node(exp, f"c{exp}", parent, status, f"exp {exp}", [metric] if metric is not None else [],
                            children=children)
        s.history.append(ResultRow(exp, f"c{exp}", metric, status, f"exp {exp}", parent=parent))
    measured = [n for n in s.nodes.values() if n.metric is not None]
    best = min(measured, key=lambda n: n.metric)
    s.best_exp, s.best_commit, s.best_metric = best.exp, best.commit, best.metric
    s.baseline_metric = s.nodes[0].metric
    s.nodes[0].runs = [s.nodes[0].metric] * 2  # the baseline runs more than once
    s.next_exp = max(s.nodes) + 1
    return s


def test_tree_explores_an_untried_near_miss_before_a_well_worn_best() -> None:
    s = population((0, 1.00, None, 2, "keep"), (1, 0.95, 0, 6, "keep"), (2, 0.955, 0, 0, "discard"))
    assert TreeStrategy().base_for_proposal(s).exp == 2


def test_tree_never_builds_on_a_node_far_worse_than_the_best() -> None:
    s = population((0, 1.00, None, 3, "keep"), (1, 0.95, 0, 9, "keep"), (2, 1.40, 0, 0, "discard"))
    choice = TreeStrategy().base_for_proposal(s)
    assert choice.exp != 2
    assert 2 not in TreeStrategy().live_nodes(s, None)  # pruned: its ref can go


def test_tree_remeasures_a_single_run_node_before_its_second_child() -> None:
    s = population((0, 1.00, None, 4, "keep"), (1, 0.90, 0, 1, "keep"))
    choice = TreeStrategy().base_for_proposal(s)
    assert choice.remeasure == 1
    s.nodes[1].runs.append(0.91)
    assert TreeStrategy().base_for_proposal(s).remeasure is None


def test_tree_hands_a_crash_back_once_to_a_proposer_that_can_debug() -> None:
    s = population((0, 1.00, None, 1, "keep"), (1, None, 0, 0, "crash"))
    s.tails[1] = "Traceback ...\nZeroDivisionError: division by zero"
    assert TreeStrategy(debug=True).base_for_proposal(s).debug_of == 1
    assert TreeStrategy(debug=False).base_for_proposal(s).debug_of is None
    s.nodes[1].debugged = True
    assert TreeStrategy(debug=True).base_for_proposal(s).debug_of is None


def test_islands_take_turns_and_migrate_their_best_to_the_neighbour() -> None:
    strategy = IslandStrategy(islands=2, migrate_every=2)
    s = population((0, 1.00, None, 2, "keep"), (1, 0.90, 0, 0, "keep"), (2, 1.05, 0, 0, "discard"))
    s.nodes[1].island, s.nodes[2].island = 0, 1
    assert [strategy.island_for(e) for e in (1, 2, 3, 4)] == [0, 1, 0, 1]
    members = strategy.members(s)
    assert members[0] == {0, 1} and members[1] == {0, 2, 1}  # island 0's best moved next door
    s.next_exp = 4  # an island-1 proposal
    assert strategy.base_for_proposal(s).exp == 1
    assert strategy.live_nodes(s, None) == {1}


# ---------------------------------------------------------------- real runs

# Changing B alone costs a little; A helps a lot, but only on top of B.
VALLEY = textwrap.dedent(
    """\
    A = 0  # the big idea
    B = 0  # the step that makes it work
    gain = (-0.1 if B == 1 else 0.05) if A == 1 else 0.0
    print("---")
    print(f"val_bpb: {1.0 + 0.002 * B + gain:.6f}")
    """
)
VALLEY_STEPS = [ScriptStep("B 0 -> 1", "B = 0", "B = 1"), ScriptStep("A 0 -> 1", "A = 0", "A = 1")]


async def _run(tmp_path: Path, train: str, steps: list[ScriptStep], **kw) -> tuple[Path, Path, list[ev.Event]]:
    target = make_target(tmp_path / "target", train=train)
    run_dir = tmp_path / "run"
    options = dict(target_dir=target, tag="pop", run_dir=run_dir, attended=False, lookahead=0, baseline_runs=2,
                   max_experiments=len(steps), write_report=False)
    options.update(kw)
    engine = Engine(EngineOptions(**options), ScriptedProposer(list(steps)))
    tips: list[tuple[str, float | None]] = []

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.Decision) and event.status != "rerun":
            tips.append((git(target, "rev-parse", "autoresearch/pop").strip(), event.best_after))

    engine.subscribe(on_event)
    stopped = await engine.run()
    assert not stopped.error, stopped.reason
    # The branch tip is the best node after every decision.
    best_commit = {r.metric: r.commit for r in read_results(run_dir / "results.tsv")[1] if r.status == "keep"}
    for tip, best in tips:
        assert tip.startswith(best_commit[best])
    return target, run_dir, list(read_events(run_dir / "events.jsonl"))


async def test_greedy_cannot_cross_the_valley(tmp_path: Path) -> None:
    _, run_dir, _ = await _run(tmp_path, VALLEY, VALLEY_STEPS, strategy="greedy")
    rows = read_results(run_dir / "results.tsv")[1]
    assert [r.status for r in rows] == ["keep", "discard", "discard"]


async def test_tree_steps_through_a_worse_node_to_the_best(tmp_path: Path) -> None:
    target, run_dir, events = await _run(tmp_path, VALLEY, VALLEY_STEPS, strategy="tree")
    rows = read_results(run_dir / "results.tsv")[1]
    assert [(r.exp, r.status, r.parent) for r in rows] == [(0, "keep", None), (1, "discard", 0), (2, "keep", 1)]
    assert rows[-1].metric == 0.902
    ready = {e.exp: e for e in events if isinstance(e, ev.ProposalReady)}
    assert ready[2].parent_exp == 1  # the parent column matches what the proposal was built on
    train = git(target, "show", "autoresearch/pop:train.py")
    assert "A = 1" in train and "B = 1" in train


TWO_KNOBS = textwrap.dedent(
    """\
    import time
    LR = 0.5  # learning rate
    WIDTH = 64  # width
    time.sleep(2.0 if WIDTH == 70 else 0.0)  # so that the two slots finish in a known order
    print(f"val_bpb: {(LR - 0.3) ** 2 + (WIDTH - 64) ** 2 * 1e-4 + 1.0:.6f}")
    """
)


async def test_islands_on_two_slots_take_turns_and_migrate(tmp_path: Path) -> None:
    steps = [
        ScriptStep("LR 0.5 -> 0.4", "LR = 0.5", "LR = 0.4"),      # island 0: better
        ScriptStep("WIDTH 64 -> 70", "WIDTH = 64", "WIDTH = 70"),  # island 1: worse, and slower
        ScriptStep("LR 0.4 -> 0.35", "LR = 0.4", "LR = 0.35"),     # island 0, on its own best
        ScriptStep("WIDTH 64 -> 66", "WIDTH = 64", "WIDTH = 66"),  # island 1, after a migration
    ]
    _, run_dir, events = await _run(tmp_path, TWO_KNOBS, steps, strategy="islands", devices=["cpu", "cpu"],
                                    strategy_options={"islands": 2, "migrate_every": 2})
    decided = {e.exp: e for e in events if isinstance(e, ev.Decision) and e.status != "rerun"}
    assert [decided[e].island for e in (1, 2, 3, 4)] == [0, 1, 0, 1]
    started = {e.exp: e for e in events if isinstance(e, ev.ExperimentStarted)}
    assert {started[1].slot, started[2].slot} == {0, 1}  # both islands trained at once
    ready = {e.exp: e for e in events if isinstance(e, ev.ProposalReady)}
    assert ready[3].parent_exp == 1  # island 0 grows from its own best
    # Two decisions in (exp 1 and 3; exp 2 is slower), island 0's best moved to island 1.
    assert ready[4].island == 1 and ready[4].parent_exp == 3
    rows = read_results(run_dir / "results.tsv")[1]
    assert {r.exp: r.parent for r in rows} == {0: None, 1: 0, 2: 0, 3: 1, 4: 3}


async def test_a_single_run_elite_is_remeasured_before_its_second_child(tmp_path: Path) -> None:
    steps = [
        ScriptStep("LR 0.5 -> 0.4", "LR = 0.5", "LR = 0.4"),
        ScriptStep("WIDTH 64 -> 66", "WIDTH = 64", "WIDTH = 66"),
        ScriptStep("WIDTH 64 -> 65", "WIDTH = 64", "WIDTH = 65"),
    ]
    _, run_dir, events = await _run(tmp_path, TWO_KNOBS, steps, strategy="islands", strategy_options={"islands": 1})
    order = [(type(e).__name__, e.exp) for e in events if isinstance(e, (ev.ProposalReady, ev.Remeasured))]
    assert order.index(("Remeasured", 1)) < order.index(("ProposalReady", 3))
    remeasured = next(e for e in events if isinstance(e, ev.Remeasured))
    assert remeasured.runs == 2 and remeasured.estimate == 1.01
    rows = read_results(run_dir / "results.tsv")[1]
    assert [r.exp for r in rows] == [0, 1, 2, 3]  # a re-measurement adds no row
    assert (run_dir / "logs" / "1.2.log").exists()  # its own log, as a second attempt of exp 1


def test_kill_9_and_resume_keeps_a_population_of_ten_nodes(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT
    from tests.core.test_resume import wait_for

    target = make_target(tmp_path / "target", train=TWO_KNOBS.replace(
        "print(", "import os; time.sleep(float(os.environ.get('TINY_SLEEP', '0'))); print("))
    run_dir = tmp_path / "run"

    def start(sleep: str) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "ar_tui.cli", "run", "--headless", "--target", str(target), "--tag", "night",
               "--run-dir", str(run_dir), "--agent", "offline", "--unattended", "--baseline-runs", "1",
               "--lookahead", "0", "--max-experiments", "14", "--strategy", "tree"]
        return subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, TINY_SLEEP=sleep), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def decided() -> int:
        ledger = run_dir / "results.tsv"
        return len(read_results(ledger)[1]) if ledger.exists() else 0

    engine = start("0.3")
    try:
        wait_for(lambda: decided() >= 11, timeout=120)
        engine.send_signal(signal.SIGKILL)
        engine.wait(10)
    finally:
        if engine.poll() is None:
            engine.kill()
    before = read_results(run_dir / "results.tsv")[1]
    refs_before = git(target, "for-each-ref", "--format=%(refname)", "refs/ar-tui/night/nodes/").split()
    assert len(before) >= 11 and refs_before

    resumed = start("0")
    out, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out
    rows = read_results(run_dir / "results.tsv")[1]
    assert [r.exp for r in rows] == list(range(15))  # none lost, none doubled
    assert rows[: len(before)] == before
    # Every node's parent is an earlier node; the tree is one tree.
    for row in rows[1:]:
        assert row.parent is not None and row.parent < row.exp
    events = list(read_events(run_dir / "events.jsonl"))
    # After the resume, proposals still grow from the whole population, not only from the best.
    ready = [e for e in events if isinstance(e, ev.ProposalReady)]
    assert {e.parent_exp for e in ready} - {None} <= {r.exp for r in rows}
    keeps = [r for r in rows if r.status == "keep"]
    assert git(target, "rev-parse", "autoresearch/night").startswith(keeps[-1].commit)
    # Node refs live outside refs/heads; `git branch` shows only the run's branch and main.
    assert sorted(b.strip("* ").strip() for b in git(target, "branch").splitlines()) == ["autoresearch/night", "main"]
    assert git(target, "for-each-ref", "refs/ar-tui/night/nodes/").strip()
