"""Shared fixtures for the nanochat target: one prepared cache per session, and a
target directory laid out the way the engine materialises it (prepare.py,
train.py and autoresearch.toml side by side)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NANOCHAT = REPO / "nanochat"
TARGET_FILES = ("prepare.py", "train.py", "autoresearch.toml")


def nanochat_env(cache: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("AR_NANOCHAT_DATASET", None)
    env.update(
        AR_TUI_CACHE=str(cache),
        PYTHONPATH=str(REPO),  # `python -m nanochat.evaluate` must find the trusted package
        PYTHONUNBUFFERED="1",
        # Anything that tried the network would hit a closed local port and fail.
        HTTP_PROXY="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
        http_proxy="http://127.0.0.1:9",
        https_proxy="http://127.0.0.1:9",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    env.update(extra)
    return env


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def make_target(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in TARGET_FILES:
        shutil.copy(NANOCHAT / name, directory / name)
    return directory


def final_block(stdout: str) -> dict[str, str]:
    """The `key: value` lines after the last `---` line."""
    lines = stdout.replace("\r", "\n").splitlines()
    assert "---" in lines, f"no final block in:\n{stdout[-2000:]}"
    block = lines[len(lines) - lines[::-1].index("---") :]
    return {key.strip(): value.strip() for key, value in (line.split(":", 1) for line in block if ":" in line)}


@pytest.fixture(scope="session")
def prepared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default corpus, prepared once with the real prepare.py."""
    cache = tmp_path_factory.mktemp("nanochat-cache")
    result = run([sys.executable, "prepare.py"], cwd=NANOCHAT, env=nanochat_env(cache))
    assert result.returncode == 0, result.stderr
    return cache


@pytest.fixture
def target(tmp_path: Path) -> Path:
    return make_target(tmp_path / "target")
