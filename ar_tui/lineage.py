"""The population as a tree: each experiment under the one it grew from, and
the path from the baseline to the best.

Derived from `RunView` rows only (their `parent_exp` and `island`), so the
app's tree pane, `attach`, a browser tab and the morning report draw the same
tree. Toolkit-free: the pane (`ar_tui.ui.lineage_tree`) and the report
(`ar_tui.report`) each only draw it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ar_tui.core import events as ev


def best_path(rows: list[ev.Decision], best_exp: int | None) -> list[int]:
    """The experiments from the root to the best, following parents."""
    parents = {r.exp: r.parent_exp for r in rows}
    path: list[int] = []
    exp = best_exp
    while exp is not None and exp in parents and exp not in path:
        path.append(exp)
        exp = parents[exp]
    return path[::-1]


def children_of(rows: list[ev.Decision]) -> dict[int | None, list[ev.Decision]]:
    """Each experiment's children in order; the roots under None. An
    experiment whose parent is not among the rows (not decided yet, or a
    history cut short) hangs from the top, not nowhere."""
    known = {r.exp for r in rows}
    children: dict[int | None, list[ev.Decision]] = {}
    for row in sorted(rows, key=lambda r: r.exp):
        parent = row.parent_exp if row.parent_exp in known and row.parent_exp != row.exp else None
        children.setdefault(parent, []).append(row)
    return children


@dataclass
class LineageNode:
    exp: int
    parent: int | None  # as drawn: None for a root
    depth: int  # 0 for a root
    last: bool  # the last child of its parent (where a drawn tree turns the corner)
    status: str
    metric: float | None
    island: int | None
    description: str
    on_best_path: bool
    best: bool


def lineage_nodes(rows: list[ev.Decision], best_exp: int | None) -> list[LineageNode]:
    """Every node once, depth first, children in experiment order."""
    children = children_of(rows)
    on_path = set(best_path(rows, best_exp))
    nodes: list[LineageNode] = []
    seen: set[int] = set()

    def walk(parent: int | None, depth: int) -> None:
        kids = [row for row in children.get(parent, []) if row.exp not in seen]
        for index, row in enumerate(kids):
            seen.add(row.exp)
            nodes.append(LineageNode(row.exp, parent, depth, index == len(kids) - 1, row.status, row.metric,
                                     row.island, row.description, row.exp in on_path, row.exp == best_exp))
            walk(row.exp, depth + 1)

    walk(None, 0)
    return nodes
