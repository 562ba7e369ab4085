"""Git holds several tips: a ref per node, outside refs/heads."""

from __future__ import annotations

from pathlib import Path

from ar_tui.core.records.git import GitRepo
from tests.conftest import git


def test_node_refs_hold_commits_outside_the_branch_list(tiny_target: Path) -> None:
    repo = GitRepo(tiny_target, "pop")
    head = repo.head_commit()
    repo.create_branch(head)
    repo.set_node(3, head)
    repo.set_node(12, head)
    assert repo.nodes() == {3: head, 12: head}
    # `git branch` shows only the user's branches and the run's best.
    assert sorted(b.strip("* ").strip() for b in git(tiny_target, "branch").splitlines()) == ["autoresearch/pop", "main"]
    repo.drop_node(3)
    repo.drop_node(99)  # an unknown node is not an error: pruning is idempotent
    assert repo.nodes() == {12: head}
    # Another run's nodes are its own.
    assert GitRepo(tiny_target, "other").nodes() == {}
