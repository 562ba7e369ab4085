"""The UCB bandit the team and the hybrid share: untried arms first, then improvement per dollar with exploration."""

from __future__ import annotations

import pytest

from ar_tui.agents.allocation import UCBBandit


def test_every_arm_is_tried_once_in_the_order_given():
    bandit = UCBBandit(["a", "b", "c"])
    picks = []
    for _ in range(3):
        arm = bandit.choose()
        picks.append(arm)
        bandit.reward(arm, 0.0, 0.01, 0.0)
    assert picks == ["a", "b", "c"]


def test_the_arm_that_buys_more_improvement_per_dollar_is_picked_most():
    bandit = UCBBandit(["expensive", "cheap"], exploration=0.5)
    # Both improve by the same amount per experiment; one costs ten times more.
    picks = {"expensive": 0, "cheap": 0}
    for _ in range(40):
        arm = bandit.choose()
        picks[arm] += 1
        bandit.reward(arm, 0.01, 0.10 if arm == "expensive" else 0.01, 0.0)
    assert picks["cheap"] > 3 * picks["expensive"] >= 3
    assert bandit.stats["cheap"].mean == pytest.approx(1.0)


def test_no_improvement_anywhere_explores_evenly_and_unknown_arms_are_ignored():
    bandit = UCBBandit(["a", "b"])
    bandit.reward("gone", 5.0, 0.01, 0.0)
    for _ in range(10):
        bandit.reward(bandit.choose(), 0.0, 0.01, 0.0)
    assert bandit.stats["a"].pulls == bandit.stats["b"].pulls == 5
    with pytest.raises(ValueError):
        UCBBandit([])
