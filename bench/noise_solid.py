"""Which of a finished run's keeps are solid, and the night's improvement with
its interval: what the morning report will show once it calls
`ar_tui.core.decisions` (the confirmatory nanochat run in docs/benchmarks/noise-solid.md).

    python bench/noise_solid.py RUN_DIR

A keep is solid when its gain over its parent (the keep before it) still
holds, at the run's confidence, on the runs made after it was kept.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ar_tui.core import events as ev  # noqa: E402
from ar_tui.core.decisions import DEFAULT_CONFIDENCE, NoiseModel, keep_is_solid, night_summary  # noqa: E402
from ar_tui.core.records.ledger import read_events, read_results, read_state  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--confidence", type=float, default=DEFAULT_CONFIDENCE)
    args = parser.parse_args()
    state = read_state(args.run_dir)
    if not state or "noise" not in state:
        print(f"{args.run_dir}: no state.json with a noise model", file=sys.stderr)
        return 2
    noise = NoiseModel.from_dict(state["noise"])
    started = next((e for e in read_events(args.run_dir / "events.jsonl") if isinstance(e, ev.RunStarted)), None)
    direction = started.direction if started else "min"
    _, rows, _ = read_results(args.run_dir / "results.tsv")
    keeps = [r for r in rows if r.status == ev.STATUS_KEEP and r.exp is not None]
    if not keeps:
        print("no baseline in results.tsv", file=sys.stderr)
        return 2
    solid = 0
    for parent, kept in zip(keeps, keeps[1:]):
        verdict = keep_is_solid(noise, kept.commit, parent.commit, direction, args.confidence)
        word = {True: "solid", False: "not solid", None: "unconfirmed (never re-measured)"}[verdict]
        solid += verdict is True
        fresh = len(noise.fresh_runs(kept.commit))
        print(f"exp {kept.exp} {kept.description}: {word} ({fresh} run(s) after its keep)")
    summary = night_summary(noise, keeps[0].commit, keeps[-1].commit, direction, args.confidence)
    print(f"{solid} of {len(keeps) - 1} keep(s) solid; improvement: {summary['improvement_text']}; "
          f"noise sd {summary['noise_sd']} ({summary['noise_dof']} dof)"
          + ("; jitter only" if summary["noise_jitter_only"] else ""))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
