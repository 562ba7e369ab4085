"""The statistics of a keep, pure: the noise model, the decision, the night's interval."""

from __future__ import annotations

import math
import random

import pytest

from ar_tui.core.config import ConfigError, load_target
from ar_tui.core.decisions import (
    DISCARD,
    KEEP,
    REMEASURE_BEST,
    RERUN,
    MinEffect,
    NoiseModel,
    decide,
    format_improvement,
    improvement_ci_pct,
    keep_is_solid,
    keep_quantile,
    night_summary,
    parse_min_effect,
    sequential_boundaries,
    t_quantile,
)
from tests.conftest import make_target


def test_pooled_noise_estimate_and_its_degrees_of_freedom() -> None:
    noise = NoiseModel()
    assert noise.sd is None and noise.dof == 0 and noise.band(3) is None
    for seed, value in enumerate((1.00, 1.02)):
        noise.add("a", value, seed)
    for seed, value in enumerate((2.00, 2.04, 2.02)):
        noise.add("b", value, seed)
    noise.add("c", 5.0, 0)  # a single run says nothing about noise
    expected = math.sqrt((2 * 0.0001 + 2 * 0.0004) / 3)
    assert abs(noise.sd - expected) < 1e-12
    assert noise.dof == 3 and noise.samples == 5
    assert not noise.jitter_only
    assert noise.runs("b") == [2.00, 2.04, 2.02] and noise.seeds["b"] == [0, 1, 2]


def test_student_t_replaces_k_sd_with_few_samples() -> None:
    # One look: the textbook one-sided 95% quantiles at 2 and 4 dof; many dof -> the normal's.
    assert abs(t_quantile(0.95, 2) - 2.919986) < 1e-5
    assert abs(keep_quantile(0.95, 1, 4) - 2.131847) < 1e-5
    assert abs(t_quantile(0.95, math.inf) - 1.644854) < 1e-5
    # Four looks at one candidate share the 5%: a first look is far stricter than a
    # single test; the last one may ask less, as futility stops discard most nulls early.
    assert keep_quantile(0.95, 4, 4, look=1, best_runs=5) > 1.5 * keep_quantile(0.95, 1, 4)
    assert keep_quantile(0.95, 4, 4, design="bonferroni") > keep_quantile(0.95, 1, 4)


def test_sequential_boundaries_are_obrien_fleming_and_fall_look_by_look() -> None:
    # The textbook two-look O'Brien-Fleming design at one-sided 2.5%, no futility stop.
    assert sequential_boundaries(0.025, 2, -50.0) == pytest.approx((2.797, 1.977), abs=2e-3)
    bounds = sequential_boundaries(0.05, 4, 0.75, 8, 7)
    assert list(bounds) == sorted(bounds, reverse=True)
    # The last look asks less than Bonferroni's split, which is where the power comes from.
    assert bounds[-1] < keep_quantile(0.95, 4, 7, design="bonferroni")
    # Fewer dof or a best of fewer runs: a higher boundary.
    assert sequential_boundaries(0.05, 4, 0.75, 8, 4)[-1] > bounds[-1]
    assert sequential_boundaries(0.05, 4, 0.75, 2, 7)[-1] > bounds[-1]


def test_the_sequential_design_keeps_five_percent_of_changes_without_effect() -> None:
    """The whole procedure, simulated: 8 baseline runs, a candidate with no
    effect run up to 4 times, futility stops, the sd estimated on the
    baseline's 7 dof. The design's promise: at most 1 - confidence kept."""
    import numpy as np

    from ar_tui.core.decisions import FUTILITY_SE

    rng = np.random.default_rng(13)
    samples, m, looks = 40000, 8, 4
    base = rng.normal(0, 1, (samples, m))
    best, sd = base.mean(1), base.std(1, ddof=1)
    cand = rng.normal(0, 1, (samples, looks))
    going, kept = np.ones(samples, bool), np.zeros(samples, bool)
    for n in range(1, looks + 1):
        z = (best - cand[:, :n].mean(1)) / (sd * math.sqrt(1 / m + 1 / n))
        newly = going & (z >= keep_quantile(0.95, looks, m - 1, look=n, best_runs=m))
        kept |= newly
        going &= ~newly & (z > FUTILITY_SE)
    assert 0.043 < kept.mean() < 0.057  # 5%, and 40,000 draws: +-0.35% at 3 sd


def _noise(sd: float, dof: int = 8, centre: float = 10.0) -> NoiseModel:
    """A noise model whose pooled sd is exactly `sd`, from dof + 1 runs of one commit."""
    noise = NoiseModel()
    values = [(-1) ** i for i in range(dof + 1)]
    middle = sum(values) / len(values)
    scale = sd / math.sqrt(sum((v - middle) ** 2 for v in values) / dof)
    for seed, v in enumerate(values):
        noise.add("base", centre + v * scale, seed)
    assert abs(noise.sd - sd) < 1e-12
    return noise


def test_decide_keeps_a_clear_gain_reruns_a_close_one_discards_worse() -> None:
    noise = _noise(0.01)
    best = [1.00, 1.00, 1.00]
    threshold = keep_quantile(0.95, 4, noise.dof, look=1, best_runs=3) * 0.01 * math.sqrt(1 + 1 / 3)
    keep = decide([1.0 - threshold * 1.01], best, noise, "min", metric_name="val_bpb")
    assert keep.action == KEEP and abs(keep.threshold - threshold) < 1e-12
    assert "95% confidence, look 1 of 4" in keep.rule and "8 dof" in keep.rule and "mean of 3 runs" in keep.rule
    assert decide([1.0 - threshold * 0.99], best, noise, "min").action == RERUN
    assert decide([1.02], best, noise, "min").action == DISCARD
    # A gain below the futility bound (in standard errors) is not worth another run.
    assert decide([1.0 - 0.001], best, noise, "min").action == DISCARD
    # After max_runs the candidate is decided on its mean: still inside the band -> discard.
    last_threshold = keep_quantile(0.95, 4, noise.dof, look=4, best_runs=4) * 0.01 * math.sqrt(1 / 4 + 1 / 4)
    inside = [1.0 - last_threshold * 0.9] * 4
    last = decide(inside, best + [1.0], noise, "min", max_runs=4)
    assert last.action == DISCARD and "after mean of 4 runs" in last.rule
    # Direction max mirrors it.
    assert decide([1.0 + threshold * 1.01], best, noise, "max").action == KEEP
    assert decide([0.98], best, noise, "max").action == DISCARD


def test_a_best_that_rests_on_one_run_is_remeasured_when_a_close_challenger_arrives() -> None:
    noise = _noise(0.01)
    close = decide([0.999], [1.00], noise, "min")
    assert close.action == REMEASURE_BEST and "re-measuring the best" in close.rule
    # Even a slightly worse challenger: the lone run of the best may be luck.
    assert decide([1.004], [1.00], noise, "min").action == REMEASURE_BEST
    # A clearly worse one is discarded; a best with more runs than the challenger is not re-measured.
    assert decide([1.2], [1.00], noise, "min").action == DISCARD
    assert decide([0.98], [1.00, 1.00, 1.00], noise, "min").action == RERUN
    # A challenger that has caught up in runs asks for the best again, up to the cap.
    assert decide([0.995, 0.995, 0.995], [1.00, 1.00], noise, "min").action == REMEASURE_BEST
    assert decide([0.99, 0.99, 0.99], [1.00, 1.00], noise, "min", max_best_runs=2).action == RERUN


def test_a_kept_best_without_fresh_runs_is_remeasured_for_a_close_challenger() -> None:
    noise = _noise(0.01)
    for seed, value in enumerate((0.97, 0.975, 0.972)):
        noise.add("lucky", value, seed)
    noise.mark_kept("lucky")  # three runs, all of them the ones that got it kept
    close = decide([0.968], noise.runs("lucky"), noise, "min")
    assert close.action == REMEASURE_BEST
    noise.add("lucky", 0.99, 9)  # one fresh run: enough against a one-run challenger
    assert decide([0.968], noise.runs("lucky"), noise, "min").action != REMEASURE_BEST


def test_a_candidate_is_judged_on_the_noise_without_its_own_runs() -> None:
    noise = _noise(0.01)
    for seed, value in enumerate((0.90, 0.90)):  # a candidate whose two runs agree exactly
        noise.add("cand", value, seed)
    assert noise.dof == 9 and noise.sd < 0.01
    assert noise.estimate_without([0.90, 0.90]) == (pytest.approx(0.01), 8)
    assert noise.estimate_without([0.5, 0.6]) == (noise.sd, noise.dof)  # not a commit: the full estimate
    rule = decide(noise.runs("cand"), noise.runs("base"), noise, "min").rule
    assert "8 dof" in rule and "sd 0.010000" in rule


def test_without_repeats_the_strict_rule_applies_and_says_so() -> None:
    noise = NoiseModel()
    noise.add("base", 1.0, 1)
    kept = decide([0.9999], [1.0], noise, "min")
    assert kept.action == KEEP and "no noise estimate" in kept.rule
    assert decide([1.0001], [1.0], noise, "min").action == DISCARD


def test_min_effect_is_a_floor_absolute_or_percent() -> None:
    assert parse_min_effect(0.002) == MinEffect(0.002)
    assert parse_min_effect("0.5%") == MinEffect(0.5, relative=True)
    assert MinEffect(0.5, relative=True).absolute(2.0) == pytest.approx(0.01)
    for bad in ("abc", -1, True, "-2%"):
        with pytest.raises(ValueError):
            parse_min_effect(bad)
    # A deterministic target: repeats agree exactly, the band is zero, the floor decides.
    noise = NoiseModel()
    for seed in range(3):
        noise.add("base", 1.0, seed)
    assert noise.jitter_only and "jitter only" in noise.describe()
    assert decide([0.999], [1.0] * 3, noise, "min").action == KEEP
    floored = decide([0.999], [1.0] * 3, noise, "min", min_effect=parse_min_effect("0.2%"))
    assert floored.action == DISCARD and "min_effect 0.002000" in floored.rule
    assert decide([0.997], [1.0] * 3, noise, "min", min_effect=parse_min_effect("0.2%")).action == KEEP


def test_min_effect_in_autoresearch_toml(tmp_path) -> None:
    target = make_target(tmp_path / "t", config='[metric]\nmin_effect = "0.3%"\n')
    assert load_target(target).min_effect == MinEffect(0.3, relative=True)
    bad = make_target(tmp_path / "b", config="[metric]\nmin_effect = \"lots\"\n")
    with pytest.raises(ConfigError, match=r"autoresearch.toml:2: metric.min_effect: must be a number"):
        load_target(bad)


def test_noise_state_round_trips_and_old_state_still_loads() -> None:
    noise = _noise(0.02, dof=3)
    noise.add("kept", 0.9, 7001)
    noise.mark_kept("kept")
    noise.add("kept", 0.95, 3)
    again = NoiseModel.from_dict(noise.to_dict())
    assert again == noise and again.fresh_runs("kept") == [0.95] and again.sd == noise.sd
    old = NoiseModel.from_dict({"k": 2.0, "groups": {"abc": [1.0, 1.1]}})
    assert old.runs("abc") == [1.0, 1.1] and old.seeds["abc"] == [None, None] and old.dof == 1


def test_the_night_interval_covers_the_truth_and_reads_as_a_sentence() -> None:
    rng = random.Random(3)
    held = 0
    for _ in range(200):
        noise = NoiseModel()
        for seed in range(5):
            noise.add("base", 1.0 + 0.01 * rng.gauss(0, 1), seed)
        for seed in range(5, 10):
            noise.add("best", 0.98 + 0.01 * rng.gauss(0, 1), seed)
        low, high = improvement_ci_pct(noise.runs("base"), noise.runs("best"), noise, "min")
        held += low <= 2.0 <= high
    assert 180 <= held <= 200  # a 95% interval, 200 draws
    assert format_improvement(2.1, (1.4, 2.8)) == "2.1% better (95% interval 1.4% to 2.8%)"
    summary = night_summary(noise, "base", "best", "min")
    assert summary["noise_dof"] == 8 and len(summary["improvement_ci_pct"]) == 2
    assert summary["improvement_text"].endswith(")") and not summary["selection_biased"]
    # Nothing kept: the best is the baseline, the improvement exactly zero.
    assert night_summary(noise, "base", "base", "min")["improvement_ci_pct"] == [0.0, 0.0]


def test_a_keep_is_solid_only_when_its_fresh_runs_hold_the_gain() -> None:
    noise = _noise(0.01, centre=1.0)
    noise.add("lucky", 0.97, 1)  # kept on one lucky run
    noise.mark_kept("lucky")
    assert keep_is_solid(noise, "lucky", "base", "min") is None  # not re-measured: unknown
    for seed, value in enumerate((1.00, 1.01, 0.99), 2):
        noise.add("lucky", value, seed)
    assert keep_is_solid(noise, "lucky", "base", "min") is False
    noise.add("real", 0.95, 1)
    noise.mark_kept("real")
    for seed, value in enumerate((0.95, 0.96, 0.94), 2):
        noise.add("real", value, seed)
    assert keep_is_solid(noise, "real", "base", "min") is True
