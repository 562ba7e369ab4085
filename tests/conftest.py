"""Shared fixtures: tiny real targets in real git repositories."""

from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# A target whose metric is a known function of one constant: fast and exact.
TINY_TRAIN = textwrap.dedent(
    """\
    import os, sys, time
    LR = 0.5  # the knob the tests turn
    WIDTH = 64  # a second knob
    time.sleep(float(os.environ.get("TINY_SLEEP", "0.05")))
    print("step 1/1 loss 1.0", flush=True)
    metric = (LR - 0.3) ** 2 + 1.0 + (WIDTH - 64) ** 2 * 1e-4
    print("---")
    print(f"val_bpb: {metric:.6f}")
    print("peak_vram_mb: 2048.0")
    """
)
TINY_PREPARE = "# fixed data preparation (protected)\nDATA = 42\n"


def git(cwd: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def make_target(root: Path, train: str = TINY_TRAIN, config: str | None = None,
                extra: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    (root / "train.py").write_text(train)
    (root / "prepare.py").write_text(TINY_PREPARE)
    if config is not None:
        (root / "autoresearch.toml").write_text(config)
    for name, text in (extra or {}).items():
        (root / name).write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


@pytest.fixture
def tiny_target(tmp_path: Path) -> Path:
    return make_target(tmp_path / "target")


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run dirs, materialised targets and caches go to a temporary home."""
    home = tmp_path / "ar-tui-home"
    monkeypatch.setenv("AR_TUI_HOME", str(home))
    # Nor does a test read the developer's own config, or send to their --notify URLs.
    monkeypatch.setenv("AR_TUI_CONFIG", str(home / "config.toml"))
    monkeypatch.delenv("AR_TUI_NOTIFY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    return home


def ar_tui_command() -> list[str]:
    return [sys.executable, "-m", "ar_tui.cli"]


class _UnretrievedExceptions(logging.Handler):
    """Collects asyncio's "Task exception was never retrieved" (and the same
    for futures): every such message is a failure somebody swallowed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "exception was never retrieved" in message:
            if record.exc_info and record.exc_info[1] is not None:
                message += f": {record.exc_info[1]!r}"
            self.messages.append(message.splitlines()[0] + (f" {message.splitlines()[-1]}" if "\n" in message else ""))


UNRETRIEVED = _UnretrievedExceptions()
logging.getLogger("asyncio").addHandler(UNRETRIEVED)


@pytest.fixture(autouse=True)
def no_unretrieved_task_exceptions():
    """Fails the test during which a task's (or future's) exception went
    unretrieved. A young-generation collection finds most of those held in
    cycles at no cost; a full one (100+ ms) runs once, at the end of the session."""
    UNRETRIEVED.messages.clear()
    yield
    gc.collect(1)
    found, UNRETRIEVED.messages[:] = list(UNRETRIEVED.messages), []
    if found:
        pytest.fail("an asyncio exception was never retrieved: " + "; ".join(found), pytrace=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The ones only a full collection finds fail the whole session."""
    gc.collect()
    if UNRETRIEVED.messages:
        print("\nan asyncio exception was never retrieved: " + "; ".join(UNRETRIEVED.messages))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
