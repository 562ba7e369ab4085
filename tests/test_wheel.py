"""ar-tui installed like a tool: a wheel built from the checkout, installed
(not editable) into a fresh venv, carries everything a run needs, and runs
from a directory outside the checkout that has no program.md.

The venv is made offline and fast: no pip inside it and no dependency
installed; a `.pth` line lets it see the test environment's packages
(torch, textual, ...), whose own `.pth` files (among them this checkout's
editable install) are not processed, so the only ar_tui it can import is the
wheel's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.fake_messages_api import FakeMessagesAPI, edit, reply, run_experiment, text

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-ant-test-wheel-5c1e"


def checkout_copy(dest: Path) -> Path:
    """The checkout's files as git sees them (tracked and new, not ignored),
    so that the build writes nothing into the checkout."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        source = ROOT / rel
        target = dest / rel
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the work tree
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin dir of a fresh venv holding the wheel."""
    work = tmp_path_factory.mktemp("wheel")
    source = checkout_copy(work / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(work / "dist"), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = (work / "dist").glob("ar_tui-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "test_dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(deps)))
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True,
                   capture_output=True, timeout=300, env=clean_env())
    return venv / "bin"


def clean_env(**extra: str) -> dict[str, str]:
    """No PYTHONPATH (the tests run with the checkout on it), no key, no venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("ANTHROPIC_")}
    env.update(extra)
    return env


def run_tool(bin_dir: Path, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(bin_dir / "ar-tui"), *args], cwd=cwd, env=clean_env(**env), capture_output=True,
                          text=True, timeout=400)


def test_the_wheel_carries_the_package_data_and_nothing_comes_from_the_checkout(installed: Path) -> None:
    code = ("import ar_tui, nanochat, pathlib; from ar_tui.core.targets import EXAMPLES_DIR, example_names; "
            "root = pathlib.Path(ar_tui.__file__).parent; "
            "print(root); print(pathlib.Path(nanochat.__file__).parent); print(EXAMPLES_DIR); print(*example_names()); "
            "print((root / 'program.md').is_file(), any((root / 'ui').glob('*.tcss')))")
    out = subprocess.run([str(installed / "python"), "-c", code], cwd=installed, env=clean_env(),
                         check=True, capture_output=True, text=True).stdout.splitlines()
    venv = installed.parent
    for line in out[:3]:
        assert Path(line).is_relative_to(venv) and not Path(line).is_symlink(), line
    assert {"forecast", "speed", "prompt"} <= set(out[3].split())
    assert out[4] == "True True"
    shipped = (Path(out[0]) / "program.md").read_text()
    assert shipped == (ROOT / "program.md").read_text()


def test_the_installed_tool_runs_the_offline_job_on_the_bundled_target(installed: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run_tool(installed, elsewhere, "run", "--headless", "--agent", "offline", "--max-experiments", "1",
                    "--baseline-runs", "1", "--time-budget", "1", "--unattended", "--lookahead", "0",
                    AR_TUI_HOME=str(tmp_path / "home"), AR_TUI_CACHE=str(tmp_path / "cache"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[prepare] prepare: training a 2048-token BPE tokenizer" in done.stdout
    assert "baseline: " in done.stdout and "stopped: max experiments (1) reached" in done.stdout
    runs = list((tmp_path / "home" / "runs").iterdir())
    assert len(runs) == 1 and len((runs[0] / "results.tsv").read_text().splitlines()) == 3


def test_the_installed_tool_runs_the_claude_agent_on_an_example(installed: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert not (elsewhere / "program.md").exists()
    with FakeMessagesAPI() as api:
        api.script(
            reply(text("A lower learning rate may forecast better."),
                  edit("str_replace", path="train.py", old_str="LEARNING_RATE = 0.003", new_str="LEARNING_RATE = 0.002")),
            reply(run_experiment("LEARNING_RATE 0.003 -> 0.002", rationale="a smoother fit")),
        )
        done = run_tool(installed, elsewhere, "run", "--headless", "--example", "forecast", "--agent", "claude",
                        "--model", "claude-sonnet-4-5", "--max-experiments", "1", "--baseline-runs", "1",
                        "--unattended", "--lookahead", "0", "--run-dir", str(tmp_path / "run"),
                        AR_TUI_HOME=str(tmp_path / "home"), ANTHROPIC_API_KEY=KEY, ANTHROPIC_BASE_URL=api.base_url)
        requests = list(api.requests)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "exp 1 " in done.stdout and "LEARNING_RATE 0.003 -> 0.002" in done.stdout
    # The packaged program.md was the system prompt.
    program = (ROOT / "program.md").read_text().strip().splitlines()[0]
    assert program in str(requests[0].json["system"])
    rows = (tmp_path / "run" / "results.tsv").read_text().splitlines()
    assert rows[0].split("\t")[1] == "val_rmse" and len(rows) == 3
    assert rows[2].split("\t")[3] in ("keep", "discard")
