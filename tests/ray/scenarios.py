"""The Ray executor's scenarios, run inside a loopback-only network namespace
against one real two-node cluster; each writes what it saw to a JSON file
that the tests read (`python scenarios.py FINDINGS BASE`).

The training script tells the engine where it runs and then waits for a
"go" file that only an observer of the engine's live log lines creates: a
run whose lines did not stream back live would never finish.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ar_tui.agents.scripted import ScriptedProposer, ScriptStep  # noqa: E402
from ar_tui.core import events as ev  # noqa: E402
from ar_tui.core.engine import Engine, EngineOptions  # noqa: E402
from ar_tui.core.executors.ray import RayExecutor  # noqa: E402
from ar_tui.core.ledger import read_results  # noqa: E402
from tests.conftest import make_target  # noqa: E402
from tests.ray.cluster import LocalCluster, write_json  # noqa: E402

TRAIN = textwrap.dedent(
    """\
    import os, subprocess, sys, time
    LR = 0.5
    GO = {go!r}
    # A grandchild in the trial's process group (not holding its output open).
    helper = subprocess.Popen(["sleep", "600"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # One that left the group (when the scenario asks): only the run's marker finds it.
    escaped = (subprocess.Popen(["sleep", "600"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True).pid
               if os.path.exists(os.path.join(GO, "escape")) else 0)
    print(f"waiting pid={{os.getpid()}} helper={{helper.pid}} escaped={{escaped}} cuda={{os.environ.get('CUDA_VISIBLE_DEVICES')}} "
          f"node={{os.environ.get('AR_TUI_RAY_NODE_ROOT')}}", flush=True)
    go = os.path.join(GO, f"go-{{os.getpid()}}")
    deadline = time.time() + 30
    while not os.path.exists(go):
        if time.time() > deadline:
            sys.exit(3)
        time.sleep(0.05)
    if os.environ.get("AR_CHECKPOINT"):
        open(os.environ["AR_CHECKPOINT"], "w").write(str(LR))
    print("---")
    print(f"val_bpb: {{(LR - 0.3) ** 2 + 1:.6f}}")
    """
)
# The trusted evaluator's metric differs from what train.py prints, so the
# ledger shows whose number was recorded.
EVALUATOR = "import sys\nlr = float(open(sys.argv[1]).read())\nprint(f'val_bpb: {(lr - 0.3) ** 2 + 2:.6f}')\n"
CONFIG = "[target]\ntime_budget = 1\ntimeout = 45\n"
EVAL_CONFIG = (CONFIG.replace("[target]\n", '[target]\nprotected = ["prepare.py", "evaluate_tiny.py"]\n'
                              'prepare = "python record_prepare.py"\n')
               + '[metric]\nevaluate = "python evaluate_tiny.py {checkpoint}"\n')
# The prepare command notes where it ran (each test node has its own root; the
# engine's machine has none).
RECORD_PREPARE = "import os\nopen({path!r}, 'a').write(os.environ.get('AR_TUI_RAY_NODE_ROOT', 'engine') + '\\n')\n"
STEPS = [("LR 0.5 -> 0.4", "LR = 0.5", "LR = 0.4"), ("LR 0.5 -> 0.35", "LR = 0.5", "LR = 0.35")]


def parse_waiting(text: str) -> dict | None:
    if not text.startswith("waiting "):
        return None
    return dict(part.split("=", 1) for part in text.split()[1:])


def node_name(marker: str) -> str:
    return "worker" if "node-worker" in marker else "head" if "node-head" in marker else marker


class Watcher:
    """Observes an engine: records events, answers the training script's
    wait, and lets a scenario act on a trial instead."""

    def __init__(self, go_dir: Path, act=None) -> None:
        self.go_dir = go_dir
        self.act = act  # (exp, waiting fields) -> True when it handled the wait itself
        self.events: list[ev.Event] = []
        self.trials: list[dict] = []
        self.engine: Engine | None = None

    def __call__(self, event: ev.Event) -> None:
        self.events.append(event)
        if isinstance(event, ev.LogLine):
            fields = parse_waiting(event.text)
            if fields is None:
                return
            trial = {"exp": event.exp, "slot": event.slot, "pid": int(fields["pid"]),
                     "helper": int(fields["helper"]), "escaped": int(fields["escaped"]), "cuda": fields["cuda"], "node": node_name(fields["node"]),
                     "seen": time.time()}
            self.trials.append(trial)
            if self.act is not None and self.act(trial):
                return
            (self.go_dir / f"go-{trial['pid']}").touch()

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


def new_target(base: Path, name: str, evaluate: bool = False) -> Path:
    go = base / "go"
    go.mkdir(exist_ok=True)
    extra = ({"evaluate_tiny.py": EVALUATOR, "record_prepare.py": RECORD_PREPARE.format(path=str(go / "prepared"))}
             if evaluate else None)
    target = make_target(base / "targets" / name, train=TRAIN.format(go=str(go)),
                         config=EVAL_CONFIG if evaluate else CONFIG, extra=extra)
    return target


def engine_for(base: Path, name: str, watcher: Watcher, steps: int, baseline_runs: int = 1,
               evaluate: bool = False, target: Path | None = None) -> tuple[Engine, Path]:
    target = target or new_target(base, name, evaluate)
    run_dir = (base / "runs" / name).resolve()
    executor = RayExecutor(run_marker=str(run_dir))
    options = EngineOptions(target_dir=target, tag=name, run_dir=run_dir, attended=False, lookahead=1,
                            baseline_runs=baseline_runs, max_experiments=steps, devices=executor.devices(None))
    engine = Engine(options, ScriptedProposer([ScriptStep(*s) for s in STEPS[:steps]]), executor=executor,
                    services=[])
    watcher.engine = engine
    engine.subscribe(watcher)
    return engine, run_dir


def rows(run_dir: Path) -> list[list]:
    return [[r.exp, r.status, r.metric] for r in read_results(run_dir / "results.tsv")[1]]


def alive(pid: int) -> bool:
    try:
        return pid > 0 and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_dead(pids: list[int], seconds: float = 15.0) -> list[int]:
    deadline = time.time() + seconds
    while time.time() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


# ---------------------------------------------------------------------- scenarios


async def two_slots(base: Path, cluster: LocalCluster) -> dict:
    watcher = Watcher(base / "go")
    engine, run_dir = engine_for(base, "two", watcher, steps=2, baseline_runs=2, evaluate=True)
    stopped = await engine.run()
    finished = watcher.of(ev.ExperimentFinished)
    return {
        "slots": [s.device for s in engine.slots], "run_dir": str(run_dir),
        "stopped": stopped.reason, "error": stopped.error,
        "rows": rows(run_dir),
        "trials": watcher.trials,
        "outcomes": [[e.exp, e.outcome, e.metric, e.reported_metric] for e in finished],
        "log_has_lines": "waiting pid=" in (run_dir / "logs").joinpath(f"{finished[-1].exp}.log").read_text()
        if (run_dir / "logs").is_dir() else False,
        "logs": sorted(p.name for p in (run_dir / "logs").iterdir()) if (run_dir / "logs").is_dir() else [],
        "evaluating_states": sum(1 for e in watcher.of(ev.StateChanged) if e.state == ev.STATE_EVALUATING),
        "prepared_on": [node_name(line) for line in (base / "go" / "prepared").read_text().splitlines()]
        if (base / "go" / "prepared").exists() else [],
    }


async def veto(base: Path, cluster: LocalCluster) -> dict:
    vetoed: dict = {}

    def act(trial: dict) -> bool:
        if trial["exp"] != 1:
            return False
        vetoed.update(trial)
        assert watcher.engine is not None
        vetoed["alive_before"] = alive(trial["pid"]) and alive(trial["helper"])
        watcher.engine.veto(1)
        return True

    watcher = Watcher(base / "go", act)
    engine, run_dir = engine_for(base, "veto", watcher, steps=1)
    stopped = await engine.run()
    still = wait_dead([vetoed["pid"], vetoed["helper"]]) if vetoed else []
    return {"stopped": stopped.reason, "error": stopped.error, "rows": rows(run_dir), "vetoed": vetoed,
            "alive_after": still}


async def resume_after_kill(base: Path, cluster: LocalCluster) -> dict:
    """An engine in its own process is killed -9 while exp 1 trains; a new
    engine resumes the run dir."""
    target = new_target(base, "resume")
    orphan = base / "orphan.json"
    escape = base / "go" / "escape"
    escape.touch()
    child = subprocess.Popen([sys.executable, __file__, "engine-for-kill", str(base), str(target), str(orphan)],
                             stdout=subprocess.DEVNULL, stderr=open(base / "engine-for-kill.err", "w"))
    try:
        deadline = time.time() + 60
        while not orphan.exists():
            if time.time() > deadline or child.poll() is not None:
                child.kill()
                raise RuntimeError(f"the engine to kill never reached exp 1 (exit {child.poll()})")
            time.sleep(0.1)
    finally:
        escape.unlink()
    left = json.loads(orphan.read_text())
    child.send_signal(signal.SIGKILL)
    child.wait()
    # Ray ends the dead driver's workers and their process groups; a process
    # that left the group is not Ray's to end.
    time.sleep(2.0)
    escaped_alive_before_resume = alive(left["escaped"])
    watcher = Watcher(base / "go")
    engine, run_dir = engine_for(base, "resume", watcher, steps=1, target=target)
    stopped = await engine.run()
    return {
        "left": left,
        "escaped_alive_before_resume": escaped_alive_before_resume,
        "alive_after_resume": wait_dead([left["pid"], left["helper"], left["escaped"]], 5.0),
        "stopped": stopped.reason, "error": stopped.error, "rows": rows(run_dir),
        "notices": [e.message for e in watcher.of(ev.Notice)],
        "rerun": [t for t in watcher.trials if t["exp"] == 1],
    }


async def engine_for_kill(base: Path, target: Path, orphan: Path) -> None:
    def act(trial: dict) -> bool:
        if trial["exp"] != 1:
            return False
        write_json(orphan, trial)
        return True  # never answered: it trains until the engine is killed

    watcher = Watcher(base / "go", act)
    engine, _ = engine_for(base, "resume", watcher, steps=1, target=target)
    await engine.run()


async def node_death(base: Path, cluster: LocalCluster) -> dict:
    """Experiments 1 and 2 train at once, one per node; the worker node dies
    under its experiment, and comes back a little later."""
    killed: dict = {}
    held: list[dict] = []
    restarted = threading.Thread(target=cluster.start_worker, args=(False,))

    def act(trial: dict) -> bool:
        if killed or trial["exp"] < 1:
            return False
        if trial["node"] == "head":
            held.append(trial)  # until the other node has its experiment too
            return True
        killed.update(trial)
        killed["killed_at"] = cluster.kill_worker_node()
        for other in held:
            (base / "go" / f"go-{other['pid']}").touch()
        restarted.start()
        return True

    watcher = Watcher(base / "go", act)
    engine, run_dir = engine_for(base, "death", watcher, steps=2)
    stopped = await engine.run()
    if restarted.ident is not None:
        restarted.join(120)
    reruns = [t for t in watcher.trials if killed and t["exp"] == killed["exp"] and t["seen"] > killed["killed_at"]]
    return {
        "killed": killed, "reruns": reruns, "stopped": stopped.reason, "error": stopped.error,
        "rows": rows(run_dir),
        "outcomes": [[e.exp, e.outcome] for e in watcher.of(ev.ExperimentFinished)],
        "notices": [e.message for e in watcher.of(ev.Notice)],
    }


SCENARIOS = [two_slots, veto, resume_after_kill, node_death]  # node_death last: it ends a node


async def main(findings_path: Path, base: Path) -> None:
    findings: dict = {"errors": {}}
    cluster = LocalCluster(base)
    try:
        started = time.time()
        cluster.start()
        findings["cluster_start_s"] = round(time.time() - started, 1)
        for scenario in SCENARIOS:
            started = time.time()
            try:
                findings[scenario.__name__] = await scenario(base, cluster)
            except Exception:
                findings["errors"][scenario.__name__] = traceback.format_exc()
            findings.setdefault("seconds", {})[scenario.__name__] = round(time.time() - started, 1)
            write_json(findings_path, findings)
    finally:
        cluster.stop()
        write_json(findings_path, findings)


if __name__ == "__main__":
    if sys.argv[1] == "engine-for-kill":
        asyncio.run(engine_for_kill(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])))
    else:
        asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
