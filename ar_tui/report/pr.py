"""PR.md, the pull-request description of a night's final branch, and the
ablation section of report.md.

A reviewer reads PR.md without the run dir: what changed and why, what each
change and all of them together did (with intervals), what the night cost,
and what was tried and rejected, grouped by idea. The figures come from the
ledger, the noise model and the ablation; nothing here measures anything.
"""

from __future__ import annotations

import re
from collections import defaultdict

from ar_tui.core.decisions import format_improvement, improvement_ci_pct, improvement_pct
from ar_tui.core.finalize.ablation import AblationResult, NULL, Verdict
from ar_tui.core.finalize.branch import FinalBranch
from ar_tui.core.finalize.changes import Effect, Night
from ar_tui.core.records.ledger import LedgerRow, read_state

def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _cell(text: str) -> str:
    """A table cell: one line, and a `|` in a description (`DEPTH 2|12`) does not split it."""
    return _one_line(text).replace("|", "\\|")


def _effect(effect: Effect | None, confidence: float) -> str:
    if effect is None:
        return "not measured"
    if effect.low is None or effect.high is None:
        return f"{effect.gain:+.6f} (no noise estimate)"
    return f"{effect.gain:+.6f} ({confidence:.0%} interval {effect.low:+.6f} to {effect.high:+.6f})"


def idea_of(description: str) -> str:
    """The idea a change tries, for grouping: the first constant or word it
    names in capitals (`LR 0.04 -> 0.02` and `LR warmup` are one idea), else
    its first word."""
    names = re.findall(r"\b[A-Z][A-Z0-9_]{1,}\b", description)
    if names:
        return names[0]
    words = description.split()
    return words[0].lower() if words else "(no description)"


def night_cost(night: Night) -> tuple[float, float | None, float]:
    """Tokens, GPU (None when unpriced) and device-seconds, ablation included."""
    state = read_state(night.run_dir.path) or {}
    tokens = float(state.get("spent_usd", 0.0))
    gpu = state.get("gpu", {})
    priced = any(r.gpu_usd is not None for r in night.rows)
    return tokens, float(gpu.get("usd", 0.0)) if priced else None, float(gpu.get("seconds", 0.0))


def render_pr(night: Night, branch: FinalBranch, ablation: AblationResult | None) -> str:
    conf = night.confidence
    verdicts: dict[int, Verdict] = {v.exp: v for v in ablation.verdicts} if ablation else {}
    included = [c for c in night.changes if c.exp in {exp for exp, _ in branch.commits}]
    out = [f"# {night.tag}: {len(included)} change(s) from an ar-tui night", ""]
    out.append(f"Branch `{branch.name}` ({len(branch.commits)} commit(s) on `{night.base_commit[:7]}`, "
               f"one per change, oldest first). Metric: {night.metric}, {night.direction.words}.")
    out.append("")
    out += ["## What changed and why", ""]
    for change in included:
        how = "kept" if change.status == "keep" else f"{change.status}ed, but the search built on it"
        if change.forced:
            how += ", forced by a person"
        out.append(f"- **{_one_line(change.description)}** (exp {change.exp}, {how}). "
                   f"Why: {_one_line(change.rationale) or 'no rationale recorded'}")
    if branch.left_out:
        out += ["", "Left off this branch (no measurable effect on top of the others, `--drop-null`):"]
        out += [f"- exp {c.exp}: {_one_line(c.description)}" for c in branch.left_out]
    out.append("")
    out += ["## Effect of each change", ""]
    header = ["exp", "change", "during the night (vs its parent)"]
    if ablation:
        header += ["leave-one-out (on top of the others)", "verdict"]
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for change in night.changes:
        cells = [str(change.exp), _cell(change.description), _effect(change.effect, conf)]
        if ablation:
            verdict = verdicts.get(change.exp)
            cells += [_effect(verdict.effect if verdict else None, conf), verdict.mark if verdict else "-"]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out += _together(night, ablation)
    out += ["## What the night cost", ""]
    tokens, gpu, seconds = night_cost(night)
    experiments = sum(1 for r in night.rows if r.exp not in (0, None))
    line = f"{experiments} experiments; tokens ${tokens:.2f}"
    if gpu is not None:
        line += f", GPU ${gpu:.2f} (total ${tokens + gpu:.2f})"
    line += f"; {seconds:.0f} device-seconds of runs ({seconds / 3600:.2f} device-hours)"
    out += [line + (" (the ablation's runs included)" if ablation else ""), ""]
    out += _rejected(night)
    return "\n".join(out)


def _together(night: Night, ablation: AblationResult | None) -> list[str]:
    out = ["## All of them together", ""]
    baseline = night.noise.runs(night.base_commit)
    best = night.noise.fresh_runs(night.best_commit) or night.noise.runs(night.best_commit)
    if baseline and best:
        pct = improvement_pct(sum(baseline) / len(baseline), sum(best) / len(best), night.direction)
        interval = improvement_ci_pct(baseline, best, night.noise, night.direction, night.confidence)
        out.append(f"- during the night: {format_improvement(pct, interval, night.confidence)} than the baseline")
    if ablation is not None and ablation.together is not None:
        base = next(v for v in ablation.variants if v.name == "baseline")
        mean_base = sum(base.runs) / len(base.runs)
        scale = 100.0 / abs(mean_base) if mean_base else 0.0
        e = ablation.together
        interval = (e.low * scale, e.high * scale) if e.low is not None and e.high is not None else None
        out.append(f"- run again side by side with the baseline ({e.runs} runs each): "
                   f"{format_improvement(e.gain * scale, interval, night.confidence)}")
        kept = [v for v in ablation.verdicts if v.mark != NULL]
        out.append(f"- {len(kept)} of {len(ablation.verdicts)} change(s) still matter or are needed on top of "
                   f"the others; {len(ablation.verdicts) - len(kept)} show no measurable effect")
    return out + [""]


def _rejected(night: Night) -> list[str]:
    rejected: list[LedgerRow] = night.rejected
    out = ["## Tried and rejected", ""]
    if not rejected:
        return out + ["Nothing.", ""]
    groups: dict[str, list[LedgerRow]] = defaultdict(list)
    for row in rejected:
        groups[idea_of(row.description)].append(row)
    for idea, rows in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0])):
        tries = "; ".join(f"exp {r.exp} {r.status}: {_one_line(r.description)}" for r in rows[:6])
        more = f"; and {len(rows) - 6} more" if len(rows) > 6 else ""
        out.append(f"- **{idea}** ({len(rows)} tried): {tries}{more}")
    return out + [""]
