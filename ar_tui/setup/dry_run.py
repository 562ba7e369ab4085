"""One run of the repository's command, confined as every experiment is, in
a worktree of its last commit: `ar-tui init` reads the lines it prints and
times it. A run that dies on data the checkout holds and git does not track
runs again with that data shared, as `[target] data` would share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ar_tui.core.executors.base import RunSpec
from ar_tui.core.executors.local import LocalExecutor
from ar_tui.core.interpreter import TargetPython
from ar_tui.core.records.git import GitRepo
from ar_tui.core.records.target_data import data_sources, missing_data
from ar_tui.core.sandbox.backends import Backend, resolve_sandbox
from ar_tui.core.sandbox.policy import Confinement, RunScratch, SandboxSettings, target_python_paths
from ar_tui.core.targets import data_home

MAX_KEPT_LINES = 20000
MAX_DATA_ROUNDS = 4
# Inherited variables never passed to the dry run (the engine drops them too).
_SECRET_PREFIXES = ("ANTHROPIC_",)


@dataclass
class DryRun:
    output: str
    seconds: float
    exit_code: int | None
    timed_out: bool
    sandbox: str  # Sandbox.describe()
    data_found: list[str] = field(default_factory=list)  # shared after the run died without them
    tail: str = ""
    cwd: Path = Path(".")  # the run's target dir (gone now): absolute paths in the output start with it

    @property
    def finished(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


async def dry_run(root: Path, command: str, python: TargetPython, data: list[str], seconds: float,
                  on_line: Callable[[str], None] | None = None, sandbox_mode: str = "auto",
                  backends: list[Backend] | None = None) -> DryRun:
    """Run `command` once in a fresh worktree of `root`'s HEAD, confined,
    for at most `seconds`."""
    data = list(data)
    found: list[str] = []
    for _ in range(MAX_DATA_ROUNDS):
        result = await _run_once(root, command, python, data, seconds, on_line, sandbox_mode, backends)
        if result.exit_code == 0 or result.timed_out:
            break
        missing = await asyncio.to_thread(missing_data, result.output, root, result.cwd, data)
        if missing is None:
            break
        data.append(missing[1])
        found.append(missing[1])
        if on_line is not None:
            on_line(f"(the run needs {missing[0]}, which git does not track: running again with {missing[1]} shared)")
    result.data_found = found
    return result


async def _run_once(root: Path, command: str, python: TargetPython, data: list[str], seconds: float,
                    on_line: Callable[[str], None] | None, sandbox_mode: str,
                    backends: list[Backend] | None) -> DryRun:
    git = GitRepo(root, "ar-tui-init")
    git.data, git.data_root = list(data), Path(root)
    head = git.head_commit()
    scratch = RunScratch.create("init")
    worktree = Path(tempfile.mkdtemp(prefix="ar-tui-init-wt-")) / "repo"
    try:
        target_dir = await asyncio.to_thread(git.ensure_worktree, worktree, head)
        sandbox = resolve_sandbox(sandbox_mode, False, backends)
        confinement = Confinement(sandbox, scratch.root / "no-run-dir", SandboxSettings(), data_home(),
                                  extra_read=target_python_paths(python), data=data_sources(root, data))
        env = {k: v for k, v in os.environ.items() if not k.startswith(_SECRET_PREFIXES)}
        env = python.child_env(env, scratch.bin)
        env["PYTHONUNBUFFERED"] = "1"
        env["AR_TIME_BUDGET"] = f"{seconds:g}"
        env, policy = confinement.training(env, worktree, scratch)
        lines: list[str] = []

        def collect(text: str, replace: bool) -> None:
            if replace and lines:
                lines[-1] = text
            elif len(lines) < MAX_KEPT_LINES:
                lines.append(text)
            if on_line is not None:
                on_line(text)

        spec = RunSpec(command=python.command(command), cwd=target_dir, env=env, log_path=scratch.root / "dry-run.log",
                       timeout_s=seconds, sandbox=sandbox, policy=policy)
        result = await LocalExecutor().run(spec, collect, asyncio.Event())
        return DryRun("\n".join(lines), result.seconds, result.exit_code, result.timed_out, sandbox.describe(),
                      tail=result.tail, cwd=target_dir)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(git.remove_worktree, worktree)
        shutil.rmtree(worktree.parent, ignore_errors=True)
        scratch.remove()
