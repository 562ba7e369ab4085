"""The research state: the best, the baseline, the noise, what was decided
and what is still in flight, and how it is rebuilt on resume.

results.tsv is the truth about decided experiments; events.jsonl holds the
proposals (with their diffs) that were not decided yet; state.json holds what
neither file can give back (the noise samples, the next experiment number).
`restore` rebuilds the picture from the three, so a kill -9 loses nothing but
the experiments that were running, which run again.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from ar_tui.core import events as ev
from ar_tui.core.decisions import NoiseModel
from ar_tui.core.engine.parts import Candidate
from ar_tui.core.git import GIT_ERRORS, GitRepo
from ar_tui.core.ledger import LedgerRow
from ar_tui.core.proposer import ResultRow


@dataclass
class ResearchState:
    noise: NoiseModel
    best_commit: str = ""
    best_metric: float | None = None
    baseline_metric: float | None = None
    best_exp: int | None = None
    metric_of: dict[str, float] = field(default_factory=dict)  # commit -> its estimate
    exp_of: dict[str, int] = field(default_factory=dict)  # commit -> the experiment that made it
    next_exp: int = 1
    history: list[ResultRow] = field(default_factory=list)
    in_flight: dict[int, Candidate] = field(default_factory=dict)
    last_failure_tail: str = ""

    def record(self, cand: Candidate, status: str, metric: float | None, commit: str) -> None:
        """A decision made: the history the proposers see, and the best when kept."""
        if status == ev.STATUS_KEEP and cand.commit is not None:
            self.best_commit = cand.commit
            self.best_exp = cand.exp
            if metric is not None:
                self.best_metric = metric
                self.metric_of[cand.commit] = metric
        if cand.commit is not None:
            self.exp_of[cand.commit] = cand.exp
        self.in_flight.pop(cand.exp, None)
        self.history.append(ResultRow(cand.exp, commit[:7], metric, status, cand.description, cand.rationale,
                                      cand.diff, cand.cost_usd))

    def parent_exp(self, commit: str | None) -> int | None:
        return self.exp_of.get(commit or "")

    def to_state(self) -> dict:
        return {
            "best_commit": self.best_commit,
            "best_metric": self.best_metric,
            "baseline_metric": self.baseline_metric,
            "next_exp": self.next_exp,
            "noise": self.noise.to_dict(),
            "in_flight": [c.to_state() for c in self.in_flight.values()],
        }

    @classmethod
    def restore(cls, state: dict, rows: list[LedgerRow], events: list[ev.Event], git: GitRepo,
                noise_k: float) -> "ResearchState":
        noise = NoiseModel.from_dict(state["noise"]) if "noise" in state else NoiseModel(k=noise_k)
        noise.k = noise_k
        self = cls(noise=noise, best_commit=git.branch_tip(), next_exp=int(state.get("next_exp", 1)))
        proposals = {e.exp: e for e in events if isinstance(e, ev.ProposalReady)}
        for row in rows:
            if row.exp is not None:
                self.next_exp = max(self.next_exp, row.exp + 1)
                with contextlib.suppress(*GIT_ERRORS):
                    self.exp_of[git.resolve(row.commit)] = row.exp
            ready = proposals.get(row.exp) if row.exp is not None else None
            self.history.append(ResultRow(exp=row.exp or 0, commit=row.commit, metric=row.metric, status=row.status,
                                          description=row.description, rationale=row.rationale,
                                          diff=ready.diff if ready else "", cost_usd=row.cost_usd))
        keeps = [row for row in rows if row.status == ev.STATUS_KEEP and row.metric is not None]
        if keeps:
            last = keeps[-1]
            self.best_metric, self.best_exp = last.metric, last.exp
            baseline = next((row for row in rows if row.exp == 0), None)
            self.baseline_metric = baseline.metric if baseline else None
            # The row is written before the branch moves: a crash between the
            # two leaves the branch behind, and this repairs it.
            with contextlib.suppress(*GIT_ERRORS):
                kept = git.resolve(last.commit)
                if kept != self.best_commit and not git.is_ancestor(kept, self.best_commit):
                    git.set_branch(kept)
                    self.best_commit = kept
            self.metric_of[self.best_commit] = last.metric
            self.exp_of.setdefault(self.best_commit, last.exp or 0)
        decided = {row.exp for row in rows if row.exp is not None}
        for exp, ready in sorted(proposals.items()):
            self.next_exp = max(self.next_exp, exp + 1)
            if exp not in decided:
                self.in_flight[exp] = Candidate(exp=exp, description=ready.description, rationale=ready.rationale,
                                                diff=ready.diff, base_commit=ready.base_commit,
                                                cost_usd=ready.cost_usd)
        return self
