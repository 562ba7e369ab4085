"""The research state: the best, the baseline, the noise, every evaluated
node, what is still in flight, and how it is all rebuilt on resume.

results.tsv is the truth about decided experiments (and, in its `parent`
column, which node each grew from); events.jsonl holds the proposals (with
their diffs and bases) that were not decided yet and each decision's island;
state.json holds what neither file can give back (the noise samples, the next
experiment number, re-measurements). `restore` rebuilds the picture from the
three, so a kill -9 loses nothing but the experiments that were running,
which run again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ar_tui.core import events as ev
from ar_tui.core.decisions import NoiseModel
from ar_tui.core.direction import Direction
from ar_tui.core.engine.finished_runs import RunsSoFar, restore_candidate, runs_of
from ar_tui.core.engine.parts import Candidate
from ar_tui.core.evidence import RunEvidence
from ar_tui.core.proposer import ResultRow
from ar_tui.core.records.git import GIT_ERRORS, GitRepo
from ar_tui.core.records.ledger import LedgerRow


@dataclass
class Node:
    """A decided experiment, as a member of the population."""

    exp: int
    commit: str
    parent_exp: int | None
    status: str
    description: str
    runs: list[float] = field(default_factory=list)
    island: int | None = None
    children: int = 0  # proposals built on it so far (decided or not)
    debugged: bool = False  # a crashed node handed back once to be fixed

    @property
    def metric(self) -> float | None:
        """Its estimate: the mean of all its runs."""
        return sum(self.runs) / len(self.runs) if self.runs else None


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
    nodes: dict[int, Node] = field(default_factory=dict)  # decided experiments, by number
    tails: dict[int, str] = field(default_factory=dict)  # a crashed node's log tail, for a debug step
    remeasuring: set[int] = field(default_factory=set)  # nodes queued to run again
    attempts: dict[int, int] = field(default_factory=dict)  # exp -> runs started, so logs never collide
    # An undecided baseline's runs before a kill: the finished ones count, the cut ones run again.
    baseline_so_far: RunsSoFar = field(default_factory=RunsSoFar)

    def record(self, cand: Candidate, status: str, metric: float | None, commit: str,
               parent_exp: int | None, evidence: RunEvidence | None = None) -> None:
        """A decision made: the node, the history the proposers see, and the best when kept."""
        if status == ev.STATUS_KEEP and cand.commit is not None:
            if not cand.is_baseline:
                self.noise.mark_kept(cand.commit)
            self.best_commit = cand.commit
            self.best_exp = cand.exp
            if metric is not None:
                self.best_metric = metric
                self.metric_of[cand.commit] = metric
        if cand.commit is not None:
            self.exp_of[cand.commit] = cand.exp
        if status != ev.STATUS_VETO:
            runs = self.noise.runs(commit) if cand.runs else []
            node = Node(cand.exp, commit, parent_exp, status, cand.description, runs or list(cand.runs), cand.island)
            # Proposals may already have been built on it (the first ones are
            # prepared while the baseline trains).
            node.children = sum(1 for c in self.in_flight.values() if c.base_commit == commit and c.exp != cand.exp)
            node.children += sum(1 for n in self.nodes.values() if n.parent_exp == cand.exp)
            self.nodes[cand.exp] = node
        if cand.debug_of is not None and cand.debug_of in self.nodes:
            self.nodes[cand.debug_of].debugged = True
        self.in_flight.pop(cand.exp, None)
        self.history.append(ResultRow(cand.exp, commit[:7], metric, status, cand.description, cand.rationale,
                                      cand.diff, cand.cost_usd, parent=parent_exp,
                                      proposer=cand.proposer, seconds=cand.seconds, evidence=evidence))

    def remeasured(self, exp: int, metric: float) -> float:
        """One more run of a decided node (already added to the noise model);
        returns its new estimate."""
        node = self.nodes[exp]
        node.runs.append(metric)
        estimate = node.metric
        assert estimate is not None
        self.metric_of[node.commit] = estimate
        if self.best_exp == exp:
            self.best_metric = estimate
        self.remeasuring.discard(exp)
        return estimate

    def chose_parent(self, exp: int | None) -> None:
        if exp is not None and exp in self.nodes:
            self.nodes[exp].children += 1

    def next_attempt(self, exp: int) -> int:
        self.attempts[exp] = self.attempts.get(exp, 0) + 1
        return self.attempts[exp]

    def parent_exp(self, commit: str | None) -> int | None:
        return self.exp_of.get(commit or "")

    def lineage(self, exp: int | None) -> list[Node]:
        """The chain of nodes from the baseline to `exp`, oldest first."""
        chain: list[Node] = []
        seen: set[int] = set()
        while exp is not None and exp in self.nodes and exp not in seen:
            seen.add(exp)
            chain.append(self.nodes[exp])
            exp = self.nodes[exp].parent_exp
        return chain[::-1]

    def children_of(self, exp: int | None) -> list[Node]:
        return [n for n in self.nodes.values() if n.parent_exp == exp and n.exp != exp]

    def row_of(self, exp: int) -> ResultRow:
        """The history row of a decided experiment, with its current estimate."""
        row = next((r for r in reversed(self.history) if r.exp == exp), None)
        node = self.nodes.get(exp)
        if row is None:
            assert node is not None
            row = ResultRow(exp, node.commit[:7], node.metric, node.status, node.description, parent=node.parent_exp)
        if node is not None and node.metric is not None and node.metric != row.metric:
            row = replace(row, metric=node.metric)
        return row

    def summary(self, direction: str, top: int = 5) -> str:
        """The population in a few lines, best first, for a proposer's prompt."""
        measured = [n for n in self.nodes.values() if n.metric is not None]
        if not measured:
            return ""
        crashed = sum(1 for n in self.nodes.values() if n.status == ev.STATUS_CRASH)
        sign = Direction(direction).sign()
        ranked = sorted(measured, key=lambda n: -sign * (n.metric or 0.0))[:top]
        lines = [f"{len(self.nodes)} nodes ({len(measured)} measured, {crashed} crashed); best: exp {self.best_exp}"]
        for n in ranked:
            island = f", island {n.island}" if n.island is not None else ""
            lines.append(f"- exp {n.exp}: {n.metric:.6f} over {len(n.runs)} run(s), parent {n.parent_exp}, "
                         f"{n.children} child(ren){island}: {n.description}")
        return "\n".join(lines)

    def to_state(self) -> dict:
        return {
            "best_commit": self.best_commit,
            "best_metric": self.best_metric,
            "baseline_metric": self.baseline_metric,
            "next_exp": self.next_exp,
            "noise": self.noise.to_dict(),
            "in_flight": [c.to_state() for c in self.in_flight.values()],
            "attempts": {str(k): v for k, v in self.attempts.items()},
        }

    @classmethod
    def restore(cls, state: dict, rows: list[LedgerRow], events: list[ev.Event], git: GitRepo,
                evidence_of: Callable[[int], RunEvidence | None] = lambda exp: None) -> "ResearchState":
        noise = NoiseModel.from_dict(state["noise"]) if "noise" in state else NoiseModel()
        self = cls(noise=noise, best_commit=git.branch_tip(), next_exp=int(state.get("next_exp", 1)))
        self.attempts = {int(k): int(v) for k, v in state.get("attempts", {}).items()}
        proposals = {e.exp: e for e in events if isinstance(e, ev.ProposalReady)}
        islands = {e.exp: e.island for e in events if isinstance(e, ev.Decision) and e.status != "rerun"}
        debugs = {e.exp: e.debug_of for e in events if isinstance(e, ev.ProposalReady)}
        for row in rows:
            if row.exp is not None:
                self.next_exp = max(self.next_exp, row.exp + 1)
                commit = row.commit
                with contextlib.suppress(*GIT_ERRORS):
                    commit = git.resolve(row.commit)
                    self.exp_of[commit] = row.exp
                if row.status != ev.STATUS_VETO:
                    # Every run of its commit (re-runs and re-measures included) is in the noise model.
                    runs = noise.runs(commit) or ([row.metric] if row.metric is not None else [])
                    self.nodes[row.exp] = Node(row.exp, commit, row.parent, row.status, row.description, runs,
                                               islands.get(row.exp))
            ready = proposals.get(row.exp) if row.exp is not None else None
            self.history.append(ResultRow(exp=row.exp or 0, commit=row.commit, metric=row.metric, status=row.status,
                                          description=row.description, rationale=row.rationale,
                                          diff=ready.diff if ready else "", cost_usd=row.cost_usd,
                                          parent=row.parent, proposer=row.proposer,
                                          seconds=row.seconds, evidence=evidence_of(row.exp or 0)))
        for ready in proposals.values():
            base = self.exp_of.get(ready.base_commit)
            if base is not None and base in self.nodes:
                self.nodes[base].children += 1
            fixed = debugs.get(ready.exp)
            if fixed is not None and fixed in self.nodes:
                self.nodes[fixed].debugged = True
        keeps = [row for row in rows if row.status == ev.STATUS_KEEP and row.metric is not None]
        if keeps:
            last = keeps[-1]
            self.best_exp = last.exp
            best_node = self.nodes.get(last.exp) if last.exp is not None else None
            self.best_metric = best_node.metric if best_node is not None and best_node.runs else last.metric
            baseline = next((row for row in rows if row.exp == 0), None)
            self.baseline_metric = baseline.metric if baseline else None
            # The row is written before the branch moves: a crash between the
            # two leaves the branch behind, and this repairs it.
            with contextlib.suppress(*GIT_ERRORS):
                kept = git.resolve(last.commit)
                if kept != self.best_commit and not git.is_ancestor(kept, self.best_commit):
                    git.set_branch(kept)
                    self.best_commit = kept
            self.exp_of.setdefault(self.best_commit, last.exp or 0)
        for node in self.nodes.values():
            if node.metric is not None:
                self.metric_of[node.commit] = node.metric
        if self.best_metric is not None:
            self.metric_of[self.best_commit] = self.best_metric
        decided = {row.exp for row in rows if row.exp is not None}
        for exp, ready in sorted(proposals.items()):
            self.next_exp = max(self.next_exp, exp + 1)
            if exp not in decided:
                cand = Candidate(exp=exp, description=ready.description, rationale=ready.rationale,
                                 diff=ready.diff, base_commit=ready.base_commit, cost_usd=ready.cost_usd,
                                 island=ready.island, debug_of=ready.debug_of, proposer=ready.proposer)
                # Its runs that finished before the kill count (its last proposal's, an adaptation's).
                last = max(i for i, e in enumerate(events) if isinstance(e, ev.ProposalReady) and e.exp == exp)
                if restore_candidate(cand, events[last + 1:], noise):
                    try:
                        assert cand.commit is not None
                        git.resolve(cand.commit)
                    except (*GIT_ERRORS, AssertionError):
                        cand.commit, cand.parent, cand.runs = None, None, []
                self.in_flight[exp] = cand
        if not any(row.exp == 0 for row in rows):
            self.baseline_so_far = runs_of(events, 0)
        return self
