"""The team's memory on disk: RUN_DIR/notes.md (the planner's) and RUN_DIR/team.json (the code's).

`notes.md` is prose the planner writes with the text editor: ranked
hypotheses with reasons, facts learned, a do-not-repeat list, and the "what
works here" and "how to work here" sections it rewrites from the evidence.
The code reads only the hypotheses from it, and appends one line to the
do-not-repeat list when the reviewer rejects a proposal (nothing ran, so no
results.tsv row will say so).

`team.json` holds what the code must remember across a restart and the notes
cannot be trusted to: which hypotheses were handed out, which worker model
took which experiment at what cost (the bandit is rebuilt from it), when the
planner last ran. It is written atomically; after a kill -9 the team picks up
with the same agenda.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

NOTES_FILE = "notes.md"
PROGRAM_PROPOSAL_FILE = "program.proposed.md"
STATE_FILE = "team.json"
HYPOTHESES_HEADING = "Hypotheses"
DO_NOT_REPEAT_HEADING = "Do not repeat"

NOTES_TEMPLATE = f"""# Research notes

## {HYPOTHESES_HEADING} (ranked, best first)

## Facts learned

## {DO_NOT_REPEAT_HEADING}

## What works here

## How to work here
"""

_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*])\s+(.+?)\s*$")


def section_items(notes: str, heading: str) -> list[str]:
    """The list items under the heading that starts with `heading`, in order,
    without their bullets or numbers."""
    items: list[str] = []
    inside = False
    for line in notes.splitlines():
        if line.startswith("#"):
            inside = line.lstrip("#").strip().lower().startswith(heading.lower())
            continue
        match = _ITEM.match(line) if inside else None
        if match:
            items.append(" ".join(match.group(1).split()))
    return items


def hypotheses(notes: str) -> list[str]:
    """The ranked items under the hypotheses heading, in order."""
    return section_items(notes, HYPOTHESES_HEADING)


def add_to_do_not_repeat(notes: str, line: str) -> str:
    """`notes` with `- line` appended to the do-not-repeat list (made if missing)."""
    lines = notes.rstrip("\n").split("\n") if notes.strip() else []
    start = next((i for i, text in enumerate(lines)
                  if text.startswith("#") and text.lstrip("#").strip().lower().startswith(DO_NOT_REPEAT_HEADING.lower())),
                 None)
    if start is None:
        return "\n".join([*lines, "", f"## {DO_NOT_REPEAT_HEADING}", f"- {line}"]) + "\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("#")), len(lines))
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    lines[end:end] = [f"- {line}"]
    return "\n".join(lines) + "\n"


@dataclass
class Assignment:
    model: str  # the worker model that took it
    hypothesis: str
    cost_usd: float = 0.0  # the worker's own spend on it


@dataclass
class TeamState:
    taken: list[str] = field(default_factory=list)  # hypotheses handed out, in order
    assignments: dict[int, Assignment] = field(default_factory=dict)  # exp -> who took it
    planned_at: int | None = None  # decided experiments when the planner last finished; None: never
    plans: int = 0
    rejected: list[dict] = field(default_factory=list)  # {exp, description, reason}
    # The reviewer's rejections since the last approved proposal, and the
    # planner's re-plans during that streak: a kill -9 must not reset them.
    rejected_in_row: int = 0
    replans_in_row: int = 0
    # A plan under way: {decided, notes_sha, for_rejections, landed}. Still
    # here on load, the process died mid-plan (kill -9); see TeamMemory.__init__.
    planning: dict | None = None

    def to_json(self) -> str:
        data = asdict(self)
        data["assignments"] = {str(k): v for k, v in data["assignments"].items()}
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str) -> TeamState:
        data = json.loads(text)
        return cls(
            taken=[str(t) for t in data.get("taken", [])],
            assignments={int(k): Assignment(**v) for k, v in data.get("assignments", {}).items()},
            planned_at=data.get("planned_at"),
            plans=int(data.get("plans", 0)),
            rejected=list(data.get("rejected", [])),
            rejected_in_row=int(data.get("rejected_in_row", 0)),
            replans_in_row=int(data.get("replans_in_row", 0)),
            planning=data.get("planning") if isinstance(data.get("planning"), dict) else None,
        )


class TeamMemory:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.notes_path = self.run_dir / NOTES_FILE
        self.state_path = self.run_dir / STATE_FILE
        self.state = TeamState()
        if self.state_path.exists():
            try:
                self.state = TeamState.from_json(self.state_path.read_text(encoding="utf-8"))
            except (ValueError, TypeError, KeyError):
                # A torn or hand-mangled file: the notes still hold the agenda.
                self.state = TeamState()
        planning = self.state.planning
        if planning is not None:
            if planning.get("landed") or _digest(self.notes()) != planning.get("notes_sha"):
                # Killed after the planner's edit landed: that is the agenda,
                # and the plan counts as done; planning again would replace it.
                self.end_plan(int(planning.get("decided", 0)), bool(planning.get("for_rejections")))
            else:
                self.state.planning = None  # killed before it wrote anything: the plan is still due
                self.save()

    def ensure_notes(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.notes_path.exists():
            _write_atomically(self.notes_path, NOTES_TEMPLATE)

    def notes(self) -> str:
        try:
            return self.notes_path.read_text(encoding="utf-8")
        except OSError:
            return ""

    def open_hypotheses(self) -> list[str]:
        taken = set(self.state.taken)
        return [h for h in hypotheses(self.notes()) if h not in taken]

    def next_hypothesis(self) -> str:
        """The best hypothesis nobody took yet ("" when the agenda is empty)."""
        open_ = self.open_hypotheses()
        return open_[0] if open_ else ""

    def assign(self, exp: int, model: str, hypothesis: str, cost_usd: float) -> None:
        """A worker's proposal is done (submitted, failed or rejected): its
        hypothesis is no longer open, and the bandit learns what it cost."""
        if hypothesis and hypothesis not in self.state.taken:
            self.state.taken.append(hypothesis)
        self.state.assignments[exp] = Assignment(model, hypothesis, cost_usd)
        self.save()

    def record_rejection(self, exp: int, description: str, reason: str) -> None:
        self.state.rejected.append({"exp": exp, "description": description, "reason": reason})
        self.state.rejected_in_row += 1
        self.ensure_notes()
        before = self.notes()
        _write_atomically(self.notes_path, add_to_do_not_repeat(
            before, f"{description}: rejected by the reviewer before training ({reason})"))
        planning = self.state.planning
        if planning is not None:
            # The code's own line is not the planner's edit: a plan under way
            # (its server down, the workers going on) must still tell the two apart.
            if _digest(before) != planning.get("notes_sha"):
                planning["landed"] = True
            planning["notes_sha"] = _digest(self.notes())
        self.save()

    def begin_plan(self, decided: int, for_rejections: bool) -> None:
        self.state.planning = {"decided": decided, "notes_sha": _digest(self.notes()),
                               "for_rejections": for_rejections}
        self.save()

    def end_plan(self, decided: int, for_rejections: bool) -> None:
        """Done or failed, the plan is over: the next waits for new evidence
        instead of retrying at once."""
        self.state.planning = None
        self.state.planned_at = decided
        self.state.plans += 1
        if for_rejections:
            self.state.replans_in_row += 1
        self.save()

    def end_rejection_streak(self) -> None:
        """An approved proposal, or a stop the user will look at: the next
        rejection starts a new streak. The caller saves."""
        self.state.rejected_in_row = self.state.replans_in_row = 0

    def save(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        _write_atomically(self.state_path, self.state.to_json())


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
