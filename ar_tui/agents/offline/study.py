"""The offline search on Optuna: ask-and-tell over the knobs that `knobs.py`
finds, with TPE or CMA-ES (started at the script's own values).

The space. Each knob kind maps to one distribution, centred on the value the
knob had when the study began (the baseline, or the last keep that changed
the code): log scales for rates and scales (x/÷ the kind's largest move),
1 − β on a log scale for betas and momenta, [0, 1] for ratios, the exponent
for powers of two, whole numbers for depth and heads, and a grid of the
knob's granularity for widths and batch sizes that are not powers of two.

Asked, and what ran. A sampled value is rounded the way the script writes
it (three significant digits, a width that stays a multiple of the head
size it runs with). The trial keeps the sampler's own values, because CMA-ES learns only
from trials it asked itself (an enqueued configuration carries none of its
generation state), and records the rounded configuration that ran as its
`ran` attribute: the samplers learn within a rounding of the truth, and the
ledger is compared against what ran. Experiments the search did not ask
(the baseline, another proposer's change, a study rebuilt from the ledger)
are enqueued with what they ran; TPE learns from those as from its own,
CMA-ES does not, so a CMA-ES study rebuilt from the ledger restarts its
distribution at the start point.

Out of memory. A crash going up in a memory-hungry knob (or a learning rate,
or any crash whose log says out of memory) puts a ceiling on that knob, read
from the ledger by the classic search's rules; a sampled value at or above
it is moved to the largest value of the distribution below it. A ceiling
rather than Optuna's `constraints_func`: CMA-ES has no constraints_func, and
a ceiling is a guarantee (the configuration that crashed is never run again)
where a constraint only makes the region less likely. Crashes and vetoes are
told as failed trials, never as a made-up metric.

Durable and repeatable. The study lives in the run dir as a journal file
(`offline-study.journal`). Each proposal first brings it up to date with the
ledger (`ctx.history`): a trial it asked is told its result; an experiment it
does not know (the baseline, another proposer's change, a missing journal)
is enqueued with the configuration it ran and told. When the journal
disagrees with the ledger it is rebuilt from the ledger alone. The sampler
is built afresh for every proposal, seeded from the run's seed and the
experiment number, so a fresh instance on the same journal proposes what a
long-lived one would. A new study (a re-base) begins when the knob set
changes (a knob added, removed, renamed or of another kind) or a keep
changes the code outside the knobs: results on other code would mislead.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import optuna
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.storages import InMemoryStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from ar_tui.agents.offline.classic import Search
from ar_tui.agents.offline.descriptions import key, values_text
from ar_tui.agents.offline.knobs import (
    SCALE_LINEAR,
    SCALE_LOG,
    SCALE_LOG2,
    SCALE_LOG_ONE_MINUS,
    Knob,
    Move,
    Plan,
    Values,
    granularity,
    is_head_size,
    is_model_width,
    snap_part,
)
from ar_tui.core.proposer import ProposalContext, ProposalFailed

JOURNAL_FILE = "offline-study.journal"
SAMPLERS = ("tpe", "cmaes")
TPE_STARTUP_TRIALS = 4  # random draws around the start before TPE models the results
MAX_ASKS = 30  # asks per proposal before the search admits it only finds configurations already tried
_EXP = "exp"
_SKIPPED = "skipped"
_ASKED = "asked"  # proposed by this search (not imported from the ledger)
_RAN = "ran"  # the configuration that ran, as parameters (the ask rounded as the script writes it)

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class Dimension:
    """One knob as a parameter of the study: its distribution, and the maps
    between the knob's (first part's) value and the parameter."""

    knob: Knob
    param: str
    distribution: BaseDistribution
    to_param: Callable[[float], float]
    from_param: Callable[[float], float]
    increasing: bool = True  # whether a larger parameter means a larger value (not for 1 - beta)

    def encode(self, value: float) -> float | int:
        """The parameter for `value`, kept inside the distribution and on its grid."""
        dist = self.distribution
        raw = self.to_param(value)
        raw = min(max(raw, dist.low), dist.high)
        if isinstance(dist, IntDistribution):
            return int(dist.low + round((raw - dist.low) / dist.step) * dist.step)
        return float(raw)

    def below(self, param: float | int) -> float | int | None:
        """The parameter one grid step (a twentieth of the range, for floats)
        toward smaller values of the knob, or None at the end of the range."""
        dist = self.distribution
        sign = -1 if self.increasing else 1
        if isinstance(dist, IntDistribution):
            moved = int(param) + sign * dist.step
        elif dist.log:
            moved = math.exp(math.log(param) + sign * (math.log(dist.high) - math.log(dist.low)) / 20)
        else:
            moved = param + sign * (dist.high - dist.low) / 20
        return moved if dist.low <= moved <= dist.high else None


def dimension_for(knob: Knob, start: float | int) -> Dimension | None:
    """The distribution of a knob of this kind that held `start` when the
    study began; None for a knob the space cannot hold (a log-scale 0)."""
    kind = knob.kind
    reach = round(math.exp(kind.max_step), 6)  # the kind's largest move, as a factor (x8 for a learning rate)
    name = knob.name
    identity = (lambda v: v), (lambda p: p)
    if kind.scale == SCALE_LOG2:
        # Powers of two: the exponent, an integer.
        exponent = round(math.log2(start))
        span = max(1, round(kind.max_step))
        low = max(exponent - span, math.ceil(math.log2(kind.lower)) if kind.lower else exponent - span)
        return Dimension(knob, f"log2({name})", IntDistribution(low, exponent + span),
                         lambda v: math.log2(v), lambda p: 2 ** int(p))
    if kind.scale == SCALE_LOG_ONE_MINUS:
        # Betas and momenta: 1 − β on a log scale (0.9 -> 0.95 halves it), within the kind's bounds.
        gap = 1.0 - start
        low = max(gap / reach, 1.0 - (kind.upper if kind.upper is not None else 1.0 - 1e-6))
        high = min(gap * reach, 1.0 - (kind.lower if kind.lower is not None else 0.0))
        return Dimension(knob, f"1-{name}", FloatDistribution(low, high, log=True),
                         lambda v: 1.0 - v, lambda p: 1.0 - p, increasing=False)
    if kind.scale == SCALE_LINEAR and not kind.integer:
        # Ratios and fractions: their whole bounded range.
        low = kind.lower if kind.lower is not None else start - kind.max_step
        high = kind.upper if kind.upper is not None else start + kind.max_step
        return Dimension(knob, name, FloatDistribution(low, high), *identity)
    if kind.scale == SCALE_LINEAR:
        # Depth, head counts: whole numbers, the kind's largest move either way.
        span = max(1, round(kind.max_step))
        low = max(int(start) - span, int(kind.lower) if kind.lower is not None else 1)
        return Dimension(knob, name, IntDistribution(low, int(start) + span), *identity)
    assert kind.scale == SCALE_LOG
    if kind.integer:
        # Widths, batch sizes, schedule lengths: a grid of the knob's
        # granularity anchored at its own value (768 moves in steps of 128).
        grain = granularity(start) if kind.granular else 1
        floor_value = max(kind.lower or 1, 1)
        down = max(0, int((start - max(floor_value, start / reach)) // grain))
        up = max(1, int((start * reach - start) // grain))
        return Dimension(knob, name, IntDistribution(int(start) - down * grain, int(start) + up * grain, step=grain),
                         *identity)
    if start > 0:
        return Dimension(knob, name, FloatDistribution(start / reach, start * reach, log=True), *identity)
    if kind.from_zero:
        # A weight decay of 0: linear from 0, so that 0 stays in the space.
        return Dimension(knob, name, FloatDistribution(0.0, kind.from_zero * reach), *identity)
    return None


def _settle(knob: Knob, value: float, knobs: list[Knob], moved: dict[str, Values]) -> float | int:
    """A sampled value as the script would write it; `moved` holds the knobs
    already settled in the same proposal (a width follows its new head size)."""
    kind = knob.kind
    if not kind.integer:
        return kind.snap(value, knob.value)
    value = int(round(value))
    if is_model_width(knob) or is_head_size(knob):
        # Attention reshapes the width into heads: keep the divisibility the script has.
        return snap_part(knob, 0, value, knobs, moved)
    return value


def _parts(knob: Knob, first: float | int, knobs: list[Knob], moved: dict[str, Values]) -> Values:
    """Every part's value when the first moves to `first`: the others take
    the same step in the knob's scale (`per_device(4, 12)`)."""
    kind = knob.kind
    if len(knob.parts) == 1 or not kind.movable(knob.value) or not kind.movable(first):
        return (first,) + tuple(p.value for p in knob.parts[1:])
    shift = kind.to_u(first) - kind.to_u(knob.value)
    rest = [
        snap_part(knob, i, kind.from_u(kind.to_u(p.value) + shift), knobs, moved) if kind.movable(p.value) else p.value
        for i, p in enumerate(knob.parts[1:], start=1)
    ]
    return (first, *rest)


def _ran(trial: optuna.trial.FrozenTrial) -> dict:
    """The configuration an experiment's trial ran: recorded for the ones
    this search asked, the trial's own parameters for ones imported from the ledger."""
    return dict(trial.user_attrs.get(_RAN, trial.params))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(math.isclose(a[k], b[k], rel_tol=1e-9, abs_tol=1e-12) for k in a)


class OptunaSearch:
    """One proposal's worth of the Optuna search: the study brought up to
    date with the ledger, and the next configuration asked of it."""

    def __init__(self, knobs: list[Knob], ctx: ProposalContext, seed: int, sampler: str = "tpe",
                 run_dir: Path | None = None) -> None:
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of: {', '.join(SAMPLERS)}")
        self.ledger = Search(knobs, ctx, seed)  # the ledger, read in knob space (one reading for both searches)
        self.knobs = knobs
        self.ctx = ctx
        self.seed = seed
        self.sampler_name = sampler
        self.run_dir = run_dir if run_dir is not None else ctx.run_dir
        self.start = self._start_point()
        self.dims = {
            knob.name: dim for knob in knobs
            if (dim := dimension_for(knob, self.start[knob.name])) is not None
        }
        self.distributions = {dim.param: dim.distribution for dim in self.dims.values()}
        self.study_name = self._study_name()
        self.rebuilt = False
        self.study = self._open()

    # -- the study ---------------------------------------------------------

    def _start_point(self) -> dict[str, float]:
        """The knob values when the current code began: the first experiment
        on it that the ledger can place (the baseline, or the keep that
        changed the code), else the script as it is."""
        for trial in self.ledger.trials:
            if trial.point is not None and trial.epoch == 0:
                return dict(trial.point)
        return dict(self.ledger.current)

    def _study_name(self) -> str:
        shape = [(k.name, k.kind.label, key(self.start[k.name])) for k in self.knobs]
        digest = hashlib.sha1(json.dumps(shape).encode()).hexdigest()[:12]
        return f"offline-{digest}"

    def _storage(self):
        if self.run_dir is None:
            return InMemoryStorage()
        path = Path(self.run_dir) / JOURNAL_FILE
        return JournalStorage(JournalFileBackend(str(path)))

    def _sampler(self, attempt: int) -> optuna.samplers.BaseSampler:
        # Fresh per ask, seeded by the run's seed, the experiment and the
        # attempt: the same study gives the same proposal in any process.
        seed = int.from_bytes(hashlib.sha256(f"{self.seed}:{self.ctx.exp}:{attempt}".encode()).digest()[:4], "big")
        tpe = optuna.samplers.TPESampler(seed=seed, n_startup_trials=TPE_STARTUP_TRIALS, multivariate=True)
        if self.sampler_name == "tpe":
            return tpe
        x0 = {dim.param: dim.encode(self.start[name]) for name, dim in self.dims.items()}
        with warnings.catch_warnings():
            # x0 is deprecated since Optuna 4.9 (removal planned for 6.0, which
            # pyproject excludes). The distributions are centred on the start
            # (geometrically for log scales), so CMA-ES's default mean is the
            # same point wherever a bound does not clip the range; x0 makes it
            # the start everywhere.
            warnings.simplefilter("ignore", FutureWarning)
            return optuna.samplers.CmaEsSampler(x0=x0, seed=seed, n_startup_trials=0, independent_sampler=tpe)

    def _open(self) -> optuna.Study:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = self._storage()
            # A study for another knob set or other code means this one is a re-base.
            self.earlier_studies = [name for name in optuna.get_all_study_names(storage=storage)
                                    if name != self.study_name]
            study = optuna.create_study(study_name=self.study_name, storage=storage,
                                        sampler=self._sampler(0), load_if_exists=True)
            # ... until this study has proposed something of its own.
            self.rebased = bool(self.earlier_studies) and not any(
                _ASKED in t.user_attrs for t in study.get_trials(deepcopy=False))
            if not self._sync(study):
                # The journal disagrees with the ledger (another run's file, a
                # hand edit): the ledger is the truth; start the study again from it.
                optuna.delete_study(study_name=self.study_name, storage=storage)
                study = optuna.create_study(study_name=self.study_name, storage=storage, sampler=self._sampler(0))
                self.rebuilt = True
                assert self._sync(study)
        return study

    def params_of(self, point: dict[str, float]) -> dict[str, float | int]:
        return {dim.param: dim.encode(point[name]) for name, dim in self.dims.items()}

    def _sync(self, study: optuna.Study) -> bool:
        """Tell the study every decided experiment on the current code it
        does not know yet; False when what it knows disagrees with the ledger."""
        by_exp = self._by_exp(study)
        decided = set()
        for trial in self.ledger.trials:
            if trial.point is None or trial.epoch != 0:
                continue
            decided.add(trial.exp)
            params = self.params_of(trial.point)
            value = trial.loss
            known = by_exp.get(trial.exp)
            if known is None:
                study.enqueue_trial(params, user_attrs={_EXP: trial.exp})
                asked = study.ask(self.distributions)
                known_state = None
            elif known.state == TrialState.RUNNING and not _same(_ran(known), params):
                # Re-applied on a newer best (an adaptation): what ran is the new configuration.
                study.tell(known.number, state=TrialState.FAIL)  # its exp's later trial supersedes it
                study.enqueue_trial(params, user_attrs={_EXP: trial.exp})
                asked = study.ask(self.distributions)
                known_state = None
            else:
                if not _same(_ran(known), params):
                    return False
                known_state = known.state
                asked = known.number
            if known_state in (None, TrialState.RUNNING):
                if value is None:
                    study.tell(asked, state=TrialState.FAIL)
                else:
                    study.tell(asked, value)
            elif (known_state == TrialState.COMPLETE) != (value is not None) or (
                value is not None and not math.isclose(known.value, value, rel_tol=1e-12)
            ):
                return False
        running = {exp for exp, _ in self.ctx.unseen}
        for exp, trial in by_exp.items():
            if trial.state == TrialState.RUNNING and exp not in decided and exp not in running:
                # Asked, but never decided: a proposal that failed, or one lost to a kill.
                study.tell(trial.number, state=TrialState.FAIL)
        return True

    def decided_trials(self) -> list[tuple[int, dict, str, float | None]]:
        """(exp, params, state, value) of every experiment the study holds, by exp."""
        rows = [(exp, _ran(t), t.state.name, t.value) for exp, t in self._by_exp(self.study).items()
                if t.state != TrialState.RUNNING]
        return sorted(rows, key=lambda r: r[0])

    @staticmethod
    def _by_exp(study: optuna.Study) -> dict[int, optuna.trial.FrozenTrial]:
        """The trial of each experiment: the latest that names it (an
        adaptation supersedes the trial first asked for it)."""
        return {t.user_attrs[_EXP]: t for t in study.get_trials(deepcopy=False) if _EXP in t.user_attrs}

    # -- asking ------------------------------------------------------------

    def _point_from(self, params: dict) -> dict[str, float | int]:
        """The configuration a sampled trial asks for, rounded as the script
        writes it and kept below every ceiling."""
        point: dict[str, float | int] = {}
        moved: dict[str, Values] = {}
        for name in self._settling_order():
            dim = self.dims[name]
            knob = self.ledger.by_name[name]
            param = params[dim.param]
            value = _settle(knob, dim.from_param(param), self.knobs, moved)
            ceiling = self.ledger.ceiling.get(name, math.inf)
            # Down the distribution's own grid (rounding may not move a float
            # at all, so the walk is on the parameter), until under the ceiling.
            while key(value) >= ceiling:
                param = dim.below(param)
                if param is None:
                    value = knob.value if key(knob.value) < ceiling else value
                    break
                value = _settle(knob, dim.from_param(param), self.knobs, moved)
            point[name] = value
            moved[name] = _parts(knob, value, self.knobs, moved)
        return {name: point[name] for name in self.dims}

    def _settling_order(self) -> list[str]:
        # Head sizes before widths: attention reshapes the width into heads, so
        # a width moved together with its head size is rounded to the new one.
        return sorted(self.dims, key=lambda name: not is_head_size(self.ledger.by_name[name]))

    def _values(self, point: dict[str, float | int]) -> dict[str, Values]:
        """Every part of every knob of a configuration, settled in the same order as it was asked."""
        moved: dict[str, Values] = {}
        for name in self._settling_order():
            moved[name] = _parts(self.ledger.by_name[name], point[name], self.knobs, moved)
        return moved

    def _fresh(self, point: dict[str, float | int]) -> bool:
        full = dict(self.ledger.current)
        full.update({name: key(v) for name, v in point.items()})
        point_key = self.ledger._point_key(full, 0)
        return point_key not in self.ledger.tried and point_key not in self.ledger.unseen_points

    def plan(self) -> Plan:
        if not self.dims:
            raise ProposalFailed("no knob the Optuna search can place in its space")
        study = self.study
        for attempt in range(MAX_ASKS):
            study.sampler = self._sampler(attempt)
            trial = study.ask(self.distributions)
            point = self._point_from(trial.params)
            if not self._fresh(point):
                trial.set_user_attr(_SKIPPED, "tried already")
                study.tell(trial, state=TrialState.FAIL)
                continue
            # The trial keeps what the sampler asked (CMA-ES learns only from
            # its own asks) and records what runs: the same, rounded the way
            # the script writes it.
            trial.set_user_attr(_RAN, self.params_of(point))
            trial.set_user_attr(_EXP, self.ctx.exp)
            trial.set_user_attr(_ASKED, True)
            return self._as_plan(point, attempt)
        raise ProposalFailed(
            f"the Optuna search asked {MAX_ASKS} times and found only configurations already tried or running"
        )

    def _as_plan(self, point: dict[str, float | int], attempt: int) -> Plan:
        moves = []
        values = self._values(point)
        for name, value in point.items():
            knob = self.ledger.by_name[name]
            if key(value) == key(knob.value):
                continue
            moves.append(Move(knob, values[name], "optuna", f"{name} -> {values_text(values[name])}"))
        complete = [t for t in self.study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
        sampler = "CMA-ES (from the script's values)" if self.sampler_name == "cmaes" else "TPE"
        reasoning = [
            f"Optuna {sampler} over {len(self.dims)} knobs: {len(complete)} results in the study"
            + (" (rebuilt from the ledger)" if self.rebuilt else "")
            + (f", {attempt} asks skipped as already tried" if attempt else "")
            + "."
        ]
        if self.rebased:
            reasoning.append("Re-based: the knob set or the code around it changed since the last study; "
                             "a new study starts from the current best (the old results were on other code).")
        if self.ledger.ceiling:
            reasoning.append("Ceilings after crashes: "
                             + ", ".join(f"{n} < {v:g}" for n, v in sorted(self.ledger.ceiling.items())) + ".")
        return Plan(moves, reasoning)
