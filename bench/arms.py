"""The part the search benchmarks share: run arms x seeds on a target and
read best-so-far curves, then summarise them.

An *arm* is one configuration under test (a strategy, an offline search):
a name for the tables and the `ar-tui run` flags that make it. Two ways to
get a curve:

- `headless_run`: a real `ar-tui run --headless --agent offline` on a fresh
  git copy of the target (the real runner, evaluator, seeds and noise rules),
  its curve read from the run's results.tsv. Every (arm, seed) gets its own
  copy, so no run sees another's branches and the user's checkout is never
  an experiment repository.
- `greedy_loop`: the engine's greedy decisions reduced to propose, run
  train.py as a child, keep if better, else restore the file; for the
  synthetic targets that train in milliseconds.

`run_arms` orders the runs seed by seed, every arm inside a seed, so that a
machine whose load drifts over hours drifts over all arms alike; with
`parallel` the arms of one seed run at the same time, which shares the load
exactly (and, on a time-boxed target, the training steps it costs).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable, Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ar_tui.core.direction import Direction  # noqa: E402
from ar_tui.core.proposer import ProposalContext, ProposalFailed, ResultRow  # noqa: E402
from ar_tui.core.records.ledger import read_results  # noqa: E402

Curve = list[float]
# Under these names the bundled targets resolve to their source folders.
BUNDLED = {"nanochat": REPO / "nanochat"}
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
                "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}


@dataclass(frozen=True)
class Arm:
    name: str
    flags: tuple[str, ...]  # `ar-tui run` flags that make this arm, e.g. ("--strategy", "tree")


def target_source(name: str | Path) -> Path:
    """A target folder from the command line: a path, or a bundled name."""
    path = Path(name)
    if not path.exists() and str(name) in BUNDLED:
        path = BUNDLED[str(name)]
    if not (path / "train.py").is_file() and not (path / "autoresearch.toml").is_file():
        raise SystemExit(f"{name}: not a target (no train.py or autoresearch.toml there)")
    return path.resolve()


def target_direction(target: Path) -> Direction:
    from ar_tui.core.config import load_target

    return Direction(load_target(target).direction)


def fresh_copy(source: Path, into: Path) -> Path:
    """`source` copied into a new git repository at `into`, committed on main."""
    shutil.copytree(source, into, ignore=shutil.ignore_patterns("__pycache__", ".git", "*.pt", "*.pyc"))
    (into / ".gitignore").write_text("__pycache__/\n*.pt\n")
    env = dict(os.environ, **GIT_IDENTITY)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "target"]):
        done = _git(into, args, env)
        if done.returncode != 0:
            raise SystemExit(f"git {' '.join(args)} in {into} failed: {done.stderr.strip()}")
    return into


def _git(cwd: Path, args: list[str], env: dict[str, str]):
    import subprocess

    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)


def best_so_far(results_tsv: Path, direction: Direction, experiments: int) -> Curve:
    """The best metric after each experiment (index 0: the baseline), read
    from a results.tsv by experiment number. `keep` means "became the new
    best" under every strategy, so the kept metrics are the curve."""
    _, rows, _ = read_results(results_tsv)
    kept: dict[int, float] = {}
    for row in rows:
        if row.exp is not None and row.status == "keep" and row.metric is not None:
            kept[row.exp] = row.metric
    curve: Curve = []
    best: float | None = None
    for exp in range(experiments + 1):
        value = kept.get(exp)
        if value is not None and (best is None or direction.better(value, best)):
            best = value
        curve.append(best if best is not None else float("nan"))
    return curve


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}  # the offline proposer, never Claude
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


async def headless_run(target: Path, arm: Arm, seed: int, experiments: int, work: Path, *,
                       time_budget: float | None = None, baseline_runs: int = 1,
                       direction: Direction | None = None, log: Callable[[str], None] | None = None,
                       env: dict[str, str] | None = None) -> Curve:
    """One `ar-tui run --headless --agent offline --seed SEED` with the arm's
    flags (an `--agent` among them wins), on a fresh copy of `target` under
    `work`, with `env` added to the child's environment; its best-so-far curve."""
    slug = f"{arm.name.replace(':', '-').replace(' ', '-')}-{seed}"
    # A finished run kept from an earlier invocation (`--keep DIR`) is read,
    # not rerun, so an interrupted benchmark costs only its unfinished runs.
    done = work / slug / "curve.json"
    if done.is_file():
        kept = json.loads(done.read_text())
        if kept["flags"] == list(arm.flags) and kept["experiments"] == experiments \
                and kept["time_budget"] == time_budget and kept["baseline_runs"] == baseline_runs:
            if log is not None:
                ran = f", which ran {kept['seconds']:.0f} s" if "seconds" in kept else ""
                ran += f", {kept['load']}" if "load" in kept else ""
                log(f"{arm.name:>12} seed {seed}: baseline {kept['curve'][0]:.6f} -> best {kept['curve'][-1]:.6f} "
                    f"(read from {done}{ran})")
            return [float(v) for v in kept["curve"]]
    shutil.rmtree(work / slug, ignore_errors=True)
    copy = fresh_copy(target, work / slug / "target")
    run_dir = work / slug / "run"
    cmd = [sys.executable, "-m", "ar_tui.cli", "run", "--headless", "--target", str(copy), "--tag", f"bench-{slug}",
           "--run-dir", str(run_dir), "--agent", "offline", "--seed", str(seed), "--unattended",
           "--lookahead", "0", "--baseline-runs", str(baseline_runs), "--max-experiments", str(experiments),
           *arm.flags]
    if "--strategy" not in arm.flags:
        # The published search comparisons ran one greedy lineage, the
        # command line's default then; a rerun must compare the same thing.
        cmd += ["--strategy", "greedy"]
    if time_budget is not None:
        cmd += ["--time-budget", str(time_budget)]
    output = work / slug / "headless.log"
    began = time.monotonic()
    with output.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(*cmd, cwd=REPO, env={**child_env(), **(env or {})}, stdout=sink,
                                                       stderr=asyncio.subprocess.STDOUT)
        code = await process.wait()
    if code != 0:
        tail = output.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{arm.name} seed {seed}: `{' '.join(cmd)}` exited {code}:\n{tail}")
    curve = best_so_far(run_dir / "results.tsv", direction or target_direction(copy), experiments)
    done.write_text(json.dumps({"flags": list(arm.flags), "experiments": experiments, "time_budget": time_budget,
                                "baseline_runs": baseline_runs, "seconds": time.monotonic() - began,
                                "load": f"{load_line()} at its end", "curve": curve}))
    if log is not None:
        log(f"{arm.name:>12} seed {seed}: baseline {curve[0]:.6f} -> best {curve[-1]:.6f} "
            f"({time.monotonic() - began:.0f} s, {load_line()} at its end)")
    return curve


async def run_arms(arms: Sequence[str], seeds: int, one: Callable[[str, int], Awaitable[Curve]],
                   parallel: bool = False) -> dict[str, list[Curve]]:
    """`one(arm, seed)` for every arm and seed: seed by seed, the arms of a
    seed one after another (or at once with `parallel`)."""
    curves: dict[str, list[Curve]] = {arm: [] for arm in arms}
    for seed in range(seeds):
        if parallel:
            results = await asyncio.gather(*(one(arm, seed) for arm in arms))
        else:
            results = [await one(arm, seed) for arm in arms]
        for arm, curve in zip(arms, results):
            curves[arm].append(curve)
    return curves


async def greedy_loop(proposer, root: Path, config, run_dir: Path, experiments: int,
                      run_target: Callable[[Path, object, int], Awaitable[tuple[float | None, str]]], *,
                      stop_when_exhausted: bool = True, label: str = "") -> list[ResultRow]:
    """Propose, run, keep if better (lower), else restore train.py; the
    history, baseline first. A proposal that fails ends the run when
    `stop_when_exhausted` (the offline search saying it has nothing left),
    and is skipped otherwise."""
    from ar_tui.core.workspace import Workspace

    workspace = Workspace(root, ["train.py"], [])
    train = root / "train.py"
    baseline, _ = await run_target(root, config, 0)
    if baseline is None:
        raise SystemExit(f"{root}: the target's baseline failed")
    history = [ResultRow(0, "0" * 7, baseline, "keep", "baseline")]
    best, tail = baseline, ""
    for exp in range(1, experiments + 1):
        before = train.read_text()
        ctx = ProposalContext(exp=exp, target=config, best_metric=best, baseline_metric=baseline,
                              history=list(history), last_failure_tail=tail, run_dir=run_dir)
        try:
            proposal = await proposer.propose(ctx, workspace, lambda event: None)
        except ProposalFailed as exc:
            print(f"  {label}: {'stopped' if stop_when_exhausted else 'proposal failed'} at {exp}: {exc.reason}",
                  file=sys.stderr)
            if stop_when_exhausted:
                break
            continue
        began = time.monotonic()
        metric, output = await run_target(root, config, exp)
        seconds = time.monotonic() - began
        if metric is None:
            status, tail = "crash", output
        elif metric < best:
            status, best = "keep", metric
        else:
            status = "discard"
        if status != "keep":
            train.write_text(before)
        history.append(ResultRow(exp, f"{exp:07x}", metric, status, proposal.description,
                                 cost_usd=proposal.cost_usd, proposer=proposal.proposer, seconds=seconds))
    return history


def curve_of(history: list[ResultRow], experiments: int) -> Curve:
    """Best-so-far (lower is better) after each experiment of a greedy_loop
    history; an early stop holds the last best to the end."""
    curve: Curve = []
    for row in history:
        best = curve[-1] if curve else row.metric
        if row.status == "keep" and row.metric is not None and row.metric < best:
            best = row.metric
        curve.append(best)
    return curve + [curve[-1]] * (experiments + 1 - len(curve))


def reach(curve: Curve, goal: float, direction: Direction = Direction.MIN) -> int | None:
    """The first experiment whose best-so-far is at least as good as `goal`."""
    for exp, value in enumerate(curve):
        if value == value and not direction.better(goal, value):  # NaN (no value yet) never reaches
            return exp
    return None


def spread(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def mark_points(experiments: int) -> list[int]:
    """The experiments a curve table shows."""
    return sorted({0, 1, 2, 5, 10, 15, 20, 30, 40, 50, 60, experiments} & set(range(experiments + 1)))


def plot_curves(curves: dict[str, list[Curve]], path: Path, title: str, ylabel: str = "best so far") -> None:
    """Mean best-so-far per arm, with the range over seeds shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    for arm, runs in curves.items():
        xs = list(range(len(runs[0])))
        means = [statistics.mean(c[i] for c in runs) for i in xs]
        ax.plot(xs, means, label=f"{arm} (mean of {len(runs)})")
        if len(runs) > 1:
            ax.fill_between(xs, [min(c[i] for c in runs) for i in xs], [max(c[i] for c in runs) for i in xs],
                            alpha=0.2)
    ax.set_xlabel("experiment")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def load_line() -> str:
    """The machine's load while a benchmark ran, for its table's caption."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} on {os.cpu_count()} cores"
