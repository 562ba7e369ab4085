"""What the team's planner and reviewer see, and what a worker sees besides
the single agent's prompt (`prompt.py`).

The planner is the one role that reads the whole history in detail; the
reviewer gets the diff, the do-not-repeat list and a compact history; a
worker gets the agenda and its one hypothesis. Each request keeps the
caching layout of `prompt.py`: what changes least first, at most four
breakpoints.
"""

from __future__ import annotations

from typing import Any

from ar_tui.agents.llm import prompt
from ar_tui.agents.llm.tools import REVIEW_TOOL_NAME, RUN_TOOL_NAME, STABLE_CACHE
from ar_tui.agents.notes import DO_NOT_REPEAT_HEADING, NOTES_FILE, PROGRAM_PROPOSAL_FILE, section_items
from ar_tui.core.config import TargetConfig
from ar_tui.core.proposer import ProposalContext
from ar_tui.core.workspace import EDITOR_TOOL_NAME

PLANNER_RATIONALE_CHARS = 240
PLANNER_DIFF_CHARS = 1200
PLANNER_KEPT_DIFFS = 8
REVIEW_HISTORY_ROWS = 200

PLANNER_ROLE = f"""## Your role: the planner of a research team

Cheaper worker models implement one hypothesis each; a reviewer checks each change before it trains. \
You keep the team's research agenda in `{NOTES_FILE}`, the only file you can edit, with \
`{EDITOR_TOOL_NAME}` (path `{NOTES_FILE}`). Keep these sections, in this order:

- `## Hypotheses (ranked, best first)`: a numbered list, one line each: the change, then `-` and why you \
expect it to help. Workers take them from the top; give at least five, each a single focused change \
that differs from everything already tried.
- `## Facts learned`: what the results and the training evidence showed (step speed, memory, loss curves).
- `## Do not repeat`: what was tried and how it ended, one line each. Keep every line the reviewer added.
- `## What works here` and `## How to work here`: rewrite both from the evidence every time: which kinds \
of change helped, and practical advice for the workers (what to keep in mind when editing this code).

Edit with `create` to rewrite the whole file, or `str_replace` for a part, then end your turn with a \
one-line summary. You never edit the training code and never change the human's program; to suggest a \
change to the program, write the whole proposed program to `{PROGRAM_PROPOSAL_FILE}` for a person to adopt."""

WEB_SEARCH_NOTE = """\
You may use web search to look for papers and prior implementations before you rank hypotheses. Each \
search is billed: search only when it can change the ranking, and cite what you used (title and URL) \
in the notes beside the hypothesis it supports."""

REVIEWER_ROLE = f"""## Your role: the reviewer of a research team

A worker proposes one change to the editable files; it trains only if you approve. Check the diff against \
the do-not-repeat list and the history, and call `{REVIEW_TOOL_NAME}` once:

- `reject` a repeat of an idea that was tried (the do-not-repeat list, the history), a change only to \
the random seed, a change to the time budget or the evaluation, or a change that does nothing;
- `revise` a change whose idea is sound but whose implementation is wrong or does not match its \
description (say exactly what to fix; the worker gets one chance);
- `approve` anything else. When in doubt, approve: a run teaches more than a guess."""

WORKER_ROLE = f"""## Your role: a worker of a research team

A planner keeps the agenda below and gives you one hypothesis; a reviewer checks your change before it \
trains. Implement the hypothesis you are given as one focused change, then call `{RUN_TOOL_NAME}` with a \
description of what you changed. Do not repeat what the notes list under "Do not repeat"."""


def planner_system(program: str, target: TargetConfig, web_search: bool) -> list[dict[str, Any]]:
    base = prompt.system_blocks(program, target)[0]["text"]
    role = PLANNER_ROLE + ("\n\n" + WEB_SEARCH_NOTE if web_search else "")
    return [{"type": "text", "text": f"{base}\n{role}\n", "cache_control": STABLE_CACHE}]


def worker_system(program: str, target: TargetConfig) -> list[dict[str, Any]]:
    """program.md and the worker's role: fixed for the run, cached."""
    base = prompt.system_blocks(program, target)[0]["text"]
    return [{"type": "text", "text": f"{base}\n{WORKER_ROLE}\n", "cache_control": STABLE_CACHE}]


def notes_block(notes: str) -> dict[str, Any] | None:
    """The notes for a worker's opening message, after the files and behind a
    breakpoint of their own: they change at each plan, and the anchored files
    before them far less often, so a new agenda rewrites only itself."""
    if not notes.strip():
        return None
    return {"type": "text", "text": f"<notes path=\"{NOTES_FILE}\">\n{notes.strip()}\n</notes>",
            "cache_control": STABLE_CACHE}


def assignment_block(hypothesis: str) -> dict[str, Any]:
    if hypothesis:
        text = f"## Your hypothesis\n{hypothesis}\nImplement this one, then call {RUN_TOOL_NAME}."
    else:
        text = (f"## Your hypothesis\nThe agenda has no open hypothesis; pick the most promising change "
                f"the notes suggest that was not tried, then call {RUN_TOOL_NAME}.")
    return {"type": "text", "text": text}


def history_text(ctx: ProposalContext, rejected: list[dict]) -> str:
    """The whole history, in detail: every experiment with its rationale,
    the training evidence, the kept diffs."""
    name = ctx.target.metric
    lines = [f"# Planning before experiment {ctx.exp}",
             f"Metric: {name} ({prompt._direction_words(ctx.target)}); baseline {prompt._metric(ctx.baseline_metric)}, "
             f"best {prompt._metric(ctx.best_metric)}"
             + (f", run-to-run noise sd {ctx.noise_sd:.6f}" if ctx.noise_sd is not None else "") + "."]
    decided = [r for r in ctx.history if r.exp != 0]
    if decided:
        lines += ["", f"## Every experiment ({len(decided)})", f"exp\tstatus\t{name}\tdescription — rationale"]
        for r in decided:
            why = f" — {prompt._short(r.rationale, PLANNER_RATIONALE_CHARS)}" if r.rationale else ""
            lines.append(f"{r.exp}\t{r.status}\t{prompt._metric(r.metric)}\t{prompt._short(r.description)}{why}")
    else:
        lines += ["", "No experiments yet besides the baseline."]
    lines += prompt.evidence_lines(ctx.history, name, recent=len(ctx.history))
    kept = [r for r in decided if r.status == "keep" and r.diff][-PLANNER_KEPT_DIFFS:]
    if kept:
        lines += ["", "## Diffs of the kept changes"]
        for r in kept:
            lines += [f"### exp {r.exp}: {prompt._short(r.description)}", prompt._head(r.diff.strip(), PLANNER_DIFF_CHARS)]
    if rejected:
        lines += ["", "## Rejected by the reviewer before training"]
        lines += [f"- {prompt._short(r['description'])}: {prompt._short(r['reason'])}" for r in rejected[-50:]]
    if ctx.unseen:
        lines += ["", "## Running now (results not known yet)"]
        lines += [f"- exp {exp}: {prompt._short(description)}" for exp, description in ctx.unseen]
    if ctx.last_failure_tail.strip():
        lines += ["", "## Tail of the last crashed run's log", "```",
                  prompt._tail(ctx.last_failure_tail.strip(), prompt.TAIL_CHARS), "```"]
    return "\n".join(lines)


def planner_message(ctx: ProposalContext, notes: str, rejected: list[dict],
                    rejected_in_row: int = 0) -> dict[str, Any]:
    ask = "Update the notes from this evidence, then end your turn."
    if rejected_in_row:
        ask = (f"The reviewer rejected the last {rejected_in_row} proposals in a row before training (the last "
               f"lines under \"Rejected by the reviewer\"): the queue of hypotheses is evidently bad. Replace "
               f"the ranked hypotheses with ones unlike the rejected ones, then end your turn.")
    return {"role": "user", "content": [
        {"type": "text", "text": history_text(ctx, rejected)},
        {"type": "text", "text": f"The current `{NOTES_FILE}`:\n<notes>\n{notes.strip()}\n</notes>\n\n{ask}"},
    ]}


def reviewer_system(target: TargetConfig) -> list[dict[str, Any]]:
    facts = prompt.system_blocks("", target)[0]["text"].strip()
    return [{"type": "text", "text": f"{REVIEWER_ROLE}\n\n{facts}\n", "cache_control": STABLE_CACHE}]


def reviewer_message(ctx: ProposalContext, notes: str, description: str, rationale: str, diff: str,
                     checks: list[str]) -> dict[str, Any]:
    """What the reviewer judges against, compact: the history's one line per
    experiment and the notes' do-not-repeat lines that the history does not
    already say (the rejections, the planner's own). The rest of the notes
    (the ranking, the advice to workers) does not decide a verdict."""
    decided = [r for r in ctx.history if r.exp != 0][-REVIEW_HISTORY_ROWS:]
    tried_lines = [f"- {prompt._short(r.description)} -> {r.status}" for r in decided]
    said = {f"{text} -> {r.status}" for r in decided for text in (" ".join(r.description.split()),
                                                                    prompt._short(r.description))}
    avoid = [item for item in section_items(notes, DO_NOT_REPEAT_HEADING) if item not in said]
    context = "\n".join([
        "## Do not repeat (from the notes)",
        *([f"- {item}" for item in avoid] or ["- (nothing beyond the history below)"]),
        "", "## Tried so far", *(tried_lines or ["- nothing yet"]),
    ])
    proposal = "\n".join([
        f"## The proposal for experiment {ctx.exp}",
        f"Description: {description}",
        f"Rationale: {rationale or '(none)'}",
        "Checks the harness ran: " + ("; ".join(checks) if checks else "none"),
        "```diff", prompt._head(diff.strip(), prompt.DIFF_CHARS * 2), "```",
        f"Call {REVIEW_TOOL_NAME} now.",
    ])
    # No breakpoint here: the history grows by a row each time, so a cached
    # copy would be written at every review and never read.
    return {"role": "user", "content": [
        {"type": "text", "text": context},
        {"type": "text", "text": proposal},
    ]}
