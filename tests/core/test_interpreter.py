"""A target's commands run with the target's own environment: [target]
python, a uv project, a .venv, or else ar-tui's own interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from ar_tui.agents.offline import OfflineProposer
from ar_tui.core import events as ev
from ar_tui.core.config import ConfigError, load_target
from ar_tui.core.engine import Engine, EngineOptions, UserError
from ar_tui.core.interpreter import KIND_CONFIG, KIND_OWN, KIND_UV, KIND_VENV, readable_paths, resolve_python
from ar_tui.core.records.ledger import read_events, read_results
from tests.conftest import make_target

FAST = "[target]\ntime_budget = 5\ntimeout = 60\n"
# Prints which interpreter ran it, then a metric from a module that only the
# target's environment has.
TRAIN_NEEDING_MODULE = textwrap.dedent(
    """\
    import sys
    import only_in_the_target_env
    LR = 0.5  # the knob
    print("prefix:", sys.prefix)
    print("---")
    print(f"val_bpb: {only_in_the_target_env.BASE + (LR - 0.3) ** 2:.6f}")
    """
)
UV_PROJECT = textwrap.dedent(
    """\
    [project]
    name = "tiny-target"
    version = "0"
    requires-python = ">=3.11"
    dependencies = []

    [tool.uv]
    package = false
    """
)


def make_venv(where: Path, module: str | None = None) -> Path:
    """A real venv (no pip: instant) holding `only_in_the_target_env.py`."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    site = Path(subprocess.run([str(where / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    if module is not None:
        (site / "only_in_the_target_env.py").write_text(module)
    return where / "bin" / "python"


async def run_engine(target: Path, run_dir: Path, experiments: int = 1) -> ev.RunStopped:
    options = EngineOptions(target_dir=target, tag="env", run_dir=run_dir, attended=False, lookahead=0,
                            baseline_runs=1, max_experiments=experiments, write_report=False)
    return await Engine(options, OfflineProposer(seed=0)).run()


def started(run_dir: Path) -> ev.RunStarted:
    return next(e for e in read_events(run_dir / "events.jsonl") if isinstance(e, ev.RunStarted))


def test_without_an_environment_of_its_own_a_target_runs_with_ar_tuis_interpreter(tiny_target: Path) -> None:
    python = resolve_python(load_target(tiny_target))
    assert python.kind == KIND_OWN and python.executable == Path(sys.executable)
    assert python.command("python train.py") == "python train.py"
    env = python.child_env({"PATH": "/usr/bin"}, tiny_target)
    assert env["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)
    assert "ar-tui's own" in python.description


def test_configured_python_is_found_relative_to_the_target_and_checked(tmp_path: Path) -> None:
    target = make_target(tmp_path / "t", config='[target]\npython = "env/bin/python"\n', extra={".gitignore": "env/\n"})
    with pytest.raises(ConfigError, match=r"autoresearch.toml: target.python: .*env/bin/python is not an executable"):
        resolve_python(load_target(target))
    interpreter = make_venv(target / "env")
    python = resolve_python(load_target(target))
    assert python.kind == KIND_CONFIG and python.executable == target / "env" / "bin" / "python"
    assert str(interpreter) in python.description and "autoresearch.toml" in python.description

    named = make_target(tmp_path / "n", config='[target]\npython = "no-such-python-3.99"\n')
    with pytest.raises(ConfigError, match="'no-such-python-3.99' is not on PATH"):
        resolve_python(load_target(named))


def test_configured_python_is_what_python_means_even_where_its_directorys_python_is_another(tmp_path: Path) -> None:
    # Like /usr/bin/python3.12 beside a /usr/bin/python that is 3.10.
    other = tmp_path / "bin"
    other.mkdir()
    chosen = other / "python3.99"
    chosen.symlink_to(os.path.realpath(sys.executable))
    (other / "python").write_text("#!/bin/sh\necho the wrong python; exit 3\n")
    (other / "python").chmod(0o755)
    target = make_target(tmp_path / "t", config=f'[target]\npython = "{chosen}"\n')
    python = resolve_python(load_target(target))
    env = python.child_env({"PATH": os.environ["PATH"]}, tmp_path / "run")
    out = subprocess.run(["sh", "-c", "python -c 'import sys; print(sys.executable)'"], env=env, check=True,
                         capture_output=True, text=True).stdout.strip()
    assert out == str(chosen)


async def test_a_target_with_its_own_venv_runs_with_it(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target", train=TRAIN_NEEDING_MODULE, config=FAST,
                         extra={".gitignore": ".venv/\n"})
    make_venv(target / ".venv", module="BASE = 1.0\n")
    with pytest.raises(ImportError):
        import only_in_the_target_env  # noqa: F401  (ar-tui's environment really lacks it)
    run_dir = tmp_path / "run"
    stopped = await run_engine(target, run_dir)
    assert not stopped.error, stopped.reason
    _, rows, _ = read_results(run_dir / "results.tsv")
    assert rows[0].status == "keep" and rows[0].metric == pytest.approx(1.04)
    assert len(rows) == 2 and rows[1].metric is not None
    assert f"prefix: {target / '.venv'}" in (run_dir / "logs" / "0.log").read_text()
    assert started(run_dir).python == f"python: {target / '.venv' / 'bin' / 'python'} (the target's .venv)"
    assert resolve_python(load_target(target)).kind == KIND_VENV


async def test_a_target_without_its_environment_crashes_with_the_missing_module_named(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target", train=TRAIN_NEEDING_MODULE, config=FAST)
    run_dir = tmp_path / "run"
    stopped = await run_engine(target, run_dir)
    assert stopped.error
    assert "crash: ModuleNotFoundError: No module named 'only_in_the_target_env'" in stopped.reason
    assert "hint: the target's environment lacks 'only_in_the_target_env'" in stopped.reason
    _, rows, _ = read_results(run_dir / "results.tsv")
    assert "ModuleNotFoundError: No module named 'only_in_the_target_env'" in rows[0].rule


@pytest.fixture
def offline_uv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """uv without a network: its cache in tmp_path, the interpreter it builds
    environments from given, nothing downloaded."""
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    monkeypatch.setenv("UV_OFFLINE", "1")
    monkeypatch.setenv("UV_PYTHON_DOWNLOADS", "never")
    monkeypatch.setenv("UV_PYTHON", sys.executable)
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)


def uv() -> str:
    return str(Path(sys.executable).parent / "uv")


async def test_a_uv_project_runs_through_uv_run_in_the_targets_environment(tmp_path: Path, offline_uv) -> None:
    target = make_target(tmp_path / "target", train=TRAIN_NEEDING_MODULE, config=FAST,
                         extra={".gitignore": ".venv/\n", "pyproject.toml": UV_PROJECT})
    subprocess.run([uv(), "lock", "--quiet"], cwd=target, check=True)
    subprocess.run(["git", "add", "uv.lock"], cwd=target, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "lock"], cwd=target, check=True)
    # What the user does once, as the project's README says: `uv sync`.
    subprocess.run([uv(), "sync", "--quiet"], cwd=target, check=True)
    site = Path(subprocess.run([str(target / ".venv/bin/python"), "-c",
                                "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "only_in_the_target_env.py").write_text("BASE = 2.0\n")

    python = resolve_python(load_target(target))
    assert python.kind == KIND_UV and python.command("python train.py").split()[1:3] == ["run", "--frozen"]
    run_dir = tmp_path / "run"
    stopped = await run_engine(target, run_dir)
    assert not stopped.error, stopped.reason
    _, rows, _ = read_results(run_dir / "results.tsv")
    assert rows[0].metric == pytest.approx(2.04) and len(rows) == 2
    assert f"prefix: {target / '.venv'}" in (run_dir / "logs" / "0.log").read_text()
    # The worktree the experiments ran in got no environment of its own.
    assert not (run_dir / "worktrees" / "slot-0" / ".venv").exists()
    assert started(run_dir).python.startswith("python: uv run")


def test_the_sandbox_can_read_what_the_interpreter_needs(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target", extra={".gitignore": ".venv/\n"})
    make_venv(target / ".venv")
    paths = readable_paths(resolve_python(load_target(target)))
    assert Path(os.path.realpath(target / ".venv")) in paths
    # The base installation a venv's interpreter starts from (its stdlib).
    stdlib = Path(os.path.realpath(sysconfig.get_paths()["stdlib"]))
    assert any(stdlib.is_relative_to(p) for p in paths)


async def test_a_configured_python_that_is_missing_is_a_clear_error_before_anything_runs(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target", config='[target]\npython = "missing/bin/python"\n')
    with pytest.raises(UserError, match="target.python: .*missing/bin/python is not an executable file"):
        await run_engine(target, tmp_path / "run")
    assert not (tmp_path / "run" / "results.tsv").exists()
