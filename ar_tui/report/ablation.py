"""The ablation section of report.md, read from the run dir's ablation.tsv
(written by `ar-tui finalize --ablate`), so a rewrite of the report keeps it."""

from __future__ import annotations

from pathlib import Path

ABLATION_HEADING = "## Ablation: does each change still matter?"


def ablation_section(table: Path) -> str | None:
    """The section report.md gets from a run dir's ablation.tsv (None without one)."""
    try:
        lines = table.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    if len(lines) < 2:
        return None
    names = lines[0].split("\t")
    out = [ABLATION_HEADING, "",
           "The final best trained again with each change left out (fresh seeds, side by side with the full "
           "best), each change judged by the night's rule (`ar-tui finalize --ablate`; ablation.tsv).", "",
           "| exp | change | effect of having it (interval) | runs with / without | verdict |",
           "|---|---|---|---|---|"]
    for line in lines[1:]:
        row = dict(zip(names, line.split("\t")))
        effect = row.get("effect") or "-"
        if row.get("low") and row.get("high"):
            effect += f" ({row['low']} to {row['high']})"
        description = row.get("description", "").replace("|", "\\|")  # `DEPTH 2|12` stays one cell
        out.append(f"| {row.get('exp', '')} | {description} | {effect} | "
                   f"{row.get('runs_with', '')} / {row.get('runs_without', '')} | {row.get('mark', '')} |")
    return "\n".join(out) + "\n"
