"""The morning after, on a target whose truth is known (tests/finalize/synthetic.py).

One night on the synthetic target (two slots, every run sleeping --sleep s so
that the slots' overlap is measurable), then `ar-tui finalize --ablate
--drop-null`. Prints, as markdown:
- each change's leave-one-out effect and mark next to the truth;
- the branch finalize wrote, and what the tip trains to against the truth;
- the share of time both slots were training through the closing
  confirmations and through the ablation, until the last run of each started.

    python bench/ablation_synthetic.py [--sleep 1.0] [--repeats 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ar_tui.core import events as ev  # noqa: E402
from ar_tui.core.records.ledger import read_events  # noqa: E402
from tests.finalize.synthetic import SD, expected, finalize, night, train_at  # noqa: E402

def truth(lineage: list[str], description: str) -> float:
    """The true gain of having a change on top of the others on the lineage
    (which changes are on it depends on how the two slots' runs interleaved)."""
    flags = {d.split()[0]: int(d.split()[-1]) for d in lineage}
    without = {k: v for k, v in flags.items() if k != description.split()[0]}
    return expected(**without) - expected(**flags)


def both_busy_share(events: list[ev.Event], starts_with: str) -> tuple[float, int]:
    """Of the time from the first to the last start of these runs, the share
    with both slots training; and how many runs there were."""
    spans: list[tuple[int, float, float]] = []
    open_runs: dict[int, float] = {}
    for event in events:
        if isinstance(event, ev.ExperimentStarted) and event.description.startswith(starts_with):
            open_runs[event.slot] = event.ts
        elif isinstance(event, ev.ExperimentFinished) and event.slot in open_runs:
            spans.append((event.slot, open_runs.pop(event.slot), event.ts))
    if not spans:
        return 0.0, 0
    begin, end = min(s for _, s, _ in spans), max(s for _, s, _ in spans)
    if end <= begin:
        return 0.0, len(spans)
    step, both, t = (end - begin) / 2000, 0, begin
    for _ in range(2000):
        busy = {slot for slot, s, f in spans if s <= t < f}
        both += len(busy) >= 2
        t += step
    return both / 2000, len(spans)


async def one_night(tmp: Path, salt: int, repeats: int, show: bool) -> tuple[int, int, list[str]]:
    """One night and its ablation; (marks right, marks, printed lines)."""
    os.environ["SYN_SALT"] = str(salt)
    target, run_dir, _ = await night(tmp, devices=["cpu", "cpu"])
    result = finalize(run_dir, "--ablate", "--drop-null", "--repeats", str(repeats), timeout=3600)
    if result.returncode != 0:
        sys.exit(result.stderr)
    lines = (run_dir / "ablation.tsv").read_text().splitlines()
    names = lines[0].split("\t")
    rows = [dict(zip(names, line.split("\t"))) for line in lines[1:]]
    lineage = [row["description"] for row in rows]
    out = [f"night with SYN_SALT={salt}:", "",
           "| exp | change | true gain on top | measured (99% interval) | mark | right? |",
           "|---|---|---|---|---|---|"]
    right = 0
    for row in rows:
        gain = truth(lineage, row["description"])
        mark = "still matters" if gain > 0 else "no measurable effect"
        right += row["mark"] == mark
        out.append(f"| {row['exp']} | {row['description']} | {gain:.3f} | {float(row['effect']):+.4f} "
                   f"({float(row['low']):+.4f} to {float(row['high']):+.4f}) | {row['mark']} | "
                   f"{'yes' if row['mark'] == mark else 'NO'} |")
    log = subprocess.run(["git", "log", "--format=%s", "autoresearch/syn-final"], cwd=target,
                         capture_output=True, text=True).stdout.split("\n")
    out.append(f"\nbranch autoresearch/syn-final: {' <- '.join(s for s in log if s)}")
    tips = [train_at(target, "autoresearch/syn-final", seed) for seed in range(101, 106)]
    kept = [row["description"] for row in rows if row["mark"] != "no measurable effect"]
    want = expected(**{d.split()[0]: int(d.split()[-1]) for d in kept})
    out.append(f"tip trains to {sum(tips) / len(tips):.4f} over 5 seeds; truth {want:.4f}")
    events = list(read_events(run_dir / "events.jsonl"))
    for label, prefix in (("closing confirmations", "confirming "), ("ablation", "ablation: ")):
        share, runs = both_busy_share(events, prefix)
        if runs <= 2:  # two runs start together: there is no "until the last started" to measure
            out.append(f"{label}: {runs} run(s), started together on the two slots")
        else:
            out.append(f"{label}: {runs} runs, both slots training {100 * share:.0f}% of the time until the last "
                       "started")
    if show:
        print("\n".join(out) + "\n", flush=True)
    return right, len(rows), out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sleep", type=float, default=1.0, help="seconds each run takes")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--nights", type=int, default=1, help="nights, each with another draw of the noise")
    parser.add_argument("--keep", type=Path, help="keep the targets and run dirs here (a new directory)")
    args = parser.parse_args()
    os.environ["SYN_SLEEP"] = str(args.sleep)
    if args.keep:
        args.keep.mkdir(parents=True)
    print(f"synthetic target, noise sd {SD}, {args.repeats} runs per variant, 2 slots, 99% confidence\n")
    right = total = 0
    with tempfile.TemporaryDirectory() as scratch:
        base = args.keep or Path(scratch)
        os.environ["AR_TUI_HOME"] = str(base / "home")
        for salt in range(args.nights):
            got, marks, _ = await one_night(base / f"night{salt}", salt, args.repeats, show=True)
            right, total = right + got, total + marks
    print(f"{right} of {total} marks right over {args.nights} night(s)")


if __name__ == "__main__":
    asyncio.run(main())
