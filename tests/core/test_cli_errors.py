"""Bad input gets one clear line and a non-zero exit, and loses nothing."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ar_tui.core.records.ledger import read_results
from tests.conftest import ROOT, git, make_target


def ar_tui(*args: str, env: dict | None = None, preexec=None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ar_tui.cli", *args], cwd=ROOT, env=env or dict(os.environ),
                          capture_output=True, text=True, timeout=timeout, preexec_fn=preexec)


def headless(target: Path, run_dir: Path, *extra: str, **kw) -> subprocess.CompletedProcess:
    return ar_tui("run", "--headless", "--target", str(target), "--run-dir", str(run_dir), "--tag", "e",
                  "--agent", "offline", "--unattended", "--baseline-runs", "1", *extra, **kw)


def one_line_error(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ar-tui: ") and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_not_a_git_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "train.py").write_text("print('val_bpb: 1')\n")
    (plain / "prepare.py").write_text("\n")
    one_line_error(headless(plain, tmp_path / "run"), "not a git repository")


def test_dirty_tree_is_refused_and_left_alone(tiny_target: Path, tmp_path: Path) -> None:
    (tiny_target / "train.py").write_text("LR = 0.1\n")
    one_line_error(headless(tiny_target, tmp_path / "run"), "uncommitted changes")
    assert (tiny_target / "train.py").read_text() == "LR = 0.1\n"
    assert "autoresearch/e" not in git(tiny_target, "branch", "--list")


def test_missing_protected_file(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target", config='[target]\nprotected = ["prepare.py"]\n')
    git(target, "rm", "-q", "prepare.py")
    git(target, "commit", "-qm", "no prepare")
    one_line_error(headless(target, tmp_path / "run"), "protected file prepare.py does not exist")


def test_a_repository_the_defaults_do_not_fit_is_sent_to_init(tmp_path: Path) -> None:
    """No autoresearch.toml and no karpathy/autoresearch layout: one line naming `ar-tui init`."""
    target = make_target(tmp_path / "target")
    git(target, "rm", "-q", "prepare.py")
    git(target, "commit", "-qm", "no prepare")
    one_line_error(headless(target, tmp_path / "run"), "run `ar-tui init")


@pytest.mark.parametrize(
    "config, expected",
    [
        ('[metric]\nname = "val_bpb"\ndirection = "down"\n', 'autoresearch.toml:3: metric.direction: must be "min" or "max"'),
        ("[target]\ntime_budget = -5\n", "autoresearch.toml:2: target.time_budget: must be a positive number"),
        ("[target]\nedtable = ['train.py']\n", "autoresearch.toml:2: target.edtable: unknown key"),
        ("[target\nrun = 'x'\n", "autoresearch.toml: Expected ']'"),
    ],
)
def test_bad_config_names_the_key_and_line(tmp_path: Path, config: str, expected: str) -> None:
    target = make_target(tmp_path / "target", config=config)
    one_line_error(headless(target, tmp_path / "run"), expected)


def test_run_dir_not_writable(tiny_target: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    one_line_error(headless(tiny_target, blocker / "run"), "run dir not writable")


def test_a_tag_whose_branch_exists_is_refused(tiny_target: Path, tmp_path: Path) -> None:
    git(tiny_target, "branch", "autoresearch/e")
    one_line_error(headless(tiny_target, tmp_path / "run"), "branch autoresearch/e already exists")


def _limit_file_size() -> None:
    # The run dir fills up: writes past 28 kB fail with EFBIG, as on a full disk
    # (well before the offline search on the tiny target runs out of ideas).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (28_000, 28_000))


def test_disk_full_while_writing_the_ledger_stops_with_rows_intact(tiny_target: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = headless(tiny_target, run_dir, "--max-experiments", "200", preexec=_limit_file_size)
    assert result.returncode == 1, result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ar-tui: cannot write") and "the rows before it are intact" in last
    _, rows, torn = read_results(run_dir / "results.tsv")
    assert not torn and len(rows) >= 2
    assert [r.exp for r in rows] == list(range(len(rows)))
    # With space again, the same command resumes after the last intact row.
    again = headless(tiny_target, run_dir, "--max-experiments", str(len(rows) + 1))
    assert again.returncode == 0, again.stderr
    _, after, _ = read_results(run_dir / "results.tsv")
    assert after[: len(rows)] == rows and len(after) > len(rows)
