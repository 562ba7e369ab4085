"""The greedy strategy on its own: pure state in, a verdict out; no git, no
processes, milliseconds."""

from __future__ import annotations

from ar_tui.core import events as ev
from ar_tui.core.decisions import RERUN, NoiseModel
from ar_tui.core.engine.parts import Candidate
from ar_tui.core.engine.state import ResearchState
from ar_tui.core.engine.strategies.base import DISCARD, KEEP, REAPPLY, Judging
from ar_tui.core.engine.strategies.greedy import GreedyStrategy

JUDGING = Judging(direction="min", metric_name="val_bpb", max_runs=2)


def state(best: float = 1.0, sd_runs: tuple[float, ...] = (), best_commit: str = "best") -> ResearchState:
    noise = NoiseModel()
    for seed, value in enumerate(sd_runs):
        noise.add(best_commit, value, seed)
    return ResearchState(noise=noise, best_commit=best_commit, best_metric=best, baseline_metric=best,
                         metric_of={best_commit: best})


def cand(runs: list[float], parent: str = "best", forced: bool = False) -> Candidate:
    return Candidate(exp=1, description="x", rationale="", diff="", base_commit=parent, commit="c1", parent=parent,
                     runs=list(runs), forced=forced)


def test_every_proposal_and_run_builds_on_the_best() -> None:
    s = state()
    greedy = GreedyStrategy()
    assert greedy.base_for_proposal(s).commit == "best"
    assert greedy.base_for_run(s, cand([], parent="old")) == "best"


def test_better_than_the_best_is_kept_and_worse_is_discarded() -> None:
    greedy = GreedyStrategy()
    kept = greedy.decide(state(), cand([0.9]), JUDGING)
    assert kept.action == KEEP and kept.metric == 0.9 and "better" in kept.rule
    dropped = greedy.decide(state(), cand([1.1]), JUDGING)
    assert dropped.action == DISCARD and "not better" in dropped.rule


def test_direction_max_turns_the_comparison_around() -> None:
    verdict = GreedyStrategy().decide(state(), cand([1.1]), Judging("max", "accuracy", 2))
    assert verdict.action == KEEP


def test_a_gain_inside_the_band_is_run_again_then_decided_on_the_mean() -> None:
    s = state(best=1.01, sd_runs=(1.00, 1.02))  # the best's two seed-varied runs: sd ~0.014, 1 dof
    greedy = GreedyStrategy()
    first = greedy.decide(s, cand([0.99]), JUDGING)
    assert first.action == RERUN and "inside" in first.rule and "1 dof" in first.rule
    second = greedy.decide(s, cand([0.99, 0.995]), JUDGING)
    assert second.action == DISCARD and "after mean of 2 runs" in second.rule


def test_a_forced_keep_is_kept_and_rebased_when_its_parent_is_stale() -> None:
    greedy = GreedyStrategy()
    fresh = greedy.decide(state(), cand([1.5], forced=True), JUDGING)
    assert fresh.action == KEEP and fresh.rule == "forced keep by the user" and not fresh.rebase
    stale = greedy.decide(state(best_commit="newer"), cand([1.5], parent="best", forced=True), JUDGING)
    assert stale.action == KEEP and stale.rebase


def test_a_winner_on_a_stale_parent_is_reapplied_on_the_new_best() -> None:
    s = state(best=0.95, best_commit="newer")
    s.metric_of["best"] = 1.0  # its own parent
    verdict = GreedyStrategy().decide(s, cand([0.97], parent="best"), JUDGING)
    assert verdict.action == REAPPLY and "re-applying it on the new best" in verdict.rule


def test_a_loser_on_a_stale_parent_is_discarded_against_its_own_parent() -> None:
    s = state(best=0.95, best_commit="newer")
    s.metric_of["best"] = 1.0
    verdict = GreedyStrategy().decide(s, cand([1.01], parent="best"), JUDGING)
    assert verdict.action == DISCARD and "against its own parent" in verdict.rule


def test_a_kept_decision_moves_the_best_and_records_the_parent() -> None:
    s = state()
    s.exp_of["best"] = 0
    c = cand([0.9])
    s.in_flight[1] = c
    s.record(c, ev.STATUS_KEEP, 0.9, "c1", parent_exp=0)
    assert (s.best_commit, s.best_metric, s.best_exp) == ("c1", 0.9, 1)
    assert s.parent_exp("best") == 0 and s.parent_exp("c1") == 1
    assert 1 not in s.in_flight and s.history[-1].status == ev.STATUS_KEEP
