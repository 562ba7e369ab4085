"""Harness overhead per experiment: git, ledger, process start and teardown,
with a target that trains for 0 s. Prints the median and spread of the time
per experiment and the engine's memory every 100 experiments.

    python bench/harness_overhead.py [--experiments 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ar_tui.agents.scripted import ScriptedProposer, ScriptStep  # noqa: E402
from ar_tui.core import events as ev  # noqa: E402
from ar_tui.core.engine import Engine, EngineOptions  # noqa: E402


async def run(experiments: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "target"
        target.mkdir()
        (target / "train.py").write_text("LR = 0.5\nprint(f'val_bpb: {1 + (LR - 0.3) ** 2:.6f}')\n")
        (target / "prepare.py").write_text("# fixed\n")
        env = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
               "GIT_COMMITTER_EMAIL": "b@b", "PATH": "/usr/bin:/bin"}
        for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"]):
            subprocess.run(["git", *args], cwd=target, env=env, check=True)
        steps = [ScriptStep(f"LR -> {0.9 + i * 1e-5:.5f}", "LR = 0.5", f"LR = {0.9 + i * 1e-5:.5f}")
                 for i in range(experiments)]
        options = EngineOptions(target_dir=target, tag="overhead", run_dir=Path(tmp) / "run", attended=False,
                                lookahead=0, baseline_runs=1, max_experiments=experiments, write_report=False)
        engine = Engine(options, ScriptedProposer(steps))
        process = psutil.Process()
        decided: list[float] = []
        memory: list[tuple[int, float]] = []
        training: list[float] = []

        def observe(event: ev.Event) -> None:
            if isinstance(event, ev.ExperimentFinished) and event.exp > 0:
                training.append(event.seconds)
            if isinstance(event, ev.Decision) and event.status != "rerun":
                decided.append(time.monotonic())
                if len(decided) % 100 == 0:
                    memory.append((len(decided), process.memory_info().rss / 2**20))

        engine.subscribe(observe)
        await engine.run()
        per_experiment = [b - a for a, b in zip(decided, decided[1:])]
        print(f"experiments: {len(decided)}")
        print(f"time per experiment, all included: median {statistics.median(per_experiment) * 1000:.0f} ms, "
              f"p90 {statistics.quantiles(per_experiment, n=10)[-1] * 1000:.0f} ms, "
              f"max {max(per_experiment) * 1000:.0f} ms")
        print(f"of which the child process itself (python start, print, exit): median "
              f"{statistics.median(training) * 1000:.0f} ms")
        print("engine RSS (MiB) by experiments decided: " + ", ".join(f"{n}: {mb:.0f}" for n, mb in memory))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=1000)
    asyncio.run(run(parser.parse_args().experiments))


if __name__ == "__main__":
    main()
