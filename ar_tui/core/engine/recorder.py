"""Writing a decision down: the ledger row, the diff, the decision event and
the state file, in that order.

The row comes first because results.tsv is the truth a resume rebuilds from:
a crash after the row and before the branch moves is repaired on resume (see
`ResearchState.restore`); a crash before the row re-runs the experiment.
"""

from __future__ import annotations

from typing import Callable

from ar_tui.core import events as ev
from ar_tui.core.engine.parts import Candidate
from ar_tui.core.records.ledger import Ledger, LedgerError, LedgerRow
from ar_tui.core.records.rundir import RunDir


class Recorder:
    def __init__(self, run_dir: RunDir, ledger: Ledger, emit: Callable[[ev.Event], None],
                 save_state: Callable[[], None]) -> None:
        self.run_dir = run_dir
        self.ledger = ledger
        self.emit = emit
        self.save_state = save_state

    def diff(self, cand: Candidate) -> None:
        path = self.run_dir.diff(cand.exp)
        try:
            path.parent.mkdir(exist_ok=True)
            path.write_text(cand.diff, encoding="utf-8")
        except OSError as exc:
            raise LedgerError(f"cannot write {path}: {exc.strerror or exc}") from None

    def row(self, cand: Candidate, status: str, metric: float | None, rule: str, commit: str,
            parent_exp: int | None) -> None:
        self.ledger.append(LedgerRow(
            commit=commit,
            metric=metric,
            memory_gb=cand.memory_gb,
            status=status,
            description=cand.description,
            exp=cand.exp,
            cost_usd=cand.cost_usd,
            seconds=cand.seconds,
            forced=cand.forced and status == ev.STATUS_KEEP,
            rule=rule,
            rationale=cand.rationale,
            prepared_before=cand.prepared_before,
            parent=parent_exp,
            proposer=cand.proposer,
            gpu_usd=cand.gpu_usd,
        ))

    def decision(self, cand: Candidate, status: str, metric: float | None, rule: str, commit: str,
                 best_before: float | None, best_after: float | None, parent_exp: int | None) -> None:
        self.emit(ev.Decision(exp=cand.exp, status=status, rule=rule, metric=metric, best_before=best_before,
                              best_after=best_after, commit=commit, description=cand.description,
                              forced=cand.forced and status == ev.STATUS_KEEP, cost_usd=cand.cost_usd,
                              parent_exp=parent_exp, island=cand.island, gpu_usd=cand.gpu_usd))
