"""How an experiment's change is written and read back: the machine-readable
descriptions (`MATRIX_LR 0.04 -> 0.06`) that both offline searches write and
read back from the ledger, and knob changes read from a diff."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ar_tui.agents.offline.knobs import NotAConstant, Values, find_knobs, parse_value

OUT_OF_MEMORY = re.compile(
    r"out of memory|OutOfMemoryError|MemoryError|std::bad_alloc|Cannot allocate memory|\bKilled\b|\bOOM\b",
    re.IGNORECASE,
)
_CHANGE = re.compile(r"^(?P<name>[^\s;]+)\s+(?P<old>[^\s;]+)\s+->\s+(?P<new>[^\s;]+)$")

def key(value: float) -> float:
    """Values compare equal when they agree to six significant digits, so that
    `0.06` parsed from a description matches `0.06` read from the script."""
    return float(f"{float(value):.6g}")


@dataclass(frozen=True)
class Change:
    name: str
    old: Values
    new: Values

    @property
    def text(self) -> str:
        return f"{self.name} {values_text(self.old)} -> {values_text(self.new)}"


def values_text(values: Values) -> str:
    return "|".join(str(v) for v in values)


def describe(changes: list[tuple[str, str, str]]) -> str:
    """`[(name, old text, new text)]` -> `NAME old -> new; NAME2 old -> new`."""
    return "; ".join(f"{name} {old.replace(' ', '')} -> {new.replace(' ', '')}" for name, old, new in changes)


def parse_description(description: str) -> list[Change] | None:
    """The changes a description names, or None when it is not one of ours."""
    changes = []
    for piece in description.split(";"):
        match = _CHANGE.match(piece.strip())
        if not match:
            return None
        try:
            old = tuple(parse_value(v) for v in match["old"].split("|"))
            new = tuple(parse_value(v) for v in match["new"].split("|"))
        except NotAConstant:
            return None
        if len(old) != len(new):
            return None
        changes.append(Change(match["name"], old, new))
    return changes or None


def changes_from_diff(diff: str, names: set[str]) -> tuple[dict[str, tuple[float, float]], bool]:
    """Knob changes read from a unified diff (for experiments another proposer
    or a person made), and whether the diff changed anything else."""
    before: dict[str, float] = {}
    after: dict[str, float] = {}
    structural = False
    for line in diff.splitlines():
        if line.startswith(("---", "+++")) or not line.startswith(("-", "+")):
            continue
        content = line[1:]
        if not content.strip() or content.strip().startswith("#"):
            continue
        try:
            found = {knob.name: knob.value for knob in find_knobs("diff", content) if knob.name in names}
        except SyntaxError:
            found = {}
        if not found:
            structural = True
            continue
        (before if line.startswith("-") else after).update(found)
    changes = {
        name: (before[name], after[name]) for name in before.keys() & after.keys() if before[name] != after[name]
    }
    if before.keys() ^ after.keys():
        structural = True
    return changes, structural
