"""report.md: the figures as a page a person reads over coffee."""

from __future__ import annotations

from ar_tui import formatting as fmt
from ar_tui.core.direction import Direction
from ar_tui.core.records.rundir import CHART_FILE, LEDGER_FILE
from ar_tui.report.build import Report

# A report.md that inlines every diff of a long night would be unreadable; the
# full diffs stay in diffs/<exp>.diff.
MAX_DIFF_LINES = 120
MAX_FAILED_IDEAS_SHOWN = 30
# An unknown figure in the report's tables.
NA = "n/a"


def fmt_metric(value: float | None) -> str:
    return fmt.metric(value, missing=NA)


def fmt_delta(value: float | None) -> str:
    return fmt.delta(value, missing=NA)


def fmt_usd(value: float | None) -> str:
    return fmt.exact_dollars(value, missing=NA)


def fmt_pct(value: float | None) -> str:
    return fmt.share(value, missing=NA)


def fmt_duration(seconds: float | None) -> str:
    return fmt.hours_minutes(seconds, missing=NA)


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks inside the text."""
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def summary_table(report: Report) -> list[tuple[str, str]]:
    """The summary figures as (label, value) pairs, formatted as report.md shows them."""
    what = f"{report.metric} ({report.better_word} is better)"
    best = fmt_metric(report.best)
    if report.best_exp is not None:
        best += f" (exp {report.best_exp}, {report.best_commit})"
    if report.wall_seconds is None:
        pace = share = "n/a (no events.jsonl)"
    else:
        pace = "n/a" if report.experiments_per_hour is None else f"{report.experiments_per_hour:.1f}"
        share = "n/a" if report.training_share is None else f"{100 * report.training_share:.1f}%"
        if report.training_seconds is not None:
            share += f" ({fmt_duration(report.training_seconds)} training in {fmt_duration(report.wall_seconds)}"
            share += f" on {report.slots} slots)" if report.slots > 1 else ")"
    if report.cost_usd is None:
        cost = "n/a (no cost recorded)"
    else:
        cost = fmt_usd(report.cost_usd) + (" (at least; a model had no known price)" if report.cost_is_lower_bound else "")
    gpu_priced = report.gpu_cost_usd is not None
    tokens = "n/a"
    if report.tokens is not None:
        tokens = ", ".join(f"{kind.replace('_', ' ')} {count:,}" for kind, count in report.tokens.items())
    return [
        ("Metric", what),
        ("Baseline", fmt_metric(report.baseline)),
        ("Best", best),
        # With an interval when the noise gives one ("2.1% better (95% interval 1.4% to 2.8%)").
        ("Improvement", report.improvement_text if report.improvement_ci_pct is not None
         else fmt_pct(report.improvement_pct)),
        ("Noise", "n/a" if report.noise_sd is None else
         f"sd {report.noise_sd:.6f} over {report.noise_dof} dof"
         + (" (jitter only: the target ignores AR_SEED; set [metric] min_effect)" if report.noise_jitter_only else "")),
        ("Experiments run", f"{report.experiments} (after the baseline)"),
        *([("Sandbox", report.sandbox.removeprefix("sandbox: "))] if report.sandbox else []),
        ("Kept", str(report.kept)),
        ("Discarded", str(report.discarded)),
        ("Crashed", str(report.crashed)),
        ("Vetoed", str(report.vetoed)),
        ("Wall time", fmt_duration(report.wall_seconds)),
        ("Experiments per hour", pace),
        ("Share of wall time training", share),
        *(_whole_cost(report, cost) if gpu_priced else [
            ("Total cost", cost),
            ("GPU cost", "n/a (GPU time not priced: --gpu-usd-per-hour or [cost] gpu_usd_per_hour)"
             + (f"; {report.gpu_hours:.2f} GPU-hours held" if report.gpu_hours else "")),
        ]),
        ("Tokens", tokens),
        ("Cost per experiment", _split(report.total_cost_per_experiment, report.cost_per_experiment,
                                       report.gpu_cost_per_experiment) if gpu_priced
         else fmt_usd(report.cost_per_experiment)),
        ("Cost per kept improvement", _split(report.total_cost_per_kept, report.cost_per_kept,
                                             report.gpu_cost_per_kept) if gpu_priced
         else fmt_usd(report.cost_per_kept)),
        *([("Cost by role", ", ".join(f"{role} {fmt_usd(usd)}" for role, usd in report.cost_by_role.items()))]
          if len(report.cost_by_role) > 1 else []),
        *([("Rejected before training", str(report.rejected_before_training))]
          if report.rejected_before_training else []),
    ]


def _split(total: float | None, tokens: float | None, gpu: float | None) -> str:
    """A sum with its parts: $1.2345 ($0.0345 tokens + $1.2000 GPU)."""
    return f"{fmt_usd(total)} ({fmt_usd(tokens)} tokens + {fmt_usd(gpu)} GPU)"


def _whole_cost(report: Report, token_cost: str) -> list[tuple[str, str]]:
    hours = "GPU time"
    if report.gpu_hours is not None:
        hours = (f"{report.gpu_hours:.2f} GPU-hours" if report.gpu_hours >= 0.01
                 else f"{report.gpu_hours * 3600:.0f} GPU-seconds")
    rate = f" at {fmt.dollars(report.gpu_usd_per_hour)}/h" if report.gpu_usd_per_hour is not None else ""
    covered = ""
    if report.budget_usd is not None:
        covered = "; --budget-usd covers " + ("tokens and GPU" if report.budget_covers == "all" else "tokens only")
    return [
        ("Total cost", _split(report.total_cost_usd, report.token_cost_usd, report.gpu_cost_usd)
         + (" (at least; a model had no known price)" if report.cost_is_lower_bound else "")),
        ("Token cost", token_cost),
        ("GPU cost", f"{fmt_usd(report.gpu_cost_usd)} ({hours}{rate}{covered})"),
    ]


def lineage_lines(report: Report) -> list[str]:
    """The population as a text tree: each node under its parent, its status
    mark and metric, the path to the best marked ┃ and the best ★."""
    lines: list[str] = []
    last_at: list[bool] = []  # for each depth, whether that ancestor was its parent's last child
    for node in report.lineage:
        depth, last = node["depth"], node["last"]
        del last_at[depth:]
        guides = "".join("    " if done else "│   " for done in last_at[1:])
        branch = ("└── " if last else "├── ") if depth else ""
        last_at.append(last)
        mark = "★" if node["best"] else ("┃" if node["on_best_path"] else " ")
        island = f" [island {node['island']}]" if node["island"] is not None else ""
        status = fmt.STATUS_MARKS.get(node["status"], "?")
        lines.append(f"{guides}{branch}{mark} {node['exp']} {status} {fmt_metric(node['metric'])}{island}  "
                     f"{_one_line(node['description'])[:60]}")
    return lines


def _islands(report: Report) -> list[str]:
    """Each island's best, where the run kept several populations."""
    best: dict[int, dict] = {}
    for node in report.lineage:
        island, metric = node["island"], node["metric"]
        if island is None or metric is None or node["status"] not in ("keep", "discard"):
            continue
        held = best.get(island)
        if held is None or Direction.parse(report.direction).better(metric, held["metric"]):
            best[island] = node
    return [f"- island {island}: best {fmt_metric(node['metric'])} (exp {node['exp']}), "
            f"{sum(1 for n in report.lineage if n['island'] == island)} nodes" for island, node in sorted(best.items())]


def render_markdown(
    report: Report, narrative: str | None = None, *, chart: bool = True, max_diff_lines: int = MAX_DIFF_LINES
) -> str:
    out: list[str] = [f"# Morning report: {report.tag}", ""]
    who = report.agent + (f" ({report.model})" if report.model else "")
    source = "ar-tui run" if report.source == "ar-tui" else "results.tsv only (no events.jsonl)"
    out.append(f"Run dir `{report.run_dir}` · {source}" + (f" · agent {who}" if who else ""))
    if report.stopped_reason:
        out.append(f"Stopped: {_one_line(report.stopped_reason)}")
    out.append("")
    for warning in report.warnings:
        out.append(f"> Note: {warning}")
    if report.warnings:
        out.append("")
    if narrative:
        out += [
            "## What happened",
            "",
            "_Written by the model from the figures below; the figures themselves come from the ledger._",
            "",
            narrative.strip(),
            "",
        ]
    if chart:
        out += [f"![progress]({CHART_FILE})", ""]
    out += ["## Figures", "", "| | |", "|---|---|"]
    out += [f"| {label} | {value} |" for label, value in summary_table(report)]
    out.append("")

    if report.lineage:
        tree = "\n".join(lineage_lines(report))
        fence = _fence(tree)
        out += ["## Lineage", "",
                "Each experiment under the one it was built on (status mark, metric); "
                "the path from the baseline to the best is marked ┃, the best ★.", "",
                fence, tree, fence, ""]
        islands = _islands(report)
        if islands:
            out += islands + [""]

    if report.plateaus:
        out += ["## Plateaus", ""] + [f"- {_one_line(line)}" for line in report.plateaus] + [""]

    out += ["## Kept changes", ""]
    if not report.kept_changes:
        out += ["Nothing beat the baseline.", ""]
    for number, change in enumerate(report.kept_changes, 1):
        out.append(f"### {number}. exp {change.exp} · `{change.commit}` · {_one_line(change.description)}")
        out.append("")
        out.append(
            f"- {report.metric} {fmt_metric(change.metric)}, {fmt_delta(change.delta)} "
            f"from {fmt_metric(change.previous)}"
        )
        if change.cost_usd is not None and change.gpu_usd is not None:
            out.append(f"- cost {_split(change.cost_usd + change.gpu_usd, change.cost_usd, change.gpu_usd)}")
        elif change.cost_usd is not None:
            out.append(f"- cost {fmt_usd(change.cost_usd)}")
        if change.rule or change.forced:
            out.append(f"- kept by: {_one_line(change.rule) or 'a person'}" + (" (forced)" if change.forced else ""))
        solid = {True: "solid (its gain held on runs made after it was kept)",
                 False: "not solid (its gain did not hold when it was run again)",
                 None: "unconfirmed (never run again after it was kept)"}[change.solid]
        out.append(f"- {solid}")
        out.append("")
        if change.rationale:
            out += [f"Rationale: {change.rationale.strip()}", ""]
        if change.diff:
            lines = change.diff.rstrip("\n").split("\n")
            shown = "\n".join(lines[:max_diff_lines])
            fence = _fence(shown)
            out += [f"{fence}diff", shown, fence]
            if len(lines) > max_diff_lines:
                out.append(f"({len(lines) - max_diff_lines} more lines in diffs/{change.exp}.diff)")
            out.append("")

    out += ["## Ideas that failed", ""]
    if not report.failed_ideas:
        out += ["None.", ""]
    else:
        # A bare original ledger records no reasons: leave out an empty column.
        reasons = any(idea.reason for idea in report.failed_ideas)
        # With GPU time priced, what each idea cost: tokens and GPU together.
        costs = any(idea.gpu_usd is not None for idea in report.failed_ideas)
        header = ["exp", "status", report.metric, "delta", "description"] + (["why"] if reasons else []) + \
            (["cost (tokens + GPU)"] if costs else [])
        out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for idea in report.failed_ideas[:MAX_FAILED_IDEAS_SHOWN]:
            cells = [str(idea.exp), idea.status, fmt_metric(idea.metric), fmt_delta(idea.delta), _one_line(idea.description)]
            if reasons:
                cells.append(_one_line(idea.reason))
            if costs:
                cells.append(fmt_usd(None if idea.gpu_usd is None else (idea.cost_usd or 0.0) + idea.gpu_usd))
            out.append("| " + " | ".join(cells) + " |")
        hidden = len(report.failed_ideas) - MAX_FAILED_IDEAS_SHOWN
        if hidden > 0:
            out.append(f"\n…and {hidden} more in {LEDGER_FILE}.")
        out.append("")
    return "\n".join(out)
