"""Noticing a plateau: on a target where nothing helps after the first two
changes, each --on-plateau mode does what it says within the stated N."""

from __future__ import annotations

from pathlib import Path

import pytest

from ar_tui.core import events as ev
from ar_tui.core.engine.plateau import MIN_WINDOW, since_keep, window
from ar_tui.core.records.ledger import LedgerRow, read_events, read_results
from ar_tui.headless import plateau_line
from tests.finalize.synthetic import flip, night

# Two real gains, then only changes that do not help.
DRY_NIGHT = [flip("GAIN_A"), flip("GAIN_B"), flip("NO_EFFECT"), flip("WORSE"), flip("NO_EFFECT", "2"),
             flip("NO_EFFECT", "3"), flip("WORSE", "2"), flip("NO_EFFECT", "4"), flip("NO_EFFECT", "5"),
             flip("NO_EFFECT", "6"), flip("NO_EFFECT", "7"), flip("NO_EFFECT", "8")]


def plateaus(run_dir: Path) -> list[ev.Plateau]:
    return [e for e in read_events(run_dir / "events.jsonl") if isinstance(e, ev.Plateau)]


def decided(run_dir: Path) -> list[LedgerRow]:
    return [r for r in read_results(run_dir / "results.tsv")[1] if r.exp]


def test_n_follows_the_noise_and_the_budget_left() -> None:
    # A band as wide as the gains this night finds: the base window.
    assert window(0.01, [0.01, 0.01], None).n == 8
    # A band three times the typical gain: a dry spell means less, so wait longer ...
    wide = window(0.03, [0.01], None)
    assert wide.n == 24 and "0.030000" in wide.why
    # ... but never past half of what the budget leaves.
    capped = window(0.03, [0.01], (10, "--max-experiments"))
    assert capped.n == 5 and "half of the 10 experiment(s) left by --max-experiments" in capped.why
    assert window(0.001, [0.1], None).n == MIN_WINDOW


def test_a_forced_keep_is_not_a_finding() -> None:
    rows = [LedgerRow("a", 1.0, None, "keep", "baseline", exp=0), LedgerRow("b", 0.9, None, "keep", "x", exp=1),
            LedgerRow("c", 0.95, None, "discard", "y", exp=2), LedgerRow("d", 0.9, None, "keep", "z", exp=3,
                                                                            forced=True)]
    assert since_keep(rows) == 2
    assert since_keep(rows, after=2) == 1


async def test_stop_ends_the_night_with_the_budget_left(tmp_path: Path) -> None:
    _, run_dir, _ = await night(tmp_path, steps=DRY_NIGHT, forced="", on_plateau="stop")
    [plateau] = plateaus(run_dir)
    assert plateau.action == "stop"
    # The announcing line states N and how it was derived.
    line = plateau_line(plateau)
    assert f"(N = {plateau.window}: " in line and "noise band" in line and "left by --max-experiments" in line
    rows = decided(run_dir)
    assert [r.status for r in rows[:2]] == ["keep", "keep"]
    # Stopped exactly N decided experiments after the last keep, with experiments left.
    assert len(rows) == 2 + plateau.window < len(DRY_NIGHT)
    stopped = [e for e in read_events(run_dir / "events.jsonl") if isinstance(e, ev.RunStopped)][-1]
    assert stopped.reason.startswith(f"plateau: no keep in the last {plateau.window} decided experiments")
    assert "budget left" in stopped.reason


async def test_explore_widens_the_tree_and_asks_the_proposer_to_replan(tmp_path: Path) -> None:
    _, run_dir, engine = await night(tmp_path, steps=DRY_NIGHT, forced="", on_plateau="explore", strategy="tree")
    first = plateaus(run_dir)[0]
    assert first.action == "explore"
    assert first.decided == 2 + first.window
    assert "tree exploration" in first.done and "re-plan" in first.done
    asked = [ctx.exp for ctx in engine.proposer.calls if ctx.replan]
    # The first proposal after the plateau, and only it, asked for a new plan.
    assert asked and asked[0] == first.decided + 1
    assert engine.opened.strategy.exploration > 1.0


async def test_combine_tries_the_near_misses_together(tmp_path: Path) -> None:
    steps = [flip("GAIN_A"), flip("GAIN_B"), flip("NEAR_P"), flip("NEAR_Q"), flip("WORSE"), flip("WORSE", "2"),
             flip("WORSE", "3"), flip("WORSE", "4"), flip("WORSE", "5"), flip("WORSE", "6")]
    _, run_dir, _ = await night(tmp_path, steps=steps, forced="", on_plateau="combine")
    rows = decided(run_dir)
    near = [r.exp for r in rows if r.description in ("NEAR_P 0 -> 1", "NEAR_Q 0 -> 1")]
    assert [r.status for r in rows if r.exp in near] == ["discard", "discard"]
    first = plateaus(run_dir)[0]
    assert first.action == "combine" and first.decided == 2 + first.window
    combined = [r for r in rows if r.proposer == "combine"]
    assert len(combined) == 1
    # Proposed right after the plateau, from exactly the two near-misses (WORSE is outside the band).
    assert combined[0].exp == first.decided + 1
    assert combined[0].description.startswith(f"combine exp {near[0]} (NEAR_P 0 -> 1) + exp {near[1]}")
    diff = (run_dir / "diffs" / f"{combined[0].exp}.diff").read_text()
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert sorted(line.split("#")[0].strip() for line in changed) == ["+NEAR_P = 1", "+NEAR_Q = 1", "-NEAR_P = 0",
                                                                       "-NEAR_Q = 0"]


def test_the_view_shows_a_plateau_until_a_keep_ends_it() -> None:
    from ar_tui.core.control.view import RunView

    view = RunView()
    plateau = ev.Plateau(window=3, decided=5, why="noise band ...", action="explore", done="tree exploration 1.5 -> 3")
    view.apply(ev.event_from_json(plateau.to_json()))  # as read back from events.jsonl
    assert view.plateau is not None and view.plateau.window == 3
    view.apply(ev.Decision(exp=6, status="keep", rule="gain clears", metric=1.0, best_before=1.1, best_after=1.0,
                           commit="abc", description="x", cost_usd=0.0))
    assert view.plateau is None


async def test_explore_makes_a_teams_planner_plan_again(tmp_path: Path) -> None:
    from tests.agents.test_team import PLANNER, PLANNER_USAGE, agenda_notes, answer_roles, run_engine, team_for
    from tests.conftest import make_target
    from tests.fake_messages_api import FakeMessagesAPI, RecordedRequest, edit, reply, text

    # Two gains (LR 0.4, then 0.3), then only worse ones; a long agenda, so
    # that nothing but the plateau makes the planner plan again.
    agenda = [f"set LR to {lr} - try it" for lr in ("0.4", "0.3", "0.5", "0.6", "0.45", "0.55", "0.65", "0.7")]
    plans: list[int] = []

    def planner(request: RecordedRequest):
        if request.tool_results():
            return reply(text("Agenda written."), usage=PLANNER_USAGE)
        plans.append(len(plans))
        # A fresh agenda on each plan: no plan is ever due for running short of hypotheses.
        fresh = agenda if len(plans) == 1 else [f"set LR to 0.{50 + 5 * len(plans) + i} - new" for i in range(8)]
        return reply(edit("create", path="notes.md", file_text=agenda_notes(fresh)), usage=PLANNER_USAGE)

    target = make_target(tmp_path / "target")
    run_dir = tmp_path / "run"
    with FakeMessagesAPI() as api:
        answer_roles(api)
        api.responders[PLANNER] = planner
        stopped, events = await run_engine(target, run_dir, team_for(run_dir, base_url=api.base_url, plan_every=100),
                                           max_experiments=8, on_plateau="explore")
    assert not stopped.error, stopped.reason
    plateau = [e for e in events if isinstance(e, ev.Plateau)][0]
    assert plateau.action == "explore" and plateau.decided == 2 + plateau.window
    # One plan at the start, and one more: the proposal after the plateau (a
    # second plateau at the last experiment has no proposal after it).
    assert len(plans) == 2
    from ar_tui.agents.notes import TeamMemory

    assert TeamMemory(run_dir).state.planned_at == plateau.decided  # planned again right at the plateau
    proposals = [e for e in events if isinstance(e, ev.ProposalStarted)]
    plateau_at = events.index(plateau)
    next_proposal = next(e for e in proposals if events.index(e) > plateau_at)
    assert next_proposal.exp == plateau.decided + 1


def test_on_plateau_is_a_stored_run_option_that_a_resume_may_change() -> None:
    from ar_tui.cli import build_parser, given_options, part_options
    from ar_tui.run_options import OptionConflict, RunOptions, merge

    given = given_options(build_parser().parse_args(["run", "--on-plateau", "combine"]))
    assert given["extra"] == {"on_plateau": "combine"}
    started = RunOptions(target="/t", tag="night", agent="offline", extra={"on_plateau": "explore"})
    adjustable = {option.name for option in part_options() if option.adjustable}
    assert merge(started, given, binding=True, adjustable_extra=adjustable).extra["on_plateau"] == "combine"
    # Were it not declared adjustable, the same resume would be refused.
    with pytest.raises(OptionConflict):
        merge(started, given, binding=True, adjustable_extra=adjustable - {"on_plateau"})
