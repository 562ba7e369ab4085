"""Benchmark: what running the slots on Ray costs, on a real local cluster.

A Ray cluster of two nodes on this machine (2 logical GPUs each, so 4 GPU
slots), inside a loopback-only network namespace (as the tests run it; needs
root), and a target that trains for a fixed time (it sleeps: this measures
the orchestration, not the arithmetic). Three runs of the real engine with
the scripted proposer:

1. the local executor, 4 CPU slots: the reference;
2. the Ray executor, 4 GPU slots;
3. the Ray executor again, and the worker node's raylet is killed under an
   experiment: how long until that experiment trains again.

Printed:
- the share of the run's wall time each slot spent training;
- the per-experiment overhead: from the engine's "started" to its "finished"
  minus the training seconds, local and Ray, and their difference;
- from the node's death to the notice (Ray saw it) and to the experiment's
  first line on another node (which includes waiting for a free GPU).

    sudo python bench/ray_slots.py [--train-s 3] [--experiments 12]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ar_tui.agents.scripted import ScriptedProposer, ScriptStep  # noqa: E402
from ar_tui.core import events as ev  # noqa: E402
from ar_tui.core.engine import Engine, EngineOptions  # noqa: E402
from ar_tui.core.executors.local import LocalExecutor  # noqa: E402
from tests.conftest import make_target  # noqa: E402
from tests.ray.cluster import NAMESPACE_MARK, LocalCluster, end_processes_naming, in_loopback_namespace  # noqa: E402

SLOTS = 4
TRAIN = textwrap.dedent(
    """\
    import os, time
    WIDTH = 64
    # Each test node has its own root: which node this trial runs on.
    print(f"started node={{os.environ.get('AR_TUI_RAY_NODE_ROOT')}}", flush=True)
    time.sleep({train_s})
    print("---")
    print(f"val_bpb: {{1.0 + (WIDTH - 64) ** 2 * 1e-4:.6f}}")
    """
)


class Recorder:
    def __init__(self, on_started=None) -> None:
        self.events: list[ev.Event] = []
        self.on_started = on_started

    def __call__(self, event: ev.Event) -> None:
        self.events.append(event)
        if self.on_started is not None and isinstance(event, ev.LogLine) and event.text.startswith("started node="):
            self.on_started(event)

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


async def one_run(base: Path, name: str, executor, devices: list[str], train_s: float, experiments: int,
                  on_started=None) -> dict:
    target = make_target(base / "targets" / name, train=TRAIN.format(train_s=train_s),
                         config=f"[target]\ntime_budget = {train_s:g}\ntimeout = {train_s * 10 + 30:g}\n")
    # Every change makes the metric worse: nothing is kept, every step applies
    # to the same base, and the run has exactly `experiments` experiments.
    steps = [ScriptStep(f"WIDTH {64 + k}", "WIDTH = 64", f"WIDTH = {64 + k}") for k in range(1, experiments + 1)]
    options = EngineOptions(target_dir=target, tag=name, run_dir=base / "runs" / name, attended=False,
                            lookahead=1, baseline_runs=len(devices), max_experiments=experiments, devices=devices)
    engine = Engine(options, ScriptedProposer(steps), executor=executor, services=[])
    recorder = Recorder(on_started)
    engine.subscribe(recorder)
    stopped = await engine.run()
    started = {(e.exp, e.attempt, e.slot): e.ts for e in recorder.of(ev.ExperimentStarted)}
    run_start = min(started.values())
    run_end = recorder.of(ev.RunStopped)[-1].ts
    wall = run_end - run_start
    training = {slot: 0.0 for slot in range(len(devices))}
    overheads, first_per_slot, later = [], [], []
    # Finished events carry no attempt: match each to the latest start of its (exp, slot).
    for fin in recorder.of(ev.ExperimentFinished):
        start = max(ts for (exp, _, slot), ts in started.items() if exp == fin.exp and slot == fin.slot
                    and ts <= fin.ts)
        # A slot's first trial also pays for starting its worker (and, on Ray, its runtime environment).
        (later if training[fin.slot] else first_per_slot).append(fin.ts - start - fin.seconds)
        training[fin.slot] += fin.seconds
        overheads.append(fin.ts - start - fin.seconds)
    return {
        "stopped": stopped.reason, "error": stopped.error, "wall_s": wall,
        "trials": len(recorder.of(ev.ExperimentFinished)),
        "outcomes": sorted({e.outcome for e in recorder.of(ev.ExperimentFinished)}),
        "train_share": {slot: seconds / wall for slot, seconds in training.items()},
        "overhead_s": {"mean": statistics.mean(overheads), "median": statistics.median(overheads),
                       "max": max(overheads), "first_per_slot_mean": statistics.mean(first_per_slot),
                       "later_mean": statistics.mean(later) if later else 0.0,
                       "later_median": statistics.median(later) if later else 0.0},
        "notices": recorder.of(ev.Notice),
        "log": recorder.of(ev.LogLine),
        "rows": [r.status for r in engine.opened.ledger.rows] if engine.opened else [],
    }


async def inside(base: Path, train_s: float, experiments: int, out: Path) -> None:
    from ar_tui.core.executors.ray import RayExecutor

    results: dict = {}
    cluster = LocalCluster(base, gpus_per_node=2, cpus_per_node=2)
    try:
        t0 = time.time()
        cluster.start()
        results["cluster_start_s"] = time.time() - t0
        local = await one_run(base, "local", LocalExecutor(), ["cpu"] * SLOTS, train_s, experiments)
        ray_exec = RayExecutor(run_marker=str((base / "runs" / "ray").resolve()))
        ray_run = await one_run(base, "ray", ray_exec, ray_exec.devices(None), train_s, experiments)

        killed: dict = {}

        def kill_under_worker_trial(line: ev.LogLine) -> None:
            if not killed and line.exp >= 1 and "node-worker" in line.text:
                killed.update(exp=line.exp, slot=line.slot, at=cluster.kill_worker_node())

        death_exec = RayExecutor(run_marker=str((base / "runs" / "death").resolve()))
        death = await one_run(base, "death", death_exec, death_exec.devices(None), train_s, experiments,
                              on_started=kill_under_worker_trial)
        if killed:
            notice = next((n.ts for n in death["notices"] if "left the cluster" in n.message and n.ts >= killed["at"]),
                          None)
            again = next((line.ts for line in death["log"] if line.exp == killed["exp"] and line.ts > killed["at"]
                          and line.text.startswith("started node=")), None)
            death["death_to_notice_s"] = notice - killed["at"] if notice else None
            death["death_to_rerun_s"] = again - killed["at"] if again else None
        for run in (local, ray_run, death):
            run.pop("log")
            run["notices"] = [n.message for n in run["notices"]]
        results.update(local=local, ray=ray_run, death=death, killed=killed)
    finally:
        cluster.stop()
        out.write_text(json.dumps(results, indent=2, default=str))


def report(results: dict, train_s: float) -> None:
    local, ray_run, death = results["local"], results["ray"], results["death"]
    print(f"cluster: 2 nodes x 2 logical GPUs, {SLOTS} slots; training {train_s:g} s per trial "
          f"(cluster start {results['cluster_start_s']:.1f} s)")
    for name, run in (("local", local), ("ray", ray_run), ("ray, a node killed", death)):
        shares = " ".join(f"{share:.0%}" for share in run["train_share"].values())
        print(f"{name:>20}: {run['trials']} trials in {run['wall_s']:.1f} s; training share per slot: {shares} "
              f"(mean {statistics.mean(run['train_share'].values()):.0%}); overhead per trial "
              f"mean {run['overhead_s']['mean']:.2f} s, median {run['overhead_s']['median']:.2f} s, "
              f"max {run['overhead_s']['max']:.2f} s (a slot's first trial {run['overhead_s']['first_per_slot_mean']:.2f} s, "
              f"later ones mean {run['overhead_s']['later_mean']:.2f} s, median {run['overhead_s']['later_median']:.2f} s)"
              f"; outcomes {run['outcomes']}; ledger {len(run['rows'])} rows"
              f"{', error: ' + run['stopped'] if run['error'] else ''}")
    added = ray_run["overhead_s"]["mean"] - local["overhead_s"]["mean"]
    warm = ray_run["overhead_s"]["later_median"] - local["overhead_s"]["later_median"]
    cold = ray_run["overhead_s"]["first_per_slot_mean"] - local["overhead_s"]["first_per_slot_mean"]
    print(f"Ray adds {added:.2f} s per experiment (mean over the run); {cold:.2f} s to a slot's first trial, "
          f"{warm:.2f} s (median) to each later one")
    if results["killed"]:
        print(f"node death: Ray reported it after {death.get('death_to_notice_s') or float('nan'):.1f} s; the experiment "
              f"trained again after {death.get('death_to_rerun_s') or float('nan'):.1f} s (waiting for a free GPU "
              f"included); crash rows: {death['rows'].count('crash')}")
    else:
        print("node death: no experiment ran on the worker node; nothing was killed")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-s", type=float, default=3.0)
    parser.add_argument("--experiments", type=int, default=12)
    parser.add_argument("--inside", nargs=2, metavar=("BASE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        assert os.environ.get(NAMESPACE_MARK)
        asyncio.run(inside(Path(args.inside[0]), args.train_s, args.experiments, Path(args.inside[1])))
        return 0
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ar-tui-bench-ray-") as tmp:
        base, out = Path(tmp), Path(tmp) / "results.json"
        try:
            result = in_loopback_namespace(Path(__file__).resolve(), [
                "--train-s", str(args.train_s), "--experiments", str(args.experiments), "--inside", str(base),
                str(out)], timeout=600)
        finally:
            end_processes_naming(base / "ray-tmp")
        if not out.exists() or not out.read_text().strip():
            print(result.stderr[-4000:], file=sys.stderr)
            return 1
        results = json.loads(out.read_text())
        if "ray" not in results:
            print(result.stderr[-4000:], file=sys.stderr)
            return 1
        report(results, args.train_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
