"""Whole records or none: a full disk or a stranger's line never tears the
run dir's records, and a resume repairs what it finds with a notice."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from ar_tui.agents.scripted import ScriptStep
from ar_tui.core import events as ev
from ar_tui.core.records.ledger import DiskFull, EventLog, Ledger, LedgerRow, read_results
from tests.conftest import make_target
from tests.robust.helpers import FAST_CONFIG, assert_records_whole, engine_for, events_of, notices, rows, tmpfs

STEPS = [ScriptStep("LR 0.5 -> 0.4", "LR = 0.5", "LR = 0.4"), ScriptStep("LR 0.4 -> 0.35", "LR = 0.4", "LR = 0.35")]


def fill(disk: Path) -> Path:
    """Fill the disk to the last byte; returns the filler."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        chunk = 1 << 16
        while chunk:
            try:
                os.write(fd, b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                chunk //= 2
    finally:
        os.close(fd)
    return filler


def test_an_append_on_a_full_disk_writes_the_whole_line_or_nothing(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "1m") as disk:
        run = disk / "run"
        run.mkdir()
        log = EventLog(run)
        ledger = Ledger(run, "val_bpb")
        log.write(ev.Notice(level="info", message="before"))
        filler = fill(disk)
        size = (run / "events.jsonl").stat().st_size
        ledger_size = (run / "results.tsv").stat().st_size
        big = ev.Notice(level="info", message="x" * 20000)  # more than a page: a write the disk cuts short
        with pytest.raises(DiskFull):
            log.write(big)
        with pytest.raises(DiskFull):
            ledger.append(LedgerRow("abcdef0", 1.0, 1.0, "keep", "y" * 20000, exp=0))
        assert (run / "events.jsonl").stat().st_size == size
        assert (run / "results.tsv").stat().st_size == ledger_size
        # Room for part of the line: the disk takes some of it, and that part is cut back off.
        os.truncate(filler, filler.stat().st_size - 8192)
        with pytest.raises(DiskFull):
            log.write(big)
        assert (run / "events.jsonl").stat().st_size == size
        filler.unlink()
        log.write(big)  # the same write, once there is room
        log.close()
        assert [e.message for e in events_of(run)] == ["before", big.message]


async def test_a_garbage_line_and_a_torn_line_are_set_aside_and_the_night_resumes(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target", config=FAST_CONFIG)
    run_dir = tmp_path / "run"
    first = await engine_for(target, run_dir, STEPS[:1], max_experiments=1).run()
    assert not first.error
    with open(run_dir / "events.jsonl", "ab") as handle:
        handle.write(b"this is not an event\n[1, 2]\n")
        handle.write(b'{"kind":"notice","level":"info","mess')  # a write cut short
    with open(run_dir / "results.tsv", "ab") as handle:
        handle.write(b"abc1234\t1.0")  # a row cut short
    again = await engine_for(target, run_dir, STEPS, max_experiments=2).run()
    assert not again.error, again.reason
    assert [r.exp for r in rows(run_dir)] == [0, 1, 2]
    assert_records_whole(run_dir)
    said = notices(run_dir)
    assert any("events.jsonl: set aside 3 line(s)" in m for m in said), said
    assert any("results.tsv: set aside 1 line(s)" in m for m in said), said
    rejected = (run_dir / "events.jsonl.rejected").read_bytes()
    assert b"this is not an event" in rejected and b'"mess' in rejected
    assert b"abc1234" in (run_dir / "results.tsv.rejected").read_bytes()


def test_state_json_is_replaced_whole_on_a_full_disk(tmp_path: Path) -> None:
    from ar_tui.core.records.ledger import read_state, write_state

    with tmpfs(tmp_path / "disk", "1m") as disk:
        run = disk / "run"
        run.mkdir()
        write_state(run, {"n": 1})
        filler = fill(disk)
        with pytest.raises(DiskFull):
            write_state(run, {"n": 2, "pad": "z" * 50000})
        assert read_state(run) == {"n": 1}
        assert not (run / "state.json.tmp").exists()  # its space is given back
        filler.unlink()
        write_state(run, {"n": 3})
        assert read_state(run) == {"n": 3}


async def test_a_log_that_cannot_be_written_never_ends_the_run_or_the_engine(tmp_path: Path) -> None:
    import asyncio
    import sys

    from ar_tui.core.executors.base import RunSpec
    from ar_tui.core.executors.local import LocalExecutor

    with tmpfs(tmp_path / "disk", "1m") as disk:
        log_path = disk / "logs" / "1.log"
        log_path.parent.mkdir()
        log_path.write_bytes(b"")
        filler = fill(disk)
        command = f"{sys.executable} -c \"print('x' * 100000); print('val_bpb: 1.25')\""
        spec = RunSpec(command=command, cwd=tmp_path, env=dict(os.environ), log_path=log_path, timeout_s=30,
                       patterns={"metric": __import__("re").compile(r"val_bpb: (\S+)")})
        lines: list[str] = []
        result = await LocalExecutor().run(spec, lambda text, replace: lines.append(text), asyncio.Event())
        assert result.exit_code == 0 and result.matches["metric"] == "1.25"
        assert lines[-1] == "val_bpb: 1.25"
        filler.unlink()
