"""The final branch: the night's changes replayed on its base, one commit
each, with messages a reviewer reads in `git log`.

Each change is applied as its own diff (three-way when a change left out has
moved its context), in a worktree of the run dir, so the user's checkout is
never touched. A branch of that name is replaced only when finalize wrote it
(its tip carries FINALIZED_BY): a branch someone else made is refused.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass

from ar_tui.core.errors import UserError
from ar_tui.core.finalize.changes import Change, Night

FINALIZED_BY = "Finalized-by: ar-tui"


@dataclass
class FinalBranch:
    name: str
    tip: str
    commits: list[tuple[int, str]]  # (exp, commit) in order
    left_out: list[Change]
    # With nothing left out, the replayed changes must give the best's code:
    # False says the lineage's diffs do not add up to it (read the branch before merging).
    same_as_best: bool | None = None


def default_branch(tag: str) -> str:
    return f"autoresearch/{tag}-final"


def commit_message(change: Change, night: Night, ablation: str = "") -> str:
    lines = [change.description.strip() or f"experiment {change.exp}", ""]
    lines.append(f"Why: {change.rationale.strip() or '(the agent gave no rationale)'}")
    lines.append("")
    if change.effect is not None:
        lines.append(f"Measured: {change.effect.text(night.metric, night.confidence)} (against the code it was "
                     f"built on, during the night)")
    else:
        lines.append("Measured: no runs to compare (it crashed or was never measured)")
    if ablation:
        lines.append(f"Leave-one-out: {ablation}")
    how = "kept" if change.status == "keep" else f"{change.status}ed, then built on by the search"
    if change.forced:
        how += " (forced by a person)"
    lines.append(f"Experiment {change.exp} of run {night.tag}: {how}; cost {change.cost_text}")
    lines += ["", FINALIZED_BY]
    return "\n".join(lines) + "\n"


def write_branch(night: Night, name: str, changes: list[Change], messages: dict[int, str]) -> FinalBranch:
    """Replay `changes` (in order) on the night's base as branch `name`."""
    git = night.git
    try:
        git.repo.git.check_ref_format("--branch", name)
    except Exception:
        raise UserError(f"{name!r} is not a valid branch name") from None
    existing = git.named_branch_tip(name)
    if existing is not None and FINALIZED_BY not in git.commit_message(existing):
        raise UserError(f"branch {name} already exists and was not written by ar-tui finalize; "
                        "pass --into another name")
    worktree = night.run_dir.worktrees / "finalize"
    git.ensure_worktree(worktree, night.base_commit)
    commits: list[tuple[int, str]] = []
    try:
        for change in changes:
            failure = git.apply_3way(worktree, change.diff)
            if failure is not None:
                raise UserError(f"experiment {change.exp}'s change does not apply without the ones left out "
                                f"before it: {failure.splitlines()[0] if failure else ''}")
            commits.append((change.exp, git.commit(worktree, messages[change.exp])))
        tip = commits[-1][1] if commits else night.base_commit
        git.set_named_branch(name, tip)
    finally:
        with contextlib.suppress(Exception):
            git.remove_worktree(worktree)
        shutil.rmtree(worktree, ignore_errors=True)
    kept = {c.exp for c in changes}
    left_out = [c for c in night.changes if c.exp not in kept]
    same = None if left_out else git.same_target(tip, night.best_commit)
    return FinalBranch(name, tip, commits, left_out, same)
