"""Which Python a target's commands run with.

Most projects bring their own environment: karpathy/autoresearch is set up
with `uv sync` and run with `uv run train.py`, so running its `train.py` with
ar-tui's interpreter fails on the first import ar-tui lacks. The word `python`
in a target's commands (`run`, `prepare`, `evaluate`) therefore means, in
this order:

1. `[target] python = "..."` in `autoresearch.toml`: a path (relative to the
   target) or a name looked up on PATH;
2. with a `uv.lock` in the target and `uv` on PATH: every command runs
   through `uv run`, in the project environment that `uv sync` made in the
   target (`<target>/.venv`);
3. with a `.venv/` in the target: its interpreter, as if activated;
4. otherwise ar-tui's own interpreter.

Experiments run in git worktrees of the target, and an environment is
untracked, so it is never in the worktree: the environment is always the one
in the target directory itself, named explicitly (`UV_PROJECT_ENVIRONMENT`
for uv, so that `uv run` in a worktree does not build a second one there).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ar_tui.core.config import ConfigError, TargetConfig

KIND_CONFIG = "config"  # [target] python
KIND_UV = "uv"  # uv.lock + uv on PATH
KIND_VENV = "venv"  # the target's .venv
KIND_OWN = "own"  # the interpreter running ar-tui

VENV_DIR = ".venv"
UV_LOCK = "uv.lock"
PROBE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class TargetPython:
    kind: str
    # The interpreter `python` means. With uv it is the project environment's,
    # which may not exist until `uv run` has synced it.
    executable: Path
    description: str  # one line for the startup output
    uv: Path | None = None  # commands run through `uv run` when set
    project_env: Path | None = None  # the target's .venv (uv's project environment, or the activated one)

    def command(self, command: str) -> str:
        """The shell command that runs `command` in this environment."""
        if self.uv is None:
            return command
        # Through a shell so that a command with pipes or `&&` runs whole in
        # the environment. --frozen: the lock is the user's and is never
        # rewritten by a run.
        return f"{shlex.quote(str(self.uv))} run --frozen --quiet -- sh -c {shlex.quote(command)}"

    def child_env(self, env: dict[str, str], shim_dir: Path) -> dict[str, str]:
        """`env` with PATH (and the virtual environment variables) set so
        that `python` is this interpreter. A configured interpreter whose own
        directory's `python` is another one (/usr/bin/python3.12 beside a
        /usr/bin/python that is 3.10) gets a small `python` launcher in
        `shim_dir`, first on PATH: the run's scratch dir (`RunScratch.bin`),
        which a confined run can read (the run dir it once lived in is
        hidden from it)."""
        env = dict(env)
        # `uv run` puts the project environment first on PATH itself; uv
        # must be found by the shell that runs the command.
        entries = [str(self.uv.parent)] if self.uv is not None else [str(self.executable.parent)]
        if self.kind == KIND_UV:
            env["UV_PROJECT_ENVIRONMENT"] = str(self.project_env)
        if self.kind == KIND_VENV:
            env["VIRTUAL_ENV"] = str(self.project_env)
        elif self.kind in (KIND_UV, KIND_CONFIG):
            # Another active environment would be misleading (and uv warns about it).
            env.pop("VIRTUAL_ENV", None)
        if self.kind == KIND_CONFIG and not _is_python_of(self.executable.parent, self.executable):
            entries.insert(0, str(_write_shim(shim_dir, self.executable)))
        env["PATH"] = os.pathsep.join(entries + ([env["PATH"]] if env.get("PATH") else []))
        return env


def resolve_python(config: TargetConfig) -> TargetPython:
    """The environment the target's commands run in. Raises ConfigError when
    `[target] python` names an interpreter that is not there."""
    root = Path(config.root)
    if config.python:
        executable = _configured(config)
        return TargetPython(KIND_CONFIG, executable, f"python: {executable} (from {config.source})")
    venv = root / VENV_DIR
    uv = _find_uv()
    if (root / UV_LOCK).is_file() and uv is not None:
        executable = _venv_python(venv)
        state = "" if executable.exists() else "; not synced yet, `uv sync` in the target makes it"
        return TargetPython(KIND_UV, executable, f"python: uv run ({venv}{state})", uv=uv, project_env=venv)
    if _venv_python(venv).exists():
        executable = _venv_python(venv)
        return TargetPython(KIND_VENV, executable, f"python: {executable} (the target's .venv)", project_env=venv)
    executable = Path(sys.executable)
    return TargetPython(KIND_OWN, executable, f"python: {executable} (ar-tui's own)")


def readable_paths(python: TargetPython) -> list[Path]:
    """Every directory the chosen interpreter reads to start and import its
    packages: its prefixes and base prefixes (a venv's interpreter lives in
    the base installation), its import path, the project environment, and
    uv's binary and cache for `uv run` (uv also writes to its cache, a lock
    and the wheels it links from). For a sandbox to allow; blocking (it asks
    the interpreter itself), so call it from a thread in async code."""
    found: list[Path] = []

    def add(path: str | Path | None) -> None:
        if not path:
            return
        real = Path(os.path.realpath(path))
        if real.exists() and real not in found:
            found.append(real)

    add(python.project_env)
    if python.executable.exists():
        add(python.executable.parent)
        add(Path(os.path.realpath(python.executable)).parent)
        for entry in _probe(python.executable):
            add(entry)
    if python.uv is not None:
        add(python.uv.parent)
        add(_uv_cache_dir(python.uv))
    # Nested paths add nothing once their parent is allowed.
    return [p for p in found if not any(p != q and p.is_relative_to(q) for q in found)]


def _configured(config: TargetConfig) -> Path:
    assert config.python
    named = Path(config.python).expanduser()
    if named.is_absolute() or len(named.parts) > 1:
        path = named if named.is_absolute() else Path(config.root) / named
    else:
        found = shutil.which(config.python)
        if found is None:
            raise ConfigError(f"{config.source}: target.python: {config.python!r} is not on PATH")
        path = Path(found)
    if not path.is_file() or not os.access(path, os.X_OK):
        raise ConfigError(f"{config.source}: target.python: {path} is not an executable file")
    # Absolute but not resolved: a venv's interpreter is a symlink whose own
    # location is what makes it that venv's.
    return Path(os.path.abspath(path))


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _find_uv() -> Path | None:
    # ar-tui's own bin dir is first on the child's PATH, so a uv installed
    # beside ar-tui counts as on PATH.
    search = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    found = shutil.which("uv", path=search)
    return Path(found) if found else None


def _is_python_of(directory: Path, executable: Path) -> bool:
    """Whether `python` in `directory` is `executable` (so the directory alone puts it on PATH)."""
    candidate = directory / "python"
    try:
        return candidate.exists() and os.path.samefile(candidate, executable)
    except OSError:
        return False


def _write_shim(directory: Path, executable: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    text = f"#!/bin/sh\nexec {shlex.quote(str(executable))} \"$@\"\n"
    for name in ("python", "python3"):
        shim = directory / name
        if not shim.exists() or shim.read_text() != text:
            shim.write_text(text)
            shim.chmod(0o755)
    return directory


def _probe(executable: Path) -> list[str]:
    code = ("import json, sys; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, "
            "sys.base_exec_prefix] + [p for p in sys.path if p]))")
    try:
        out = subprocess.run([str(executable), "-I", "-c", code], capture_output=True, text=True,
                             timeout=PROBE_TIMEOUT_S, check=True).stdout
        return [str(p) for p in json.loads(out.strip().splitlines()[-1])]
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return []


def _uv_cache_dir(uv: Path) -> str | None:
    if os.environ.get("UV_CACHE_DIR"):
        return os.environ["UV_CACHE_DIR"]
    try:
        out = subprocess.run([str(uv), "cache", "dir"], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                             check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None
