"""The progress chart and the lineage tree: snapshots of the chart with a
diverged run at 80x24 (the metric tab) and 200x60, the tree with a small
population, and their behaviour read from the widgets: the outlier is clipped
and named, the chart redraws only on a decision, the best path is marked."""

from __future__ import annotations

from ar_tui import chart_scale as cs
from ar_tui.core import events as ev
from ar_tui.ui.app import ArTuiApp
from tests.ui.helpers import until
from tests.ui.scripted_handle import T0, ScriptedHandle, night_events, session_events
from tests.ui.test_snapshots import MACHINE, settle


def night_app(handle: ScriptedHandle | None = None) -> ArTuiApp:
    return ArTuiApp(handle or ScriptedHandle(), replay=night_events(), clock=lambda: T0 + 900,
                    machine_sampler=lambda: MACHINE)


def nodes(tree) -> list:
    """Every node of a tree widget, depth first."""
    found, stack = [], list(tree.root.children)
    while stack:
        node = stack.pop(0)
        found.append(node)
        stack[:0] = node.children
    return found


def drawn(app: ArTuiApp) -> bool:
    """The chart holds the replayed night (the first redraw has run)."""
    data = app.metric_pane.chart.data
    return data is not None and data.x_high == 12


def test_chart_with_an_outlier_80x24_metric_tab(snap_compare) -> None:
    async def metric_tab(pilot) -> None:
        await pilot.press("4")
        await until(pilot, lambda: drawn(pilot.app) and pilot.app.metric_pane.display, what="the chart")
        await settle(pilot)

    assert snap_compare(night_app(), terminal_size=(80, 24), run_before=metric_tab)


def test_chart_with_an_outlier_200x60(snap_compare) -> None:
    async def drawn_chart(pilot) -> None:
        await until(pilot, lambda: drawn(pilot.app), what="the chart")
        await settle(pilot)

    assert snap_compare(night_app(), terminal_size=(200, 60), run_before=drawn_chart)


def test_tree_with_a_small_population_80x24(snap_compare) -> None:
    async def tree_tab(pilot) -> None:
        await pilot.press("7")
        await until(pilot, lambda: pilot.app.lineage_tree.path == [0, 1, 2, 6, 8, 10], what="the tree")
        await settle(pilot)

    assert snap_compare(night_app(), terminal_size=(80, 24), run_before=tree_tab)


async def test_the_outlier_is_clipped_named_in_the_legend_and_the_scale_follows_the_gains() -> None:
    app = night_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: drawn(app), what="the chart")
        data = app.metric_pane.chart.data
        assert [p.exp for p in data.clipped] == [3]
        assert data.y_high < 1.01  # not stretched to 1.31
        legend = str(app.metric_pane.chart.legend.render())
        assert "off scale 3: 1.311256" in legend
        for mark in ("● keep", "○ discard", "✗ crash", "⊘ veto", "┈ best", "┄ baseline"):
            assert mark in legend


async def test_the_chart_redraws_on_a_decision_and_not_on_anything_else() -> None:
    handle = ScriptedHandle()
    app = night_app(handle)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: drawn(app), what="the chart")
        first = app.metric_pane.chart.data
        handle.emit(ev.ExperimentStarted(exp=13, slot=0, device="cpu", commit="d000000", parent="", description="x"),
                    *[ev.LogLine(exp=13, slot=0, text=f"step {i}") for i in range(50)],
                    ev.Paused(paused=True))
        await until(pilot, lambda: app.view.paused and app.logs.slot(0).exp == 13, what="the events")
        await until(pilot, lambda: not app._view_dirty, what="a redraw")
        assert app.metric_pane.chart.data is first
        handle.emit(ev.Decision(exp=13, status="keep", rule="improved", metric=0.9701, best_before=0.971877,
                                best_after=0.9701, commit="d000000", description="x"))
        await until(pilot, lambda: app.metric_pane.chart.data is not first, what="the chart to redraw")
        assert app.metric_pane.chart.data.best == 0.9701


async def test_the_tree_marks_the_best_path_and_hangs_each_experiment_under_its_parent() -> None:
    app = night_app()
    async with app.run_test(size=(120, 40)) as pilot:
        tree = app.lineage_tree
        await until(pilot, lambda: tree.path == [0, 1, 2, 6, 8, 10], what="the best path")

        def children(node) -> list[int]:
            return [child.data for child in node.children]

        baseline = tree.root.children[0]
        assert baseline.data == 0 and children(tree.root) == [0]
        assert children(baseline) == [1]
        two = baseline.children[0].children[0]
        assert two.data == 2 and children(two) == [3, 4, 5, 6]
        best = next(n for n in nodes(tree) if n.data == 10)
        assert str(best.label).startswith("★ 10") and "0.971877" in str(best.label)
        assert children(best) == [11, 12]
        # The results table shows the same parents.
        table = app.query_one("#results")
        assert str(table.get_row("12")[2]) == "10"


async def test_the_engine_named_parent_and_island_win_over_the_derived_ones() -> None:
    handle = ScriptedHandle()
    app = ArTuiApp(handle, replay=session_events(), clock=lambda: T0 + 330, machine_sampler=lambda: ["cpu"])
    async with app.run_test(size=(120, 40)) as pilot:
        handle.emit(ev.ExperimentStarted(exp=4, slot=0, device="cpu", commit="e5f6071", parent="b2c3d4e",
                                         description="island 2's idea", parent_exp=2, island=2),
                    ev.Decision(exp=4, status="discard", rule="worse", metric=1.23, best_before=1.22, best_after=1.22,
                                commit="e5f6071", description="island 2's idea", parent_exp=2, island=2))
        await until(pilot, lambda: any(r.exp == 4 for r in app.view.rows), what="the decision")
        row = app.view.rows[-1]
        assert (row.parent_exp, row.island) == (2, 2)
        await until(pilot, lambda: any(n.data == 4 for n in nodes(app.lineage_tree)), what="the tree")
        node = next(n for n in nodes(app.lineage_tree) if n.data == 4)
        assert node.parent.data == 2 and "[island 2]" in str(node.label)


def test_greedy_parents_are_the_kept_commit_each_experiment_started_from() -> None:
    from ar_tui.core.control.view import RunView

    view = RunView()
    for event in session_events():
        view.apply(event)
    view.apply(ev.ExperimentStarted(exp=4, slot=0, device="cpu", commit="e5f6071", parent="b2c3d4e", description="x"))
    view.apply(ev.Decision(exp=4, status="discard", rule="worse", metric=1.23, best_before=1.22, best_after=1.22,
                           commit="e5f6071", description="x"))
    # No ExperimentStarted for 1-3 in this history: the best when decided stands in.
    assert [(r.exp, r.parent_exp) for r in view.rows] == [(0, None), (1, 0), (2, 1), (3, 1), (4, 1)]
    # Started from the baseline's commit although exp 1 is the best by then: the commit decides.
    view.apply(ev.ExperimentStarted(exp=5, slot=0, device="cpu", commit="f000000", parent="a1b2c3d", description="y"))
    view.apply(ev.Decision(exp=5, status="discard", rule="worse", metric=1.3, best_before=1.22, best_after=1.22,
                           commit="f000000", description="y"))
    assert view.rows[-1].parent_exp == 0
    assert cs.best_so_far(view.rows, "min", view.baseline)[-1] == (5, 1.22)
