"""Run `ar-tui run --executor ray` twice with no address, each starting a Ray
instance for the run on this (GPU-less) machine: without --slots it must be
refused in one line; with --slots 1 it runs a CPU slot. Inside a loopback
namespace (see cluster.py). Writes what it saw to a JSON file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ar_tui.core.records.ledger import read_results  # noqa: E402
from tests.conftest import ar_tui_command, make_target  # noqa: E402
from tests.ray.cluster import NAMESPACE_MARK, write_json  # noqa: E402


def main(out: Path, base: Path, ray_tmp: Path) -> None:
    assert os.environ.get(NAMESPACE_MARK)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(HOME=str(base / "home"), RAY_TMPDIR=str(ray_tmp), AR_TUI_HOME=str(base / "ar-tui-home"))
    target = make_target(base / "target", config="[target]\ntime_budget = 1\ntimeout = 60\n")
    common = [*ar_tui_command(), "run", "--headless", "--executor", "ray", "--target", str(target), "--agent",
              "offline", "--unattended", "--max-experiments", "0", "--baseline-runs", "1"]
    found = {}
    for name, extra in (("no_slots", []), ("cpu_slot", ["--slots", "1"])):
        done = subprocess.run([*common, "--tag", name, "--run-dir", str(base / name), *extra], env=env,
                              capture_output=True, text=True, timeout=150)
        ledger = base / name / "results.tsv"
        found[name] = {"exit": done.returncode, "stderr": done.stderr[-3000:], "stdout": done.stdout[-3000:],
                       "rows": [[r.exp, r.status, r.metric] for r in read_results(ledger)[1]]
                       if ledger.exists() else []}
        write_json(out, found)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
