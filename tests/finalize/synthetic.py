"""A synthetic target whose truth is known, and a night on it.

Each constant is one change; the metric (val_bpb, lower is better) is
2.0 minus the gains of the changes present, plus seeded noise (sd 0.004, from
AR_SEED, so every run is its own draw and a rerun of a seed repeats it):
- GAIN_A and GAIN_B: real gains of 0.10 and 0.08 that add up;
- NO_EFFECT: nothing at all (the night keeps it only because a person forces it);
- SMALL_X and BIG_Y overlap: X alone gains 0.05, Y alone 0.12, both together
  0.12, so X is worth nothing once Y is in;
- WORSE: a loss of 0.05 per step;
- NEAR_P and NEAR_Q: gains of 0.004 each, inside the noise band alone.
The constants sit four lines apart, so each change's diff applies with any
other left out. A run takes a Python start-up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from ar_tui import run_options
from ar_tui.agents.scripted import ScriptedProposer, ScriptStep
from ar_tui.core import events as ev
from ar_tui.core.engine import Engine, EngineOptions
from tests.conftest import make_target

SD = 0.004
BASE = 2.0

SYNTHETIC = textwrap.dedent(
    """\
    import os, random, time
    time.sleep(float(os.environ.get("SYN_SLEEP", "0")))  # how long a run takes, for tests that need overlap
    GAIN_A = 0  # a real gain of 0.10
    #
    #
    #
    GAIN_B = 0  # a real gain of 0.08, additive with GAIN_A
    #
    #
    #
    NO_EFFECT = 0  # changes nothing
    #
    #
    #
    SMALL_X = 0  # a gain of 0.05 that BIG_Y supersedes
    #
    #
    #
    BIG_Y = 0  # a gain of 0.12 that includes SMALL_X's
    #
    #
    #
    WORSE = 0  # a loss of 0.05 per step
    #
    #
    #
    NEAR_P = 0  # a real gain of 0.004 (one sd): too small to be kept alone
    #
    #
    #
    NEAR_Q = 0  # a real gain of 0.004, additive with NEAR_P
    #
    #
    #
    salt = int(os.environ.get("SYN_SALT", "0"))  # another draw of the whole night's luck (the benchmark)
    noise = random.Random(int(os.environ.get("AR_SEED", "0")) + 1_000_003 * salt).gauss(0.0, SD)
    metric = BASE - 0.10 * GAIN_A - 0.08 * GAIN_B - max(0.05 * SMALL_X, 0.12 * BIG_Y) + 0.05 * WORSE - 0.004 * (NEAR_P + NEAR_Q) + noise
    print("---")
    print(f"val_bpb: {metric:.6f}")
    """
).replace("SD)", f"{SD})").replace("BASE -", f"{BASE} -")


def flip(name: str, value: str = "1", rationale: str = "") -> ScriptStep:
    comment = next(line.split("#", 1)[1] for line in SYNTHETIC.splitlines() if line.startswith(f"{name} = 0"))
    return ScriptStep(f"{name} 0 -> {value}", f"{name} = 0  #{comment}", f"{name} = {value}  #{comment}",
                      rationale=rationale or f"{name} should lower val_bpb")


# The night: every change on one lineage; NO_EFFECT kept by force; WORSE tried twice and rejected.
NIGHT = [flip("GAIN_A"), flip("SMALL_X"), flip("NO_EFFECT"), flip("GAIN_B"), flip("BIG_Y"), flip("WORSE"),
         flip("WORSE", "2")]
FORCED = "NO_EFFECT 0 -> 1"


def expected(**present: int) -> float:
    get = present.get
    return (BASE - 0.10 * get("GAIN_A", 0) - 0.08 * get("GAIN_B", 0)
            - max(0.05 * get("SMALL_X", 0), 0.12 * get("BIG_Y", 0)) + 0.05 * get("WORSE", 0))


async def night(tmp_path: Path, steps: list[ScriptStep] = NIGHT, devices: list[str] | None = None,
          baseline_runs: int = 4, forced: str = FORCED, confidence: float = 0.99, **options) -> tuple[Path, Path, Engine]:
    """Run a night on the synthetic target, in this process; (target, run dir, engine).
    At 99% confidence each change without effect has a 1% chance of a false
    "still matters" in the ablation (at 95%, two of them would give one in ten)."""
    target = make_target(tmp_path / "target", train=SYNTHETIC)
    run_dir = tmp_path / "run"
    devices = devices or ["cpu"]
    opts = dict(target_dir=target, tag="syn", run_dir=run_dir, attended=False, lookahead=0,
                baseline_runs=baseline_runs, max_experiments=len(steps), devices=devices, write_report=False,
                confidence=confidence)
    opts.update(options)
    engine = Engine(EngineOptions(**opts), ScriptedProposer(list(steps)))

    def force(event: ev.Event) -> None:
        if isinstance(event, ev.ExperimentStarted) and event.description == forced and event.attempt == 1:
            engine.force_keep(event.exp)

    engine.subscribe(force)
    # What `ar-tui run` stores before it starts, so finalize finds the night's options.
    run_options.save(run_dir, run_options.RunOptions(
        target=str(target), tag="syn", agent="scripted", devices=devices, lookahead=0,
        baseline_runs=baseline_runs, attended=False, extra={"sandbox": opts.get("sandbox", "auto"), "confidence": confidence}))
    await engine.run()
    return target, run_dir, engine


def finalize_command(run_dir: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "ar_tui.cli", "finalize", str(run_dir), *flags]


def finalize_env(**extra: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]), **extra)


def finalize(run_dir: Path, *flags: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(finalize_command(run_dir, *flags), capture_output=True, text=True, env=finalize_env(**env),
                          timeout=timeout)


def train_at(target: Path, rev: str, seed: int) -> float:
    """Train the synthetic target as committed at `rev`, with `seed`."""
    source = subprocess.run(["git", "show", f"{rev}:train.py"], cwd=target, capture_output=True, text=True,
                            check=True).stdout
    out = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, check=True,
                         env=dict(os.environ, AR_SEED=str(seed))).stdout
    return float(out.split("val_bpb:")[1])
