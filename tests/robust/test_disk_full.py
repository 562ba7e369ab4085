"""A full disk under the run dir: the crashed run gives its space back, the
engine waits for space instead of stopping, and goes on by itself."""

from __future__ import annotations

import asyncio
import os
import shutil
import textwrap
from pathlib import Path

from ar_tui.agents.scripted import ScriptStep
from ar_tui.core import events as ev
from tests.conftest import make_target
from tests.robust.helpers import FAST_CONFIG, assert_records_whole, engine_for, events_of, notices, rows, tmpfs

# FILL = True: the script writes 1 MiB checkpoints into its worktree until the disk is full.
FILLING_TRAIN = textwrap.dedent(
    """\
    import os
    LR = 0.5
    FILL = False
    if FILL:
        for i in range(10_000):
            with open(f"ckpt_{i}.bin", "wb") as f:
                f.write(os.urandom(1 << 20))
    print(f"val_bpb: {(LR - 0.3) ** 2 + 1.0:.6f}")
    """
)


async def test_a_script_that_fills_the_run_dirs_disk_crashes_alone_and_gives_the_space_back(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "48m") as disk:
        target = make_target(tmp_path / "target", train=FILLING_TRAIN, config=FAST_CONFIG)
        run_dir = disk / "run"
        steps = [ScriptStep("write checkpoints", "FILL = False", "FILL = True"),
                 ScriptStep("LR 0.5 -> 0.4", "LR = 0.5", "LR = 0.4")]
        stopped = await engine_for(target, run_dir, steps).run()
        assert not stopped.error, stopped.reason
        assert [(r.exp, r.status) for r in rows(run_dir)] == [(0, "keep"), (1, "crash"), (2, "keep")]
        assert "No space left on device" in rows(run_dir)[1].rule
        assert_records_whole(run_dir)
        # The crashed run's checkpoints are gone: the disk is nearly empty again.
        assert shutil.disk_usage(disk).free > 40 << 20
        assert not list((run_dir / "worktrees").rglob("ckpt_*.bin"))


# The script of experiment 1 fills the run dir's disk from outside its
# worktree (unconfined), as another program on the machine would.
OUTSIDE_FILL_TRAIN = textwrap.dedent(
    """\
    import os
    LR = 0.5
    FILL = False
    if FILL:
        with open(os.environ["FILLER"], "wb") as f:
            try:
                while True:
                    f.write(b"\\0" * (1 << 20))
                    f.flush()
            except OSError:
                pass
    print(f"val_bpb: {(LR - 0.3) ** 2 + 1.0:.6f}")
    """
)


def outside_fill_night(tmp_path: Path, disk: Path, **kw):
    target = make_target(tmp_path / "target", train=OUTSIDE_FILL_TRAIN,
                         config=FAST_CONFIG + f'env = {{ FILLER = "{disk / "filler"}" }}\n')
    steps = [ScriptStep("fill the disk", "FILL = False", "FILL = True"),
             ScriptStep("LR 0.5 -> 0.4", "LR = 0.5", "LR = 0.4")]
    return engine_for(target, disk / "run", steps, sandbox="off", **kw)


async def test_a_full_run_dir_pauses_the_engine_until_space_comes_back(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "48m") as disk:
        engine = outside_fill_night(tmp_path, disk)
        seen: list[str] = []
        freed = asyncio.Event()

        def watch(event: ev.Event) -> None:
            if isinstance(event, ev.Notice):
                seen.append(event.message)
                if event.message.startswith("disk full: ") and not freed.is_set():
                    # The user frees space a moment later.
                    asyncio.get_running_loop().call_later(1.0, lambda: ((disk / "filler").unlink(), freed.set()))

        engine.subscribe(watch)
        stopped = await asyncio.wait_for(engine.run(), 120)
        assert freed.is_set()
        assert not stopped.error, stopped.reason
        waiting = [m for m in seen if m.startswith("disk full: ")]
        assert waiting == [f"disk full: 0 MiB free on {disk}; waiting"]
        assert any(m.startswith("disk space is back: ") for m in seen)
        assert [(r.exp, r.status) for r in rows(disk / "run")] == [(0, "keep"), (1, "discard"), (2, "keep")]
        assert_records_whole(disk / "run")
        # What was said while the disk was full reached events.jsonl afterwards, in order.
        written = notices(disk / "run")
        assert written.index(waiting[0]) < next(i for i, m in enumerate(written) if m.startswith("disk space is back"))


async def test_an_unattended_night_waiting_for_space_stops_cleanly_at_its_deadline(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "48m") as disk:
        engine = outside_fill_night(tmp_path, disk, hours=8 / 3600)
        seen: list[str] = []
        engine.subscribe(lambda event: seen.append(event.message) if isinstance(event, ev.Notice) else None)
        stopped = await asyncio.wait_for(engine.run(), 120)
        assert stopped.reason == "time limit of 0.00222222 h reached" and not stopped.error
        assert any(m.startswith("disk full: 0 MiB free on ") for m in seen)
        os.unlink(disk / "filler")
        # Nothing ran after the disk filled; what was written is whole.
        assert [r.exp for r in rows(disk / "run")] in ([0], [0, 1])
        assert_records_whole(disk / "run")
        assert not [e for e in events_of(disk / "run") if isinstance(e, ev.ExperimentStarted) and e.exp == 2]
