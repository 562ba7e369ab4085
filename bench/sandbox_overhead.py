"""What the sandbox costs per run: start-up milliseconds of a trivial command.

Each backend runs `true` N times through the real `LocalExecutor`, under the
policy the engine gives a training run (a worktree inside a run dir, a
per-run scratch dir, the dataset cache, the interpreter's paths), so the
figure is what one experiment pays for its sandbox on top of its training:
building the policy, the backend's own start (bubblewrap's namespaces and
mounts; the fallback's Python launcher, Landlock rules and seccomp filter)
and tearing it down. "none" is the same executor with no sandbox, the
baseline the others are compared with.

    .venv/bin/python bench/sandbox_overhead.py           # N=50 per backend
    .venv/bin/python bench/sandbox_overhead.py -n 200 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ar_tui.core.executors.base import RunSpec  # noqa: E402
from ar_tui.core.executors.local import LocalExecutor
from ar_tui.core.sandbox.backends import Bubblewrap, LandlockBackend, resolve_sandbox  # noqa: E402
from ar_tui.core.sandbox.policy import Confinement, RunScratch  # noqa: E402


async def measure(backend, runs: int, root: Path) -> list[float]:
    sandbox = resolve_sandbox("off") if backend is None else resolve_sandbox("require", backends=[backend])
    run_dir = root / (backend.name if backend else "none") / "run"
    worktree = run_dir / "worktrees" / "slot-0"
    worktree.mkdir(parents=True)
    confinement = Confinement(sandbox, run_dir)
    executor = LocalExecutor()
    times = []
    for index in range(runs):
        started = time.perf_counter()
        scratch = RunScratch.create("bench")
        env, policy = confinement.training({"PATH": "/usr/bin:/bin"}, worktree, scratch)
        spec = RunSpec(command="true", cwd=worktree, env=env, log_path=run_dir / "logs" / f"{index}.log",
                       timeout_s=60, sandbox=sandbox, policy=policy)
        result = await executor.run(spec, lambda text, replace: None, asyncio.Event())
        scratch.remove()
        times.append((time.perf_counter() - started) * 1000)
        if result.exit_code != 0:
            raise SystemExit(f"{sandbox.describe()}: `true` exited {result.exit_code}: {result.tail}")
    return times


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=50)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    figures = {}
    with tempfile.TemporaryDirectory() as root:
        for name, backend in (("none", None), ("bubblewrap", Bubblewrap()), ("landlock", LandlockBackend())):
            why = backend.unavailable() if backend else None
            if why:
                print(f"{name:11s} unavailable here: {why}")
                continue
            times = await measure(backend, args.runs, Path(root))
            figures[name] = {"runs": len(times), "median_ms": statistics.median(times), "mean_ms": statistics.fmean(times),
                             "p90_ms": sorted(times)[int(0.9 * (len(times) - 1))], "min_ms": min(times)}
    base = figures.get("none", {}).get("median_ms")
    print(f"start-up of `true` per run, N={args.runs} each ({sys.platform}, Python {sys.version.split()[0]})")
    print(f"{'backend':11s} {'median':>9s} {'mean':>9s} {'p90':>9s} {'min':>9s} {'over none':>10s}")
    for name, fig in figures.items():
        over = f"{fig['median_ms'] - base:+9.1f}" if base is not None and name != "none" else ""
        print(f"{name:11s} {fig['median_ms']:8.1f}ms {fig['mean_ms']:8.1f}ms {fig['p90_ms']:8.1f}ms "
              f"{fig['min_ms']:8.1f}ms {over:>10s}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
