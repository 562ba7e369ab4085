"""Limits per run: a memory hog, a fork loop and a write flood each end as a
crash naming the limit; the engine lives and the night goes on."""

from __future__ import annotations

import textwrap
from pathlib import Path

import psutil

from ar_tui.agents.scripted import ScriptStep
from ar_tui.core.executors.limits import LimitError, RunLimits, parse_size
from ar_tui.core.executors.process import RUN_MARKER_ENV, run_marker
from tests.conftest import make_target
from tests.robust.helpers import FAST_CONFIG, engine_for, rows

TRAIN = textwrap.dedent(
    """\
    import os, time
    LR = 0.5
    MODE = "train"
    if MODE == "hog":
        hoard = []
        while True:
            hoard.append(bytearray(16 << 20))
            time.sleep(0.01)
    if MODE == "fork":
        for _ in range(300):  # a bounded fork loop: each child sleeps
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
        time.sleep(60)
    if MODE == "write":
        for i in range(200):
            with open(f"out_{i}.bin", "wb") as f:
                f.write(os.urandom(1 << 20))
            time.sleep(0.02)
    print(f"val_bpb: {(LR - 0.3) ** 2 + 1.0:.6f}")
    """
)
CONFIG = "[target]\ntime_budget = 1\ntimeout = 30\n"


def night(tmp_path: Path, mode: str, **limits):
    target = make_target(tmp_path / "target", train=TRAIN, config=CONFIG)
    steps = [ScriptStep(f"mode {mode}", 'MODE = "train"', f'MODE = "{mode}"'),
             ScriptStep("LR 0.5 -> 0.4", "LR = 0.5", "LR = 0.4")]
    return engine_for(target, tmp_path / "run", steps, **limits)


def left_behind(run_dir: Path) -> list[int]:
    marker = run_marker(run_dir)
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get(RUN_MARKER_ENV) == marker and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


async def test_a_memory_hog_under_a_small_cap_crashes_naming_the_limit(tmp_path: Path) -> None:
    engine = night(tmp_path, "hog", limit_memory="200MiB")
    stopped = await engine.run()
    assert not stopped.error, stopped.reason
    result = rows(tmp_path / "run")
    assert [(r.exp, r.status) for r in result] == [(0, "keep"), (1, "crash"), (2, "keep")]
    assert "memory limit of 200 MiB reached" in result[1].rule


async def test_a_fork_loop_under_a_small_cap_crashes_and_leaves_no_process(tmp_path: Path) -> None:
    engine = night(tmp_path, "fork", limit_processes="40", sandbox="off")
    stopped = await engine.run()
    assert not stopped.error, stopped.reason
    result = rows(tmp_path / "run")
    assert [(r.exp, r.status) for r in result] == [(0, "keep"), (1, "crash"), (2, "keep")]
    assert "process limit of 40 processes/threads reached" in result[1].rule
    assert left_behind(tmp_path / "run") == []


async def test_a_write_flood_under_a_small_cap_crashes_naming_the_limit(tmp_path: Path) -> None:
    engine = night(tmp_path, "write", limit_writes="20MiB")
    stopped = await engine.run()
    assert not stopped.error, stopped.reason
    result = rows(tmp_path / "run")
    assert [(r.exp, r.status) for r in result] == [(0, "keep"), (1, "crash"), (2, "keep")]
    assert "write limit of 20 MiB reached" in result[1].rule
    assert not list((tmp_path / "run" / "worktrees").rglob("out_*.bin"))  # its space given back


def test_limits_come_from_the_flags_then_the_config_then_the_defaults(tmp_path: Path) -> None:
    limits = RunLimits.resolve({"memory": "2GiB", "processes": 100}, None, "50", "none", 2, tmp_path)
    assert (limits.memory, limits.processes, limits.writes) == (2 << 30, 50, None)
    defaults = RunLimits.resolve({}, None, None, None, 2, tmp_path)
    assert defaults.memory is not None and defaults.memory < psutil.virtual_memory().total // 2
    assert defaults.processes == 4096 and defaults.writes
    assert "limits per run: memory 2 GiB, 50 processes/threads, writes unlimited (rlimits and a watchdog" \
        in limits.describe()
    assert parse_size("1.5g", "x") == 3 << 29
    for bad in ("lots", "-1G", True):
        try:
            parse_size(bad, "[limits] memory")
        except LimitError as exc:
            assert "[limits] memory" in str(exc)
        else:
            raise AssertionError(f"{bad!r} was accepted")
