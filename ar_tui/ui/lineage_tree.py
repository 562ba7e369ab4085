"""The population as a tree: each experiment under the one it grew from, its
status mark and metric, and the path from the baseline to the best marked.

Built from `RunView` rows only, by `ar_tui.lineage` (which the morning
report draws from too), so the app, `attach`, a browser tab and the report
show the same tree. Rebuilt only when a decision changes the rows.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from ar_tui import formatting as fmt
from ar_tui.core import events as ev
from ar_tui.lineage import best_path, children_of
from ar_tui.ui.results_table import STATUS_STYLES


class LineageTree(Tree[int]):
    DEFAULT_CSS = """
    LineageTree { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("population", id=id, classes=classes)
        self.show_root = False
        self.guide_depth = 3
        self._signature: tuple = ()
        self.path: list[int] = []

    def show_rows(self, rows: list[ev.Decision], best_exp: int | None) -> bool:
        signature = (best_exp, tuple((r.exp, r.status, r.metric, r.parent_exp, r.island) for r in rows))
        if signature == self._signature:
            return False
        self._signature = signature
        self.path = best_path(rows, best_exp)
        on_path = set(self.path)
        children = children_of(rows)
        self.clear()

        def add(node: TreeNode[int], parent: int | None) -> None:
            for row in children.get(parent, []):
                label = self._label(row, row.exp in on_path, row.exp == best_exp)
                if row.exp in children:
                    add(node.add(label, data=row.exp, expand=True), row.exp)
                else:
                    node.add_leaf(label, data=row.exp)

        add(self.root, None)
        self.root.expand()
        return True

    @staticmethod
    def _label(row: ev.Decision, on_path: bool, is_best: bool) -> Text:
        style = STATUS_STYLES.get(row.status, "")
        label = Text()
        label.append("★ " if is_best else ("┃ " if on_path else "  "), style="bold")
        label.append(f"{row.exp} ", style="bold" if on_path else "")
        label.append(f"{fmt.STATUS_MARKS.get(row.status, '?')} ", style=style)
        label.append(fmt.metric(row.metric), style=("bold underline " if on_path else "") + style)
        if row.island is not None:
            label.append(f" [island {row.island}]", style="dim")
        label.append(f"  {row.description}", style="dim" if row.status != ev.STATUS_KEEP else "")
        return label
