"""The changes a night made, as a reviewer needs them: one per node on the
best's lineage, oldest first.

A node's change is the diff between its commit and that commit's parent,
which is the code it was built on when it ran (a rebase on a newer best made
a new commit on the new base). Discarded nodes that a tree or island search
built on are on the lineage too: their change is in the best's code, so it is
a change of the final branch even though the night never kept it on its own.

Everything comes from the run dir (results.tsv for the decisions and the
parents, state.json for every run's metric) and the target's git, so this
works on a finished run without an engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ar_tui.core import events as ev
from ar_tui.core.decisions import DEFAULT_CONFIDENCE, NoiseModel, mean, t_quantile
from ar_tui.core.direction import Direction
from ar_tui.core.errors import UserError
from ar_tui.core.records.git import GIT_ERRORS, GitRepo
from ar_tui.core.records.ledger import LedgerRow, read_results, read_state
from ar_tui.core.records.rundir import RunDir


@dataclass
class Effect:
    """A gain (positive: better) with its two-sided interval, in metric units."""

    gain: float
    low: float | None
    high: float | None
    runs: int  # of the side measured (the change's node)
    reference_runs: int  # of what it is compared with

    def text(self, metric: str, confidence: float) -> str:
        shown = f"{metric} {'improved' if self.gain >= 0 else 'worsened'} by {abs(self.gain):.6f}"
        if self.low is not None and self.high is not None:
            shown += f" ({confidence:.0%} interval {self.low:+.6f} to {self.high:+.6f})"
        return shown + f", {self.runs} run(s) vs {self.reference_runs}"


@dataclass
class Change:
    exp: int
    description: str
    rationale: str
    status: str  # the night's verdict on the node: keep, or discard for a node a search built on
    forced: bool
    commit: str  # the node's commit (full sha)
    parent_commit: str  # the code it was built on
    parent_exp: int | None
    diff: str
    metric: float | None
    cost_usd: float
    gpu_usd: float | None
    seconds: float
    rule: str
    effect: Effect | None  # its measured gain over the node it was built on

    @property
    def cost_text(self) -> str:
        total = self.cost_usd + (self.gpu_usd or 0.0)
        text = f"${total:.2f}"
        if self.gpu_usd is not None:
            text += f" (tokens ${self.cost_usd:.2f}, GPU ${self.gpu_usd:.2f})"
        return text + f", {self.seconds:.1f} s of training"


@dataclass
class Night:
    """What finalize needs to know about a finished run."""

    run_dir: RunDir
    tag: str
    git: GitRepo
    metric: str
    direction: Direction
    confidence: float
    noise: NoiseModel
    rows: list[LedgerRow]
    base_commit: str  # the baseline's code: the final branch starts here
    best_exp: int | None
    best_commit: str
    changes: list[Change] = field(default_factory=list)

    @property
    def rejected(self) -> list[LedgerRow]:
        on_path = {c.exp for c in self.changes}
        return [r for r in self.rows if r.exp not in (0, None) and r.exp not in on_path
                and r.status != ev.STATUS_KEEP]

    def runs(self, commit: str) -> list[float]:
        return self.noise.runs(commit)

    def effect(self, runs: list[float], reference: list[float]) -> Effect | None:
        return effect_between(runs, reference, self.noise, self.direction, self.confidence)


def effect_between(runs: list[float], reference: list[float], noise: NoiseModel, direction: Direction,
                   confidence: float = DEFAULT_CONFIDENCE) -> Effect | None:
    """The gain of `runs` over `reference` with the night's pooled sd: the
    same interval the report gives the night's improvement."""
    if not runs or not reference:
        return None
    gain = direction.improvement(mean(runs), mean(reference))
    sd = noise.sd
    if sd is None:
        return Effect(gain, None, None, len(runs), len(reference))
    half = t_quantile(0.5 + confidence / 2, noise.dof) * sd * math.sqrt(1 / len(runs) + 1 / len(reference))
    return Effect(gain, gain - half, gain + half, len(runs), len(reference))


def read_night(run_dir: Path, confidence: float | None = None) -> Night:
    """The finished run in `run_dir`; a UserError (one line) when it is not one
    finalize can work on."""
    paths = RunDir(Path(run_dir).resolve())
    if not paths.ledger.is_file():
        raise UserError(f"{paths.path}: no results.tsv here; is this a run dir?")
    state = read_state(paths.path) or {}
    target, tag = state.get("target"), state.get("tag")
    if not target or not tag:
        raise UserError(f"{paths.path}: state.json does not name the run's target and tag")
    metric, rows, _ = read_results(paths.ledger)
    try:
        git = GitRepo(Path(target), tag)
    except GIT_ERRORS as exc:
        raise UserError(f"{target}: git failed: {str(exc).splitlines()[0]}") from None
    baseline = next((r for r in rows if r.exp == 0), None)
    if baseline is None:
        raise UserError(f"{paths.path}: the run has no baseline yet; nothing to finalize")
    noise = NoiseModel.from_dict(state.get("noise", {}))
    direction = Direction.parse(_direction_of(paths, target))
    keeps = [r for r in rows if r.status == ev.STATUS_KEEP and r.metric is not None]
    best = keeps[-1]
    night = Night(paths, tag, git, metric, direction, confidence or _confidence_of(paths), noise, rows,
                  _resolve(git, baseline.commit), best.exp, _resolve(git, best.commit))
    night.changes = _lineage(night)
    return night


def _direction_of(paths: RunDir, target: str) -> str:
    from ar_tui.core.records.ledger import read_events

    for event in read_events(paths.events):
        if isinstance(event, ev.RunStarted):
            return event.direction
    from ar_tui.core.config import load_target

    return load_target(Path(target)).direction


def _confidence_of(paths: RunDir) -> float:
    import json

    try:
        stored = json.loads(paths.options.read_text(encoding="utf-8"))
        return float(stored.get("extra", {}).get("confidence") or DEFAULT_CONFIDENCE)
    except (OSError, ValueError, TypeError, AttributeError):
        return DEFAULT_CONFIDENCE


def _resolve(git: GitRepo, commit: str) -> str:
    try:
        return git.resolve(commit)
    except GIT_ERRORS:
        raise UserError(f"commit {commit} of the run is gone from {git.toplevel} (was the repository pruned?)") from None


def _lineage(night: Night) -> list[Change]:
    by_exp = {r.exp: r for r in night.rows if r.exp is not None}
    path: list[LedgerRow] = []
    exp = night.best_exp
    while exp not in (None, 0) and exp in by_exp and by_exp[exp] not in path:
        path.append(by_exp[exp])
        exp = by_exp[exp].parent
    git = night.git
    changes: list[Change] = []
    for row in reversed(path):
        commit = _resolve(git, row.commit)
        parent_commit, diff = git.change_of(commit)
        parent_runs = night.runs(parent_commit)
        changes.append(Change(
            exp=row.exp or 0, description=row.description, rationale=row.rationale, status=row.status,
            forced=row.forced, commit=commit, parent_commit=parent_commit, parent_exp=row.parent, diff=diff,
            metric=row.metric, cost_usd=row.cost_usd, gpu_usd=row.gpu_usd, seconds=row.seconds, rule=row.rule,
            effect=night.effect(night.runs(commit), parent_runs)))
    return changes
