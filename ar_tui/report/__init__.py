"""The morning report: figures (build), report.md (markdown) and progress.png
(chart), written into the run dir by `ar-tui report` and, at the end of every
run, by `report_service`.

Presentation, so it lives outside `ar_tui.core`: the engine knows nothing of
it; whoever runs an engine passes `report_service` among its services.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, AsyncIterator

from ar_tui.core.errors import RunError
from ar_tui.core.records.ledger import read_results
from ar_tui.core.records.rundir import RunDir
from ar_tui.report.ablation import ablation_section
from ar_tui.report.build import Report, ReportError, build_report, report_as_dict
from ar_tui.report.chart import render_chart
from ar_tui.report.markdown import render_markdown

__all__ = ["Report", "ReportError", "build_report", "report_as_dict", "render_chart", "render_markdown",
           "write_report", "report_service"]


def _write_atomically(path: Path, data: bytes) -> None:
    # A reader (or a crash mid-write) never sees half a report, and the engine
    # writing at the end of a run and a user's `ar-tui report` cannot mix files.
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide the report from a colleague
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise ReportError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise


def write_report(run_dir: Path, narrative: str | None = None) -> list[Path]:
    """Write progress.png and report.md into the run dir; returns their paths."""
    paths = RunDir(run_dir)
    report = build_report(paths.path)
    _write_atomically(paths.chart, render_chart(report))
    text = render_markdown(report, narrative)
    # finalize --ablate's verdicts, kept across a rewrite of the report.
    section = ablation_section(paths.ablation_table)
    if section:
        text = text.rstrip("\n") + "\n\n" + section
    _write_atomically(paths.report, text.encode("utf-8"))
    return [paths.chart, paths.report]


def _has_rows(run_dir: Path) -> bool:
    try:
        return bool(read_results(RunDir(run_dir).ledger)[1])
    except Exception:  # no ledger, or not one we can read: nothing to report on
        return False


@contextlib.asynccontextmanager
async def report_service(engine: Any) -> AsyncIterator[None]:
    """A service that writes the report once the run has stopped, when it has
    decided anything (and the engine's options did not turn reports off)."""
    yield
    run_dir = engine.run_dir.path
    if not engine.options.write_report or not _has_rows(run_dir):
        return
    try:
        await asyncio.to_thread(write_report, run_dir)
    except Exception as exc:  # the run is over; the service stack reports this as a warning
        raise RunError(f"could not write the report: {exc}") from exc
