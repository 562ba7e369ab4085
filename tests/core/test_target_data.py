"""`[target] data`: prepared data that git ignores, shared read-only with every run.

A real char-level language model repository (tests/init/repos.py) whose
`prepare.py` writes `data/shakespeare_char/*.bin` into a git-ignored folder,
run by the real Engine under both sandbox backends, with its checkout inside
the (hidden) home dir as a user's would be.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from ar_tui.agents.scripted import ScriptedProposer, ScriptStep
from ar_tui.core.config import ConfigError, load_target
from ar_tui.core.engine import Engine, EngineOptions
from ar_tui.core.records.ledger import read_results
from ar_tui.core.records.target_data import DataError, check_data, missing_data_hint
from tests.conftest import git
from tests.core.test_sandbox import backend, home  # noqa: F401  (fixtures: both backends, a home dir)
from tests.init.repos import char_gpt

DATA = "data/shakespeare_char"
CONFIG = """\
[target]
run = "python train.py"
editable = ["train.py"]
protected = ["prepare.py"]
{data}
time_budget = 5
timeout = 60

[metric]
name = "val_loss"
direction = "min"
pattern = 'val loss\\s*([0-9.]+)'
"""
BETTER = ScriptStep("raise the learning rate", "LEARNING_RATE = 1.0", "LEARNING_RATE = 2.0")
ANCHOR = 'data_dir = os.path.join("data", DATASET)'


def with_code(description: str, code: str) -> ScriptStep:
    """An experiment whose train.py runs `code` first (at module level)."""
    return ScriptStep(description, ANCHOR, ANCHOR + "\n" + code)


WRITE_DATA = with_code("append to the training data", 'open(os.path.join(data_dir, "train.bin"), "ab").write(b"xx")')
PLANT_DATA = with_code("plant a file in the data", 'open(os.path.join(data_dir, "planted.txt"), "w").write("x")')
# A run that swaps the data link for a folder of its own: the next run must
# find the real data again, and nothing of it may be committed.
SWAP_LINK = with_code("swap the data for a folder of its own", (
    'os.remove(data_dir) if os.path.islink(data_dir) else None\n'
    'os.makedirs(data_dir, exist_ok=True)\n'
    'open(os.path.join(data_dir, "meta.json"), "w").write("{\\"vocab_size\\": 2}")'))


def repo_with(root: Path, data: str | None, prepared: bool = True) -> Path:
    repo = char_gpt(root, prepared=prepared)
    (repo / "autoresearch.toml").write_text(CONFIG.format(data=data or ""))
    return repo


def fingerprint(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


async def night(repo: Path, steps: list[ScriptStep], backend=None, **options):  # noqa: F811
    run_dir = repo.parent / "run"
    opts = dict(target_dir=repo, tag="d", run_dir=run_dir, attended=False, lookahead=0, baseline_runs=1,
                max_experiments=len(steps), sandbox_backends=[backend] if backend else None)
    opts.update(options)
    stopped = await Engine(EngineOptions(**opts), ScriptedProposer(steps)).run()
    rows = read_results(run_dir / "results.tsv")[1] if (run_dir / "results.tsv").exists() else []
    return stopped, rows


def committed_paths(repo: Path) -> set[str]:
    return set(git(repo, "log", "--all", "--name-only", "--format=").split())


# ---------------------------------------------------------------- the crash hint


async def test_the_baseline_says_which_key_to_add_when_the_data_is_missing(tmp_path: Path, home: Path) -> None:
    repo = repo_with(home / "char-gpt", data=None)
    stopped, _ = await night(repo, [BETTER], sandbox="off")
    assert stopped.error
    assert ('hint: data/shakespeare_char/meta.json exists in your checkout but git ignores it; '
            'add [target] data = ["data/shakespeare_char"]') in stopped.reason
    assert "FileNotFoundError" in stopped.reason and "\n" not in stopped.reason


def test_the_hint_names_the_file_when_its_folder_holds_tracked_files(tmp_path: Path) -> None:
    repo = char_gpt(tmp_path / "repo")
    (repo / DATA / "README.md").write_text("how to prepare\n")
    git(repo, "add", "-f", f"{DATA}/README.md")
    git(repo, "commit", "-qm", "doc")
    tail = f"FileNotFoundError: [Errno 2] No such file or directory: '{DATA}/train.bin'"
    assert missing_data_hint(tail, repo, tmp_path / "wt") == (
        f'{DATA}/train.bin exists in your checkout but git ignores it; add [target] data = ["{DATA}/train.bin"]')
    # Absolute paths in the run's worktree read the same; a path the checkout lacks gets no hint.
    assert missing_data_hint(f"cat: {tmp_path}/wt/{DATA}/val.bin: No such file or directory", repo, tmp_path / "wt")
    assert missing_data_hint("No such file or directory: 'data/other/x.bin'", repo, tmp_path / "wt") is None


# ---------------------------------------------------------------- the night, both backends


async def test_with_data_the_night_runs_and_the_data_is_read_only(tmp_path: Path, backend, home: Path) -> None:  # noqa: F811
    repo = repo_with(home / "char-gpt", data=f'data = ["{DATA}"]')
    before = fingerprint(repo / DATA)
    stopped, rows = await night(repo, [WRITE_DATA, PLANT_DATA, SWAP_LINK, BETTER], backend, sandbox="require")
    assert not stopped.error, stopped.reason
    status = {r.exp: r.status for r in rows}
    assert status[0] == "keep" and rows[0].metric is not None  # the baseline read the data
    # Writing into the data, or planting a file in it, is refused inside the sandbox.
    for exp in (1, 2):
        row = next(r for r in rows if r.exp == exp)
        assert row.status == "crash" and ("Permission denied" in row.rule or "Read-only file system" in row.rule), row.rule
    # Swapping the link for a folder of its own only fools that run; the next one reads the real data.
    assert status[4] == "keep", rows
    assert fingerprint(repo / DATA) == before
    assert not any(p.startswith("data/") for p in committed_paths(repo))
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""


async def test_without_the_sandbox_the_same_write_changes_the_data(tmp_path: Path, home: Path) -> None:
    """What the sandbox prevents: unconfined, the write reaches the checkout's data."""
    repo = repo_with(home / "char-gpt", data=f'data = ["{DATA}"]')
    size = (repo / DATA / "train.bin").stat().st_size
    await night(repo, [WRITE_DATA], sandbox="off")
    assert (repo / DATA / "train.bin").stat().st_size == size + 2


async def test_prepare_is_the_one_command_that_writes_the_data(tmp_path: Path, home: Path) -> None:
    """No prepared data in the checkout: the prepare command makes it there
    (through the link), and the runs read it."""
    repo = repo_with(home / "char-gpt", data=f'data = ["{DATA}"]\nprepare = "python prepare.py"', prepared=False)
    stopped, rows = await night(repo, [BETTER], sandbox="require")
    assert not stopped.error, stopped.reason
    assert (repo / DATA / "train.bin").is_file() and [r.status for r in rows] == ["keep", "keep"]
    assert not any(p.startswith("data/") for p in committed_paths(repo))


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("value, expected", [
    ('["/etc"]', "must be a path inside the target"),
    ('["../x"]', "must be a path inside the target"),
    ('["data", "data/x"]', "data/x is inside data"),
    ('["."]', "must be a path inside the target"),
    ('"data"', "must be a list of paths"),
    ('["train.py"]', "which the agent edits or ar-tui protects"),
])
def test_bad_data_paths_are_one_line(tmp_path: Path, value: str, expected: str) -> None:
    repo = char_gpt(tmp_path / "repo", prepared=False)
    (repo / "autoresearch.toml").write_text(f'[target]\ndata = {value}\n')
    with pytest.raises(ConfigError, match="target.data") as caught:
        load_target(repo)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_data_that_git_tracks_or_that_is_missing_is_refused(tmp_path: Path) -> None:
    repo = char_gpt(tmp_path / "repo", prepared=False)
    with pytest.raises(DataError, match="holds files git tracks"):
        check_data(repo, ["prepare.py"], None)
    with pytest.raises(DataError, match="run the repository's data preparation"):
        check_data(repo, [DATA], None)
    check_data(repo, [DATA], "python prepare.py")  # a prepare will make it: its folder is made for it
    assert (repo / DATA).is_dir() and not os.listdir(repo / DATA)
