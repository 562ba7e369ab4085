"""Keep or discard, honestly under noise.

Any change to a training script re-draws its luck: initialisation, data order,
kernel timing. So the question a keep must answer is "is this better than the
best by more than a re-draw would be?", and the noise that matters is the
spread between runs of the same code with *different seeds*. The harness owns
the seed (`ar_tui.core.seeds`): every run gets its own `AR_SEED`, so the
repeats recorded here (the baseline's runs, every re-run of a candidate, every
re-measure of the best) are seed-varied by construction.

The noise model pools them: the within-commit variance of every commit run
more than once, weighted by its degrees of freedom (n - 1 per commit). With
few samples the standard deviation is itself uncertain, so every comparison
uses Student-t quantiles at the pooled degrees of freedom rather than a fixed
"k standard deviations": with 3 baseline runs (2 dof) a single one-sided 95%
test needs 2.92 standard errors, not 1.64; with the default 8 (7 dof) 1.89,
falling toward 1.64 as the night's repeats add dof. The sd that judges a
candidate leaves out the candidate's own runs (`estimate_without`): they
would move it at every look and give a change without effect extra chances.

A decision compares the mean of the candidate's runs with the mean of all the
best's runs, with the pooled sd, as a sequential design over the candidate's
runs (its "looks", up to `max_runs`):

    gain = improvement(candidate mean, best mean)
    se   = sd * sqrt(1/n_candidate + 1/n_best)
    c_n  = the design's boundary at look n (below), for an sd estimated on
           the pooled degrees of freedom
    keep        when gain >= max(c_n * se, min_effect)
    re-measure  the best when it owes its place to one run (or has fewer runs,
                or fewer runs made after its keep, than the challenger) and the
                challenger is close (gain above -c_n * se): a lucky
                incumbent's runs must not block a real gain
    discard     (futility) when the gain is not positive, or below
                FUTILITY_SE (0.75) standard errors: another run would rarely
                reach the boundary;
                and when it is still inside the band after max_runs runs
    re-run      the candidate with a new seed otherwise

The boundaries (`sequential_boundaries`) have O'Brien-Fleming's shape,
c_n = c * sqrt(max_runs / n): a first run must be far ahead to be kept at once,
and the last look asks about what a single test would (less, at few dof: the
futility stops have already discarded most changes without effect). c is
solved, by numerical integration, so that the chance of keeping a change with
no effect over all the looks, the futility stops binding, is 1 - confidence,
with the best's own error (a best of m runs) and the sd's estimation error (its
dof) integrated out: both are shared by every look of a candidate. This
replaced a Bonferroni split of 1 - confidence over the looks, which ignored
how alike a candidate's looks are (its mean after 3 runs holds its first 2)
and paid for it in power: the benchmark (`bench/noise_decisions.py`,
docs/benchmarks/noise-decisions.md) measured 63% power at a 2-sd effect on a single
decision with Bonferroni and 5 baseline runs, 85% with this design and 8.

The best's own runs were chosen for looking good, so they lean lucky (the
winner's curse). `NoiseModel.selected` remembers how many runs a commit had
when it was kept; runs after that (re-measures, and the engine's confirmation
of the best before the report) are `fresh_runs`, and the night's interval and
"solid or not" use those.

Where the target ignores the seed, its repeats agree to within float noise and
the band measures jitter only. `jitter_only` says so, for the app, the status
and the report, and `[metric] min_effect` (absolute, or "x%" of the best) is
the floor that then stands in for the missing seed noise. Without any repeat
at all (one baseline run) there is no estimate and the strict rule applies:
any gain of at least `min_effect` is kept, as the rule text says.

Everything here is pure: no toolkit, no I/O. `NoiseModel.to_dict` /
`from_dict` carry the state across a resume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

from ar_tui.core import events as ev
from ar_tui.core.direction import Direction

KEEP = ev.STATUS_KEEP
DISCARD = ev.STATUS_DISCARD
RERUN = "rerun"  # run the candidate again with a new seed
REMEASURE_BEST = "remeasure"  # run the best again with a new seed, then decide again

DEFAULT_CONFIDENCE = 0.95
DEFAULT_MAX_RUNS = 4
DEFAULT_BASELINE_RUNS = 8

# Repeats whose pooled sd is below this share of the metric agree to within
# float noise (the ledger writes six decimals): the seed did not reach the
# training, so the band measures jitter only. Seed-to-seed spreads of real
# training runs are orders of magnitude above it (about 1% of val_bpb on the
# bundled CPU target at 60 s).
JITTER_RELATIVE_SD = 1e-6
JITTER_ABSOLUTE_SD = 1e-9
# A candidate whose gain is below this many standard errors is not worth
# another run: it would rarely reach the keep threshold, and re-running such
# candidates is what spends a night's runs on changes with no effect.
FUTILITY_SE = 0.75
# The Bonferroni rule's futility, as it was (the benchmark's comparison).
BONFERRONI_FUTILITY_SE = 0.5


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def t_quantile(probability: float, dof: float) -> float:
    """The Student-t quantile (scipy's, exact); the normal one for infinite dof."""
    from scipy.stats import norm, t

    if math.isinf(dof):
        return float(norm.ppf(probability))
    return float(t.ppf(probability, dof))


def keep_quantile(confidence: float, max_runs: int, dof: float, look: int = 1,
                  design: str = "sequential", best_runs: float = math.inf) -> float:
    """The t a gain must clear at a candidate's `look`-th run (1-based), in
    standard errors. `design` "sequential" (the engine's): the boundary of the
    sequential design at that look against a best of `best_runs` runs, with
    the sd estimated on `dof` degrees of freedom. "bonferroni" (the rule
    before it, kept for the benchmark's comparison): 1 - confidence split
    evenly over the `max_runs` looks."""
    looks = max(1, max_runs)
    if design == "bonferroni":
        return t_quantile(1 - (1 - confidence) / looks, dof)
    if design != "sequential":
        raise ValueError(f"unknown design {design!r}; choose sequential or bonferroni")
    if looks == 1:
        return t_quantile(confidence, dof)
    # Fewer dof and fewer runs of the best both need a higher boundary, so rounding
    # them down to a few steps is conservative and keeps the boundaries a small cache.
    dof_step = max((d for d in DESIGN_STEPS if d <= dof), default=1) if not math.isinf(dof) else math.inf
    best_step = max((b for b in DESIGN_STEPS if b <= best_runs), default=1) if not math.isinf(best_runs) else math.inf
    boundaries = sequential_boundaries(round(1 - confidence, 12), looks, FUTILITY_SE, best_step, dof_step)
    return boundaries[min(max(1, look), looks) - 1]


# The integration's grid (in standard errors) and its nodes over the best's error.
DESIGN_GRID_STEP = 0.04
DESIGN_OFFSET_NODES = 10
# The largest final-look boundary the design is solved over (else Bonferroni).
DESIGN_MAX_C = 8.0
# The dof and best-run counts that sequential boundaries are solved for (see keep_quantile).
DESIGN_STEPS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 30, 50)


@lru_cache(maxsize=512)
def sequential_boundaries(alpha: float, looks: int, futility: float,
                          best_runs: float = math.inf, dof: float = math.inf) -> tuple[float, ...]:
    """The boundaries c_1..c_looks, in estimated standard errors, of an
    O'Brien-Fleming design (c_n = c * sqrt(looks / n)) whose chance of keeping
    a change with no effect, over all its looks, is `alpha`, when a look at or
    below `futility` standard errors stops the candidate (binding), the best
    is the mean of `best_runs` runs (inf: known exactly) and the sd is
    estimated on `dof` degrees of freedom (inf: known).

    Exact up to the grids. With the best's error b (normal, variance
    1/best_runs) and V_n the sum of the candidate's n standardised errors plus
    n * b, the gain after n runs is V_n / n and V_n's increments are
    independent N(b, 1): the density of V_n over the candidates still going is
    carried look to look by one convolution (Armitage, McPherson and Rowe's
    recursive integration). b is integrated out by Gauss-Hermite quadrature,
    and the estimated sd's ratio to the true one, r (sqrt(chi2(dof) / dof)),
    over equal-probability quantiles: a t-boundary c is the z-boundary c * r.
    Both shared errors matter: a best measured low, or an sd estimated low,
    helps every look of a challenger at once, which mapping each z boundary
    to a t quantile on its own does not see (the benchmark measured 7% false
    keeps that way)."""
    import numpy as np
    from scipy.optimize import brentq
    from scipy.signal import fftconvolve
    from scipy.stats import chi2, norm

    if looks <= 1:
        return (t_quantile(1 - alpha, dof),)
    step = DESIGN_GRID_STEP
    if math.isinf(best_runs):
        offsets, offset_weights = np.zeros(1), np.ones(1)
    else:
        nodes, offset_weights = np.polynomial.hermite_e.hermegauss(DESIGN_OFFSET_NODES)
        offsets, offset_weights = nodes / math.sqrt(best_runs), offset_weights / math.sqrt(2 * math.pi)
    if math.isinf(dof):
        ratios, shares = np.ones(1), np.ones(1)
    else:
        # Midpoints of probability slices, finest where the sd is estimated low:
        # there a null candidate is most often kept.
        edges = np.array([0.0, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15,
                          *(i / 10 for i in range(2, 10)), 0.95, 1.0])
        ratios, shares = np.sqrt(chi2.ppf((edges[1:] + edges[:-1]) / 2, dof) / dof), np.diff(edges)
    # One row per (r, b) pair; the gain is measured in estimated standard
    # errors (W = V / r), so every row shares the bounds and the grid.
    r = np.repeat(ratios, len(offsets))[:, None]
    b = np.tile(offsets, len(ratios))[:, None]
    weights = np.repeat(shares, len(offsets)) * np.tile(offset_weights, len(ratios))
    se = [math.sqrt(1 / best_runs + 1 / n) for n in range(1, looks + 1)]
    lower = [n * futility * se[n - 1] for n in range(1, looks + 1)]

    def keep_chance(c: float) -> float:
        upper = [n * c * math.sqrt(looks / n) * se[n - 1] for n in range(1, looks + 1)]
        width = max(upper) - min(lower[:-1])
        spacing = max(step, width / 2000)  # a bounded grid however wide the bounds
        grid = np.arange(min(lower[:-1]), max(upper), spacing) + spacing / 2
        size = len(grid)
        chance = norm.sf(r[:, 0] * upper[0] - b[:, 0])
        if size >= 2:  # else no room between the bounds: every candidate stops at its first look
            kernel = r * norm.pdf(r * (np.arange(2 * size - 1) - (size - 1)) * spacing - b) * spacing
            density = r * norm.pdf(r * grid - b) * ((grid > lower[0]) & (grid < upper[0]))
            for n in range(2, looks + 1):
                chance = chance + np.sum(density * norm.sf(r * (upper[n - 1] - grid) - b), axis=1) * spacing
                if n < looks:
                    spread = fftconvolve(density, kernel, axes=1)[:, size - 1:2 * size - 1]
                    density = spread * ((grid > lower[n - 1]) & (grid < upper[n - 1]))
        return float(np.sum(weights * chance)) - alpha

    if keep_chance(DESIGN_MAX_C) > 0:
        # Too few dof for the design to pay (one dof: a t with Cauchy tails):
        # Bonferroni's even split, valid however the looks correlate.
        return (t_quantile(1 - alpha / looks, dof),) * looks
    c = brentq(keep_chance, 0.1, DESIGN_MAX_C, xtol=1e-4)
    return tuple(c * math.sqrt(looks / n) for n in range(1, looks + 1))


@dataclass(frozen=True)
class MinEffect:
    """`[metric] min_effect`: the smallest gain worth keeping, absolute or a
    percentage of the best's metric."""

    value: float
    relative: bool = False

    def absolute(self, reference: float) -> float:
        return abs(reference) * self.value / 100.0 if self.relative else self.value

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.relative else f"{self.value:g}"


def parse_min_effect(value: object) -> MinEffect:
    """`0.002` or `"0.5%"` -> MinEffect; raises ValueError with a one-line reason."""
    if isinstance(value, bool):
        raise ValueError("must be a number or a percentage such as \"0.5%\"")
    relative = isinstance(value, str) and value.strip().endswith("%")
    text = value.strip().rstrip("%").strip() if isinstance(value, str) else value
    try:
        number = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"must be a number or a percentage such as \"0.5%\", not {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"must be 0 or more, not {value!r}")
    return MinEffect(number, relative)


NO_MIN_EFFECT = MinEffect(0.0)


@dataclass
class NoiseModel:
    """Runs of each commit (metric and seed), pooled into one estimate of the
    seed-to-seed standard deviation."""

    groups: dict[str, list[float]] = field(default_factory=dict)  # commit -> metrics of its runs
    seeds: dict[str, list[int | None]] = field(default_factory=dict)  # commit -> the seed of each run
    # commit -> how many of its runs it had when it was kept: those runs were
    # chosen for looking good, so only the later ones measure it fairly
    selected: dict[str, int] = field(default_factory=dict)

    def add(self, commit: str, metric: float, seed: int | None = None) -> None:
        self.groups.setdefault(commit, []).append(metric)
        self.seeds.setdefault(commit, []).append(seed)

    def _key(self, commit: str) -> str | None:
        if commit in self.groups:
            return commit
        matches = [c for c in self.groups if commit and c.startswith(commit)]
        return matches[0] if len(matches) == 1 else None

    def runs(self, commit: str) -> list[float]:
        """The metrics of every run of `commit` (a full sha, or a prefix of one)."""
        key = self._key(commit)
        return list(self.groups[key]) if key is not None else []

    def mark_kept(self, commit: str) -> None:
        self.selected[commit] = len(self.groups.get(commit, []))

    def fresh_runs(self, commit: str) -> list[float]:
        """The runs of `commit` made after it was kept (all of them for the
        baseline, which nothing selected): an unbiased measure of it."""
        key = self._key(commit)
        return list(self.groups[key][self.selected.get(key, 0):]) if key is not None else []

    @property
    def dof(self) -> int:
        return sum(len(v) - 1 for v in self.groups.values() if len(v) > 1)

    @property
    def samples(self) -> int:
        return sum(len(v) for v in self.groups.values() if len(v) > 1)

    @property
    def sd(self) -> float | None:
        """Pooled standard deviation over every commit run more than once."""
        squares, dof = 0.0, 0
        for values in self.groups.values():
            if len(values) > 1:
                centre = mean(values)
                squares += sum((v - centre) ** 2 for v in values)
                dof += len(values) - 1
        return math.sqrt(squares / dof) if dof else None

    def fresh_count(self, runs: list[float]) -> int:
        """How many of the runs of the commit whose runs are exactly `runs` were
        made after it was kept (all of them for a commit never kept, or
        unknown to the model)."""
        for commit, values in self.groups.items():
            if values == runs:
                return len(values) - self.selected.get(commit, 0)
        return len(runs)

    def estimate_without(self, runs: list[float]) -> tuple[float | None, int]:
        """The pooled (sd, dof) without the commit whose runs are exactly `runs`
        (the candidate being judged). A candidate's own runs would move the sd
        that judges it at every look, which gives a change with no effect extra
        chances to cross (the benchmark measured 6.4% false keeps at 95% that
        way). The full estimate when no such commit exists, or when nothing
        else was repeated."""
        squares, dof, skipped = 0.0, 0, False
        for values in self.groups.values():
            if len(values) > 1:
                if not skipped and values == runs:
                    skipped = True
                    continue
                centre = mean(values)
                squares += sum((v - centre) ** 2 for v in values)
                dof += len(values) - 1
        if not skipped or not dof:
            return self.sd, self.dof
        return math.sqrt(squares / dof), dof

    @property
    def jitter_only(self) -> bool:
        """True when the repeats agree to within float noise: the target does
        not use its seed, and the band measures timing jitter at most."""
        sd = self.sd
        if sd is None:
            return False
        scale = max((abs(v) for values in self.groups.values() for v in values), default=0.0)
        return sd <= JITTER_RELATIVE_SD * scale + JITTER_ABSOLUTE_SD

    def band(self, best_runs: int, confidence: float = DEFAULT_CONFIDENCE,
             max_runs: int = DEFAULT_MAX_RUNS) -> float | None:
        """The gain a one-run candidate must clear against a best of `best_runs` runs."""
        sd = self.sd
        if sd is None:
            return None
        return keep_quantile(confidence, max_runs, self.dof, look=1, best_runs=max(1, best_runs)) * sd * math.sqrt(1.0 + 1.0 / max(1, best_runs))

    def describe(self) -> str:
        """One line for the app, the status and the report."""
        sd = self.sd
        if sd is None:
            return "no noise estimate yet (no commit run more than once)"
        text = f"noise sd {sd:.6f} from {self.samples} seed-varied runs ({self.dof} dof)"
        if self.jitter_only:
            text += ("; the repeats agree to float precision, so the band measures jitter only "
                     "(the target ignores AR_SEED; set [metric] min_effect)")
        return text

    def to_dict(self) -> dict:
        return {"groups": self.groups, "seeds": self.seeds, "selected": self.selected}

    @classmethod
    def from_dict(cls, data: dict) -> "NoiseModel":
        groups = {c: [float(v) for v in values] for c, values in data.get("groups", {}).items()}
        seeds = {c: list(data.get("seeds", {}).get(c, [None] * len(values))) for c, values in groups.items()}
        selected = {c: int(n) for c, n in data.get("selected", {}).items() if c in groups}
        return cls(groups=groups, seeds=seeds, selected=selected)


@dataclass(frozen=True)
class Verdict:
    """What a finished, measured run means: the answer of a search strategy,
    and of `decide` (a `Decision` is a verdict with its statistics)."""

    action: str  # KEEP, DISCARD, RERUN, REMEASURE_BEST (run the best again, then ask again) or REAPPLY
    rule: str  # what was compared, over how many runs, at what confidence
    metric: float | None = None  # the mean of the candidate's runs
    # A forced keep built on a stale parent: re-apply it on the best first;
    # when that conflicts it is discarded with `rebase_failed_rule`.
    rebase: bool = field(default=False, kw_only=True)


@dataclass(frozen=True)
class Decision(Verdict):
    best: float = field(kw_only=True)  # the mean of the best's runs
    gain: float = field(kw_only=True)  # positive when the candidate is better
    threshold: float | None = field(kw_only=True)  # the gain it had to clear; None without a noise estimate


def decide(
    candidate: list[float],
    best: list[float],
    noise: NoiseModel,
    direction: Direction | str,
    confidence: float = DEFAULT_CONFIDENCE,
    max_runs: int = DEFAULT_MAX_RUNS,
    min_effect: MinEffect = NO_MIN_EFFECT,
    metric_name: str = "metric",
    max_best_runs: int | None = None,
    design: str = "sequential",
) -> Decision:
    """Keep, discard, re-run the candidate, or re-measure the best.

    `candidate` and `best` are the metrics of all their runs (the best's
    estimate is the mean of all of them). `max_best_runs` bounds re-measures
    of the best (default 2 * max_runs). `design`: see `keep_quantile`."""
    if not candidate or not best:
        raise ValueError("a decision needs at least one run of the candidate and of the best")
    direction = Direction.parse(direction)
    n_cand, n_best = len(candidate), len(best)
    cand_mean, best_mean = mean(candidate), mean(best)
    gain = direction.improvement(cand_mean, best_mean)
    floor = min_effect.absolute(best_mean)
    shown = (f"{metric_name} {cand_mean:.6f} ({_runs(n_cand)}) vs best {best_mean:.6f} ({_runs(n_best)})")
    floor_text = f", min_effect {floor:.6f}" if floor > 0 else ""

    def verdict(action: str, text: str, threshold: float | None) -> Decision:
        return Decision(action, f"{shown}: {text}", cand_mean, best=best_mean, gain=gain, threshold=threshold)

    sd, dof = noise.estimate_without(list(candidate)) if design == "sequential" else (noise.sd, noise.dof)
    if sd is None:
        if gain > 0 and gain >= floor:
            return verdict(KEEP, f"better (no noise estimate: no commit run twice; strict rule{floor_text})", floor)
        return verdict(DISCARD, f"not better by min_effect {floor:.6f}" if gain > 0 else "not better", floor)

    t = keep_quantile(confidence, max_runs, dof, look=n_cand, design=design, best_runs=n_best)
    se = sd * math.sqrt(1.0 / n_cand + 1.0 / n_best)
    threshold = max(t * se, floor)
    looks = (f"look {min(n_cand, max(1, max_runs))} of {max_runs}" if design == "sequential"
             else f"over {max_runs} looks")
    band_text = (f"{threshold:.6f} (t {t:.2f}: {confidence:.0%} confidence, {looks}, {dof} dof; "
                 f"x sd {sd:.6f} x sqrt(1/{n_cand}+1/{n_best}){floor_text})")
    if noise.jitter_only:
        band_text += " [repeats agree to float precision: jitter only]"
    if gain > 0 and gain >= threshold:
        return verdict(KEEP, f"gain {gain:.6f} clears {band_text}", threshold)
    limit = max_best_runs if max_best_runs is not None else 2 * max_runs
    close = gain > -t * se
    # A best kept on runs chosen for looking good leans lucky until fresh runs
    # (made after its keep) measure it: a challenger with more runs than it has
    # fresh ones asks for another (the benchmark: a lucky best blocked the real
    # gain after it in most nights that had one).
    lucky_incumbent = n_best == 1 or n_best < n_cand or noise.fresh_count(list(best)) < n_cand
    if close and lucky_incumbent and n_best < limit and se > 0:
        return verdict(REMEASURE_BEST, f"gain {gain:.6f} is close and the best rests on {_runs(n_best)}: "
                                       f"re-measuring the best with a new seed (band {band_text})", threshold)
    if gain <= 0:
        return verdict(DISCARD, f"not better (band {band_text})", threshold)
    if gain <= (FUTILITY_SE if design == "sequential" else BONFERRONI_FUTILITY_SE) * se:
        return verdict(DISCARD, f"gain {gain:.6f} too small to be worth another run (band {band_text})", threshold)
    if n_cand < max_runs and se > 0:
        return verdict(RERUN, f"gain {gain:.6f} inside {band_text}; running again with a new seed", threshold)
    return verdict(DISCARD, f"gain {gain:.6f} still inside {band_text} after {_runs(n_cand)}", threshold)


def _runs(n: int) -> str:
    return "1 run" if n == 1 else f"mean of {n} runs"


# ---------------------------------------------------------------------- the night's figures


def improvement_pct(baseline: float, best: float, direction: Direction | str) -> float | None:
    """How much better the best is than the baseline, in % of the baseline."""
    if not baseline:
        return None
    return 100.0 * Direction.parse(direction).improvement(best, baseline) / abs(baseline)


def improvement_ci_pct(
    baseline_runs: list[float],
    best_runs: list[float],
    noise: NoiseModel,
    direction: Direction | str,
    confidence: float = DEFAULT_CONFIDENCE,
) -> tuple[float, float] | None:
    """The two-sided `confidence` interval of the improvement, in % of the
    baseline's mean: the difference of the two means +- t * sd * sqrt(1/n + 1/m).
    None without a noise estimate. The best was selected for looking good, so
    its mean leans lucky: the interval is honest about noise, not about that
    selection; re-measures of the best (which the decisions ask for) shrink it."""
    sd = noise.sd
    if sd is None or not baseline_runs or not best_runs:
        return None
    base = mean(baseline_runs)
    if not base:
        return None
    if baseline_runs == best_runs:
        return 0.0, 0.0  # nothing was kept: the best is the baseline itself
    gain = Direction.parse(direction).improvement(mean(best_runs), base)
    half = t_quantile(0.5 + confidence / 2, noise.dof) * sd * math.sqrt(1 / len(baseline_runs) + 1 / len(best_runs))
    return 100.0 * (gain - half) / abs(base), 100.0 * (gain + half) / abs(base)


def noise_sd(noise: NoiseModel) -> float | None:
    return noise.sd


def noise_dof(noise: NoiseModel) -> int:
    return noise.dof


def keep_is_solid(
    noise: NoiseModel,
    commit: str,
    parent: str,
    direction: Direction | str,
    confidence: float = DEFAULT_CONFIDENCE,
) -> bool | None:
    """Whether a keep's gain over its parent holds on runs made after it was
    kept (its own runs were chosen for looking good), at `confidence` with the
    night's final noise estimate. None when it was never re-measured or there
    is no noise estimate: the report says "unconfirmed"."""
    fresh, parent_runs = noise.fresh_runs(commit), noise.runs(parent)
    sd = noise.sd
    if sd is None or not fresh or not parent_runs:
        return None
    gain = Direction.parse(direction).improvement(mean(fresh), mean(parent_runs))
    se = sd * math.sqrt(1 / len(fresh) + 1 / len(parent_runs))
    return gain > 0 and gain >= t_quantile(confidence, noise.dof) * se


def format_improvement(pct: float | None, interval: tuple[float, float] | None,
                       confidence: float = DEFAULT_CONFIDENCE) -> str:
    """`2.1% better (95% interval 1.4% to 2.8%)`."""
    if pct is None:
        return "-"
    word = "better" if pct >= 0 else "worse"
    text = f"{abs(pct):.1f}% {word}"
    if interval is not None:
        text += f" ({confidence:.0%} interval {interval[0]:.1f}% to {interval[1]:.1f}%)"
    return text


def night_summary(noise: NoiseModel, baseline_commit: str, best_commit: str, direction: Direction | str,
                  confidence: float = DEFAULT_CONFIDENCE) -> dict:
    """The figures `ar-tui report --json` publishes about noise and the night's
    improvement, from the noise state that state.json keeps."""
    baseline_runs = noise.runs(baseline_commit)
    # The best's fresh runs (made after it was kept) measure it fairly; its
    # selection runs lean lucky. Without fresh runs, all of them, flagged.
    fresh = noise.fresh_runs(best_commit)
    best_runs = fresh or noise.runs(best_commit)
    pct = improvement_pct(mean(baseline_runs), mean(best_runs), direction) if baseline_runs and best_runs else None
    interval = improvement_ci_pct(baseline_runs, best_runs, noise, direction, confidence)
    return {
        "improvement_pct": pct,
        "improvement_ci_pct": list(interval) if interval is not None else None,
        "noise_sd": noise_sd(noise),
        "noise_dof": noise_dof(noise),
        "noise_jitter_only": noise.jitter_only,
        "best_fresh_runs": len(fresh),
        "selection_biased": not fresh,
        "confidence": confidence,
        "improvement_text": format_improvement(pct, interval, confidence),
    }
