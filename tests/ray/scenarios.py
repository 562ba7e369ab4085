"""The Ray executor's scenarios, run inside a loopback-only network namespace
against one real two-node cluster; each writes what it saw to a JSON file
that the tests read (`python scenarios.py FINDINGS BASE`).

The training script tells the engine where it runs and then waits for a
"go" file that only an observer of the engine's live log lines creates: a
run whose lines did not stream back live would never finish. It runs
confined on its node (the engine's default `--sandbox auto`), so the target
declares the go dir readable (`[sandbox] read`), names its go file by a token
(a pid inside bubblewrap's pid namespace means nothing outside it), and
prints the run's marker, by which the scenarios find its processes on the node.
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
from ar_tui.core.records.ledger import read_results  # noqa: E402
from tests.conftest import make_target  # noqa: E402
from tests.ray.cluster import LocalCluster, write_json  # noqa: E402

TRAIN = textwrap.dedent(
    """\
    import os, subprocess, sys, time, uuid
    LR = 0.5
    GO = {go!r}
    TOKEN = uuid.uuid4().hex
    # A grandchild in the trial's process group (not holding its output open).
    helper = subprocess.Popen(["sleep", "600"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # One that left the group (when the scenario asks): only the run's marker finds it.
    escaped = (subprocess.Popen(["sleep", "600"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True).pid
               if os.path.exists(os.path.join(GO, "escape")) else 0)
    print(f"waiting pid={{os.getpid()}} token={{TOKEN}} helper={{helper.pid}} escaped={{escaped}} "
          f"cuda={{os.environ.get('CUDA_VISIBLE_DEVICES')}} node={{os.environ.get('AR_TUI_RAY_NODE_ROOT')}} "
          f"marker={{os.environ.get('AR_TUI_RUN')}}", flush=True)
    go = os.path.join(GO, f"go-{{TOKEN}}")
    deadline = time.time() + 120
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
# The go dir, readable by the confined training script.
SANDBOX_READ = '[sandbox]\nread = ["{go}"]\n'
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
            trial = {"exp": event.exp, "slot": event.slot, "pid": int(fields["pid"]), "token": fields["token"],
                     "helper": int(fields["helper"]), "escaped": int(fields["escaped"]), "cuda": fields["cuda"],
                     "node": node_name(fields["node"]), "marker": fields["marker"], "seen": time.time()}
            self.trials.append(trial)
            if self.act is not None and self.act(trial):
                return
            release(self.go_dir, trial)

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


def release(go_dir: Path, trial: dict) -> None:
    """Let a waiting training script go on."""
    (go_dir / f"go-{trial['token']}").touch()


def new_target(base: Path, name: str, evaluate: bool = False, config: str | None = None) -> Path:
    go = base / "go"
    go.mkdir(exist_ok=True)
    extra = ({"evaluate_tiny.py": EVALUATOR, "record_prepare.py": RECORD_PREPARE.format(path=str(go / "prepared"))}
             if evaluate else None)
    config = (config or (EVAL_CONFIG if evaluate else CONFIG)) + SANDBOX_READ.format(go=go)
    return make_target(base / "targets" / name, train=TRAIN.format(go=str(go)), config=config, extra=extra)


def engine_for(base: Path, name: str, watcher: Watcher, steps: int | list[ScriptStep], baseline_runs: int = 1,
               evaluate: bool = False, target: Path | None = None, services: list | None = None,
               **options) -> tuple[Engine, Path]:
    target = target or new_target(base, name, evaluate)
    run_dir = (base / "runs" / name).resolve()
    executor = RayExecutor(run_marker=str(run_dir))
    script = [ScriptStep(*s) for s in STEPS[:steps]] if isinstance(steps, int) else steps
    settings = dict(target_dir=target, tag=name, run_dir=run_dir, attended=False, lookahead=1,
                    baseline_runs=baseline_runs, max_experiments=len(script), devices=executor.devices(None))
    settings.update(options)
    engine = Engine(EngineOptions(**settings), ScriptedProposer(script), executor=executor, services=services or [])
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


def marked(marker: str) -> list[psutil.Process]:
    """The processes on this machine (any node) that carry a run's marker."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get("AR_TUI_RUN") == marker and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


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
        # Confined, the script and its helper have pids of their own namespace:
        # found on the node by the run's marker instead (the sandbox's own
        # process carries it too).
        # (polled: on a loaded machine /proc may lag the line that said so)
        deadline = time.time() + 10
        while True:
            commands = [" ".join(p.cmdline()) for p in marked(trial["marker"])]
            vetoed["alive_before"] = (any("train.py" in c for c in commands)
                                      and any(c == "sleep 600" for c in commands))
            if vetoed["alive_before"] or time.time() > deadline:
                break
            time.sleep(0.1)
        vetoed["pids"] = [p.pid for p in marked(trial["marker"])]
        watcher.engine.veto(1)
        return True

    watcher = Watcher(base / "go", act)
    engine, run_dir = engine_for(base, "veto", watcher, steps=1)
    stopped = await engine.run()
    still = wait_dead(vetoed["pids"], 30.0) if vetoed else []
    return {"stopped": stopped.reason, "error": stopped.error, "rows": rows(run_dir), "vetoed": vetoed,
            "alive_after": still}


async def resume_after_kill(base: Path, cluster: LocalCluster) -> dict:
    """An engine in its own process is killed -9 while exp 1 trains; a new
    engine resumes the run dir. Unconfined (`--sandbox off`): the sweep is
    what ends a process that left the trial's group there (confined by
    bubblewrap, none can: its pid namespace dies with the trial)."""
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
    engine, run_dir = engine_for(base, "resume", watcher, steps=1, target=target, sandbox="off")
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
    engine, _ = engine_for(base, "resume", watcher, steps=1, target=target, sandbox="off")
    await engine.run()


async def node_death(base: Path, cluster: LocalCluster) -> dict:
    """Experiments 1 and 2 train at once, one per node; the worker node dies
    under its experiment and is started again. The experiment's re-run waits
    (held) until the engine says that the cluster's capacity is back, so the
    run sees its slot leave the pool and return."""
    killed: dict = {}
    held: list[dict] = []
    restarted = threading.Thread(target=cluster.start_worker, args=(False,))
    back = threading.Event()

    def release_when_back(trial: dict) -> None:
        back.wait(150)
        release(base / "go", trial)

    def act(trial: dict) -> bool:
        if killed and trial["exp"] == killed["exp"] and not back.is_set():
            threading.Thread(target=release_when_back, args=(trial,), daemon=True).start()
            return True
        if killed or trial["exp"] < 1:
            return False
        if trial["node"] == "head":
            held.append(trial)  # until the other node has its experiment too
            return True
        killed.update(trial)
        killed["killed_at"] = cluster.kill_worker_node()
        for other in held:
            release(base / "go", other)
        restarted.start()
        return True

    watcher = Watcher(base / "go", act)
    # A re-run may wait for the restarted node: a hard timeout that allows it.
    target = new_target(base, "death", config="[target]\ntime_budget = 1\ntimeout = 150\n")
    engine, run_dir = engine_for(base, "death", watcher, steps=2, target=target)
    engine.subscribe(lambda e: back.set() if isinstance(e, ev.CapacityChanged) and e.available >= e.total else None)
    stopped = await engine.run()
    if restarted.ident is not None:
        restarted.join(120)
    reruns = [t for t in watcher.trials if killed and t["exp"] == killed["exp"] and t["seen"] > killed["killed_at"]]
    return {
        "killed": killed, "reruns": reruns, "stopped": stopped.reason, "error": stopped.error,
        "rows": rows(run_dir), "run_dir": str(run_dir),
        "outcomes": [[e.exp, e.outcome] for e in watcher.of(ev.ExperimentFinished)],
        "notices": [e.message for e in watcher.of(ev.Notice)],
        "capacity": [[e.available, e.total, e.unit] for e in watcher.of(ev.CapacityChanged)],
    }


async def sandbox_on_the_node(base: Path, cluster: LocalCluster, backend: str = "bubblewrap") -> dict:
    """The local sandbox tests' attacks (tests/core/sandbox_attacks.py), each
    a train.py run through the Ray executor, one slot so that they follow
    each other, under the engine's `backend` (which the node prefers); then,
    for bubblewrap, the same secret read with `--sandbox off`, which gets
    through (so what refused it was the node's sandbox)."""
    from ar_tui.core.control.server import control_service
    from ar_tui.core.sandbox.backends import Bubblewrap, LandlockBackend
    from tests.conftest import TINY_TRAIN
    from tests.core import sandbox_attacks as attacks

    home = attacks.make_home(cluster.home)  # the engine's user's home (the nodes share this machine)
    name = "hostile" if backend == "bubblewrap" else f"hostile-{backend}"
    run_dir = (base / "runs" / name).resolve()
    node_root = cluster.node_root("head")
    server, port, connections = await attacks.recording_server()
    steps = [attacks.keep_me(run_dir), attacks.read_files(run_dir / "results.tsv"), attacks.read_secret(home),
             attacks.write_outside(home / "pwned.txt"), attacks.write_outside(run_dir / "results.tsv"),
             attacks.write_outside(node_root / "planted.txt"), attacks.phone_home(port),
             attacks.LEAVE_FILES, attacks.FIND_LEFTOVERS]
    config = "[target]\ntime_budget = 1\ntimeout = 45\n"
    target = make_target(base / "targets" / name, train=TINY_TRAIN, config=config)
    watcher = Watcher(base / "go")
    pinned = {"bubblewrap": Bubblewrap, "landlock": LandlockBackend}[backend]()
    async with server:
        engine, _ = engine_for(base, name, watcher, steps, target=target, services=[control_service],
                               devices=["ray:gpu"], lookahead=0, sandbox="require", sandbox_backends=[pinned])
        stopped = await engine.run()
    found = {
        "stopped": stopped.reason, "error": stopped.error, "sandbox": engine.opened.confinement.sandbox.describe(),
        "rows": [[r.exp, r.status, r.metric, r.rule, r.forced] for r in read_results(run_dir / "results.tsv")[1]],
        "descriptions": [s.description for s in steps],
        "connections": [c.decode(errors="replace") for c in connections],
        "pwned_home": (home / "pwned.txt").exists(), "planted_node": (node_root / "planted.txt").exists(),
        "ledger_planted": attacks.PLANTED in (run_dir / "results.tsv").read_text(),
        "secret_in_logs": any(attacks.SECRET in p.read_text(errors="replace") for p in (run_dir / "logs").iterdir()),
        "ledger_in_logs": any("\tkeep\t" in p.read_text(errors="replace") for p in (run_dir / "logs").iterdir()),
        "leftovers_shared": [p for p in attacks.LEFTOVERS_SHARED if os.path.exists(p)],
        "notices": [e.message for e in watcher.of(ev.Notice)],
    }
    if backend != "bubblewrap":
        return found
    # Unconfined on the node, the same read gets the key into the log.
    off_dir = (base / "runs" / "hostile-off").resolve()
    off_target = make_target(base / "targets" / "hostile-off", train=TINY_TRAIN, config=config)
    engine, _ = engine_for(base, "hostile-off", Watcher(base / "go"), [attacks.read_secret(home)], target=off_target,
                           devices=["ray:gpu"], lookahead=0, sandbox="off")
    await engine.run()
    found["off_rows"] = [[r.exp, r.status] for r in read_results(off_dir / "results.tsv")[1]]
    found["off_secret_in_log"] = attacks.SECRET in (off_dir / "logs" / "1.log").read_text(errors="replace")
    return found


async def sandbox_on_the_node_landlock(base: Path, cluster: LocalCluster) -> dict:
    """The same attacks under the no-root fallback on the node."""
    return await sandbox_on_the_node(base, cluster, "landlock")


async def versions(base: Path, cluster: LocalCluster) -> dict:
    """What the real cluster reports of its Ray and Python, and the check's
    verdict on it and on the same report with one version changed."""
    from ar_tui.core.executors.ray import cluster_versions, engine_versions, version_mismatch

    reported = cluster_versions(cluster.address)
    where = cluster.address
    return {
        "reported": reported, "engine": list(engine_versions()),
        "same": version_mismatch(reported, where) if reported else "nothing reported",
        "other_ray": version_mismatch({**(reported or {}), "ray_version": "2.0.0"}, where),
        "other_python": version_mismatch({**(reported or {}), "python_version": "3.9.18"}, where),
    }


SCENARIOS = [versions, two_slots, veto, resume_after_kill, sandbox_on_the_node, sandbox_on_the_node_landlock,
             node_death]  # node_death last: it ends a node


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
