"""What the agent sees: the system prompt and the opening message of one
experiment's conversation (the tools are in `tools.py`), whichever API serves
the model.

The request is laid out for prompt caching. The Anthropic API caches prefixes
in the order tools -> system -> messages, so the parts that change least come
first and each ends at a `cache_control` breakpoint (a server that caches
prefixes by itself, as OpenAI's does, gains from the same order):

1. the tools (fixed);
2. the system prompt: program.md and the target's description (fixed for the run);
3. the editable files as they are at the start of the experiment (changes only
   when an experiment is kept);
4. the situation: best metric, results, kept diffs, what was tried (changes
   every experiment), followed by the turns of this experiment's conversation.

The first three use a one-hour TTL: an experiment takes about five minutes,
which would let a five-minute entry expire between two proposals and turn
every proposal into a fresh cache write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ar_tui.agents.llm.tools import RUN_TOOL_NAME, STABLE_CACHE
from ar_tui.core.config import TargetConfig
from ar_tui.core.direction import Direction
from ar_tui.core.proposer import ProposalContext, ResultRow
from ar_tui.core.workspace import EDITOR_TOOL_NAME, Workspace, WorkspaceError

TURN_CACHE = {"type": "ephemeral", "ttl": "5m"}

# How much of the history the agent is shown; the rest is summarised so that
# the opening message stays a few thousand tokens after a night of experiments.
RECENT_ROWS = 12
KEPT_DIFFS = 3
DIFF_CHARS = 2500
TAIL_CHARS = 2500
DESCRIPTION_CHARS = 110
DO_NOT_REPEAT_MAX = 150
EVIDENCE_ROWS = 4  # recent experiments whose training is shown, besides the best
EVIDENCE_FIGURES = 6
# The final block's figures a researcher reads first; others follow in log order.
FIRST_FIGURES = ("num_steps", "tokens_per_sec", "peak_memory_mb", "peak_vram_mb", "training_seconds")
SKIP_FIGURES = ("total_seconds",)


def _direction_words(target: TargetConfig) -> str:
    return Direction.parse(target.direction).words


def system_blocks(program: str, target: TargetConfig) -> list[dict[str, Any]]:
    """program.md and the target's fixed facts; identical for every request of a run."""
    protected = ", ".join(target.protected) or "none"
    facts = "\n".join([
        "## This run",
        f"- Editable files (the only files you can change): {', '.join(target.editable)}",
        f"- Protected files (never edit): {protected}",
        f"- Metric: {target.metric}, {_direction_words(target)}",
        f"- Each experiment runs `{target.run}` with a fixed time budget of {target.time_budget:g} seconds.",
        (f"- Tools: `{EDITOR_TOOL_NAME}` to view and edit the editable files (paths relative to the "
         f"target, e.g. `{target.editable[0]}`), then `{RUN_TOOL_NAME}` once to submit."),
    ])
    return [{"type": "text", "text": f"{program.rstrip()}\n\n{facts}\n", "cache_control": STABLE_CACHE}]


def _read_files(workspace: Workspace) -> dict[str, str]:
    files: dict[str, str] = {}
    for rel in workspace.editable:
        try:
            files[rel] = workspace.read(rel)
        except WorkspaceError as exc:  # a missing file is shown as such, not fatal
            files[rel] = f"(unreadable: {exc})"
    return files


def _files_block(files: dict[str, str], heading: str) -> str:
    return "\n".join([heading, *(f'<file path="{rel}">\n{content}\n</file>' for rel, content in files.items())])


def files_text(workspace: Workspace) -> str:
    return _files_block(_read_files(workspace), "The editable files at the start of this experiment (the current best):")


ANCHOR_HEADING = ("The editable files as last shown to you; the changes kept since, if any, are under "
                  "\"Kept since these files were shown\" and are already on disk:")
ANCHOR_DIFF_CHARS = 6000


class FilesAnchor:
    """Shows the files as they were at an anchor, plus the kept changes since as a diff.

    The files block is the largest part of a request and sits behind a
    one-hour cache breakpoint; showing the current best rewrites it (and for a
    model with a large minimum cacheable prefix, everything before it) after
    every keep. Anchored, it is rewritten only when the changes since outgrow
    `max_diff_chars`. A team's workers use it; the single agent shows the
    current files."""

    def __init__(self, max_diff_chars: int = ANCHOR_DIFF_CHARS) -> None:
        self.max_diff_chars = max_diff_chars
        self.files: dict[str, str] | None = None

    def texts(self, workspace: Workspace) -> tuple[str, str]:
        """(the files block, the diff of the changes since; "" when none)."""
        import difflib

        current = _read_files(workspace)
        if self.files is None or set(self.files) != set(current):
            self.files = current
        diff = "".join(
            line for rel in current
            for line in difflib.unified_diff(self.files[rel].splitlines(True), current[rel].splitlines(True),
                                             f"a/{rel}", f"b/{rel}")
        )
        if len(diff) > self.max_diff_chars:
            self.files, diff = current, ""
        return _files_block(self.files, ANCHOR_HEADING), diff


def _metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.6f}"


def _short(text: str, limit: int = DESCRIPTION_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tail(text: str, limit: int) -> str:
    return text if len(text) <= limit else "…" + text[-limit:]


def _head(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "\n… (diff truncated)"


@dataclass(frozen=True)
class View:
    """How much of the history a request shows."""

    recent_rows: int = RECENT_ROWS
    kept_diffs: int = KEPT_DIFFS
    tried_earlier: bool = True
    evidence_rows: int = EVIDENCE_ROWS
    # False: the last crash's log tail only while that crash is the latest
    # result (the next change may be its fix); True: until the next crash.
    old_failure_tail: bool = True


# A team's worker: the notes carry the agenda, the do-not-repeat list and the
# facts the planner read from the crash logs, the reviewer catches repeats, and
# the anchored files' diff shows the recent keeps. A crash's tail, which the
# engine keeps until the next crash, would otherwise be paid for in every
# worker's prompt for the rest of the night.
COMPACT = View(recent_rows=8, kept_diffs=0, tried_earlier=False, evidence_rows=2, old_failure_tail=False)


def situation_text(ctx: ProposalContext, view: View = View()) -> str:
    """The per-experiment state, compact: what a researcher would glance at."""
    target = ctx.target
    name = target.metric
    lines = [f"# Experiment {ctx.exp}", f"Metric: {name} ({_direction_words(target)})."]
    status = [f"baseline {_metric(ctx.baseline_metric)}", f"best so far {_metric(ctx.best_metric)}"]
    if ctx.noise_sd is not None:
        status.append(f"run-to-run noise sd {ctx.noise_sd:.6f}")
    lines.append("; ".join(status) + ".")

    decided = [r for r in ctx.history if r.exp != 0]
    recent = decided[-view.recent_rows:]
    older = decided[:-view.recent_rows] if len(decided) > view.recent_rows and view.tried_earlier else []

    if recent:
        lines += ["", f"## Recent results (newest last; {len(decided)} experiments so far)",
                  f"exp\tstatus\t{name}\tdescription"]
        lines += [f"{r.exp}\t{r.status}\t{_metric(r.metric)}\t{_short(r.description)}" for r in recent]
    else:
        lines += ["", "No experiments yet besides the baseline."]

    kept = [r for r in decided if r.status == "keep" and r.diff][-view.kept_diffs:] if view.kept_diffs else []
    if kept:
        lines += ["", "## Diffs of the most recent kept changes (already in the files above)"]
        for row in reversed(kept):
            lines += [f"### exp {row.exp}: {_short(row.description)} ({_metric(row.metric)})",
                      _head(row.diff.strip(), DIFF_CHARS)]

    if older:
        shown = older[-DO_NOT_REPEAT_MAX:]
        lines += ["", "## Tried earlier (do not repeat these ideas)"]
        if len(older) > len(shown):
            lines.append(f"({len(older) - len(shown)} older experiments not listed)")
        lines += [f"- {_short(r.description)} -> {r.status} {_metric(r.metric)}" for r in shown]

    lines += evidence_lines(ctx.history, name, view.evidence_rows)

    if ctx.unseen:
        lines += ["", "## Still running (results not known yet; propose something different)"]
        lines += [f"- exp {exp}: {_short(description)}" for exp, description in ctx.unseen]

    latest_crashed = bool(decided) and decided[-1].status == "crash"
    if ctx.last_failure_tail.strip() and (view.old_failure_tail or latest_crashed):
        lines += ["", "## Tail of the last crashed run's log", "```", _tail(ctx.last_failure_tail.strip(), TAIL_CHARS), "```"]

    if ctx.adapt_description:
        lines += [
            "",
            "## Adapt an earlier proposal",
            f"This change was prepared on an older version and no longer applies: {_short(ctx.adapt_description)}",
            "Its diff:",
            _head(ctx.adapt_diff.strip(), DIFF_CHARS),
        ]
        if ctx.adapt_conflict.strip():
            lines += ["Why it does not apply:", _head(ctx.adapt_conflict.strip(), DIFF_CHARS)]
        lines.append("Make the same idea work on the current files, then call run_experiment with its description.")
    else:
        lines += ["", f"Make one focused change to improve {name}, then call {RUN_TOOL_NAME}."]
    return "\n".join(lines)


def _num(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value)}"
    return f"{value:.4g}"


def _parents(history: list[ResultRow]) -> dict[int, ResultRow]:
    """Each experiment's parent: the one it was built on when the row says so
    (tree and island search), else the latest keep before it."""
    by_exp = {row.exp: row for row in history}
    parents: dict[int, ResultRow] = {}
    last_keep: ResultRow | None = None
    for row in history:
        parent = by_exp.get(row.parent) if row.parent is not None else last_keep
        if parent is not None and row.exp != 0:
            parents[row.exp] = parent
        if row.status == "keep":
            last_keep = row
    return parents


def _evidence_line(row: ResultRow, parent: ResultRow | None, metric_name: str) -> str:
    evidence = row.evidence
    assert evidence is not None
    moved = evidence.changes(parent.evidence if parent is not None else None)
    names = [n for n in FIRST_FIGURES if n in evidence.figures]
    names += [n for n in evidence.figures if n not in names and n != metric_name and n not in SKIP_FIGURES]
    figures = []
    for figure in names[:EVIDENCE_FIGURES]:
        text = f"{figure} {_num(evidence.figures[figure])}"
        if figure in moved:
            text += f" ({moved[figure]:+.0%})"
        figures.append(text)
    label = "baseline" if row.exp == 0 else f"exp {row.exp} {row.status}"
    line = f"- {label}: " + (", ".join(figures) if figures else "no final figures")
    if evidence.loss:
        line += "; loss " + " ".join(f"{_num(loss)}@{step}" for step, loss in evidence.loss)
    return line


def evidence_lines(history: list[ResultRow], metric_name: str, recent: int = EVIDENCE_ROWS) -> list[str]:
    """How the best and the recent runs trained, each figure's change against
    the parent in brackets: a few lines, however long the night."""
    with_evidence = [r for r in history if r.evidence is not None]
    if not with_evidence:
        return []
    keeps = [r for r in with_evidence if r.status == "keep"]
    shown = with_evidence[-recent:]
    if keeps and keeps[-1] not in shown:
        shown = [keeps[-1], *shown]
    parents = _parents(history)
    lines = ["", "## How the runs trained (final figures, change vs parent in brackets; loss@step)"]
    for row in shown:
        best = " (best)" if keeps and row is keeps[-1] else ""
        lines.append(_evidence_line(row, parents.get(row.exp), metric_name) + best)
    return lines


def opening_message(ctx: ProposalContext, workspace: Workspace, anchor: FilesAnchor | None = None,
                    after_files: dict[str, Any] | None = None) -> dict[str, Any]:
    """The files (cached), then `after_files` (a team worker's notes, cached
    behind a breakpoint of its own: they change at each plan, the anchored
    files far less often), then the situation."""
    if anchor is None:
        files, situation = files_text(workspace), situation_text(ctx)
    else:
        files, since = anchor.texts(workspace)
        situation = situation_text(ctx, COMPACT)
        if since:
            situation = ("## Kept since these files were shown (already on disk: edit the files as changed)\n"
                         f"```diff\n{since.strip()}\n```\n\n{situation}")
    return {
        "role": "user",
        "content": [
            {"type": "text", "text": files, "cache_control": STABLE_CACHE},
            *([after_files] if after_files is not None else []),
            {"type": "text", "text": situation},
        ],
    }


def with_turn_breakpoint(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy of `messages` with a cache breakpoint on the last block, so each
    turn of the conversation reads the previous turns from the cache. The
    stored messages are left without it: the API allows four breakpoints."""
    if not messages:
        return messages
    last = messages[-1]
    content = last["content"]
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    if not content:
        return messages
    tail = dict(content[-1])
    if "cache_control" not in tail:
        tail["cache_control"] = TURN_CACHE
    return [*messages[:-1], {**last, "content": [*content[:-1], tail]}]

