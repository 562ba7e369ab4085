"""What a killed engine had already measured, read back from events.jsonl.

Every run's `ExperimentFinished` carries its attempt and seed, and its
`ExperimentStarted` the commit it ran, so a resume counts every run that
finished before the kill (the baseline's repeats, a candidate's re-runs) and
runs again only the ones cut short, each with the attempt, and so the seed,
it had (ar_tui.core.seeds).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ar_tui.core import events as ev
from ar_tui.core.decisions import REMEASURE_BEST, NoiseModel
from ar_tui.core.engine.parts import Candidate
from ar_tui.core.engine.strategies.base import REAPPLY


@dataclass
class FinishedRun:
    attempt: int
    outcome: str
    metric: float | None
    seed: int | None
    commit: str
    memory_gb: float | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.outcome == ev.OUTCOME_OK and self.metric is not None


@dataclass
class RunsSoFar:
    finished: list[FinishedRun] = field(default_factory=list)
    cut: list[int] = field(default_factory=list)  # attempts started and never finished, in order

    @property
    def last_attempt(self) -> int:
        return max([r.attempt for r in self.finished] + self.cut, default=0)


def runs_of(events: list[ev.Event], exp: int) -> RunsSoFar:
    """The runs of experiment `exp` in `events` (events from before the
    attempt field count as neither finished nor cut)."""
    started: dict[int, ev.ExperimentStarted] = {}
    runs = RunsSoFar()
    for event in events:
        if isinstance(event, ev.ExperimentStarted) and event.exp == exp:
            started[event.attempt] = event
        elif isinstance(event, ev.ExperimentFinished) and event.exp == exp and event.attempt in started:
            begun = started.pop(event.attempt)
            runs.finished.append(FinishedRun(event.attempt, event.outcome, event.metric, event.seed, begun.commit,
                                             event.memory_gb, event.seconds))
    runs.cut = sorted(attempt for attempt in started if attempt > 0)
    return runs


def add_once(noise: NoiseModel, commit: str, metric: float, seed: int | None) -> None:
    """Add a run to the noise model unless state.json already holds it."""
    if seed is None or seed not in noise.seeds.get(commit, []):
        noise.add(commit, metric, seed)


def restore_candidate(cand: Candidate, events: list[ev.Event], noise: NoiseModel) -> int:
    """Give an undecided candidate back the runs it finished before a kill
    (`events`: those after its last proposal); returns how many count. Its
    next run is the one that was cut short, with that run's seed."""
    started: dict[int, ev.ExperimentStarted] = {}
    for event in events:
        if getattr(event, "exp", None) != cand.exp:
            continue
        if isinstance(event, ev.ExperimentStarted):
            started[event.attempt] = event
        elif isinstance(event, ev.ExperimentFinished) and event.attempt in started:
            begun = started[event.attempt]
            cand.attempt = max(cand.attempt, event.attempt)
            if begun.commit == begun.parent or event.outcome != ev.OUTCOME_OK or event.metric is None:
                continue  # a run of the best (a re-measure before a decision), or a failed one
            if cand.commit != begun.commit:
                cand.commit, cand.parent, cand.runs = begun.commit, begun.parent, []
            cand.runs.append(event.metric)
            cand.seconds += event.seconds
            cand.memory_gb = event.memory_gb if event.memory_gb is not None else cand.memory_gb
            add_once(noise, begun.commit, event.metric, event.seed)
        elif isinstance(event, ev.Decision) and event.status == "rerun":
            cand.remeasure_best = event.next_run == REMEASURE_BEST
            if event.next_run == REAPPLY:
                cand.commit, cand.runs = None, []
    return len(cand.runs)
