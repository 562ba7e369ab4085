"""`ar-tui init`: on real repositories shaped like real projects (tests/init/repos.py),
the config it writes runs a baseline and two offline experiments with no
hand edits, through the real CLI."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ar_tui.core.config import load_target
from ar_tui.core.records.ledger import read_results
from ar_tui.setup.command import make_choices
from ar_tui.setup.discover import discover
from tests.conftest import ar_tui_command, git
from tests.init.repos import CHAR_TRAIN, char_gpt, example_repo, scripts_repo, uv_project


def ar_tui(cwd: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return subprocess.run([*ar_tui_command(), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def init_and_run(repo: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess, list]:
    """`ar-tui init --yes`, then a night of two offline experiments, both from inside the repository."""
    init = ar_tui(repo, "init", "--yes", "--dry-run", "60")
    assert init.returncode == 0, init.stdout + init.stderr
    assert (repo / "autoresearch.toml").is_file()
    run_dir = tmp_path / "night"
    night = ar_tui(repo, "run", "--headless", "--max-experiments", "2", "--baseline-runs", "1", "--max-runs", "1", "--unattended",
                   "--run-dir", str(run_dir))
    assert night.returncode == 0, night.stdout + night.stderr
    rows = read_results(run_dir / "results.tsv")[1]
    return init, rows


def assert_a_baseline_and_two_decided_experiments(rows: list) -> None:
    decided = {r.exp: r.status for r in rows}
    assert decided.get(0) == "keep" and rows[0].metric is not None, rows
    assert {decided.get(1), decided.get(2)} <= {"keep", "discard"}, rows


def test_char_gpt_with_ignored_data_runs_a_night_after_init(tmp_path: Path) -> None:
    repo = char_gpt(tmp_path / "char-gpt")
    data_before = sorted(p.name for p in (repo / "data" / "shakespeare_char").iterdir())
    init, rows = init_and_run(repo, tmp_path)
    config = load_target(repo)
    assert config.run == "python train.py" and config.editable == ["train.py"]
    assert config.protected == ["prepare.py"] and config.data == ["data"]
    assert (config.metric, config.direction) == ("val_loss", "min")
    # The pattern takes the last `val loss` of `step N: train loss ..., val loss ...`.
    assert config.metric_regex.findall("step 0: train loss 4.1, val loss 4.2\nstep 9: train loss 2.0, val loss 2.5\n") \
        == ["4.2", "2.5"]
    lines = init.stdout.splitlines()
    for start in ("run:", "editable:", "protected:", "data:", "metric:", "time_budget:"):
        assert sum(line.startswith(start) for line in lines) == 1, init.stdout
    assert "train.py: LEARNING_RATE = 1.0" in init.stdout  # a knob the offline proposer tunes
    assert_a_baseline_and_two_decided_experiments(rows)
    # Nothing of the data was committed, and it is as prepared.
    committed = git(repo, "log", "--all", "--name-only", "--format=").split()
    assert committed and not any(p.startswith("data") for p in committed)
    assert sorted(p.name for p in (repo / "data" / "shakespeare_char").iterdir()) == data_before


@pytest.mark.parametrize("make, run, editable, metric, direction", [
    (scripts_repo, "python scripts/train_bigram.py", ["scripts/train_bigram.py"], "eval/loss", "min"),
    (uv_project, "python -c 'import sys; from toy.train import main; sys.exit(main())'", ["toy/train.py"],
     "test_accuracy", "max"),
    (lambda root: example_repo("forecast", root), "python train.py", ["train.py"], "val_rmse", "min"),
    (lambda root: example_repo("speed", root), "python bench.py", ["sort.py"], "sort_seconds", "min"),
    (lambda root: example_repo("backtest", root), "python backtest.py", ["strategy.py"], "sharpe", "max"),
], ids=["scripts-entry", "uv-project", "example-forecast", "example-speed", "example-backtest"])
def test_init_fits_each_kind_of_repository(tmp_path: Path, make, run: str, editable: list[str], metric: str,
                                           direction: str) -> None:
    repo = make(tmp_path / "repo")
    _, rows = init_and_run(repo, tmp_path)
    config = load_target(repo)
    assert (config.run, config.editable, config.metric, config.direction) == (run, editable, metric, direction)
    assert_a_baseline_and_two_decided_experiments(rows)


def test_the_scripts_repo_shares_only_its_ignored_files(tmp_path: Path) -> None:
    """nanoGPT's layout: the folder holds a tracked prepare.py, so the data is its ignored files."""
    repo = scripts_repo(tmp_path / "repo")
    found = discover(repo)
    assert found.data.value == ["data/tinytext/train.bin", "data/tinytext/val.bin"]
    assert found.protected.value == ["data/tinytext/prepare.py"]


def test_the_prompt_example_is_read_from_its_files_when_its_dry_run_fails(tmp_path: Path) -> None:
    """It needs an API key to run: the dry run fails, the metric comes from its METRIC constant."""
    repo = example_repo("prompt", tmp_path / "repo")
    init = ar_tui(repo, "init", "--yes", "--dry-run", "30")
    assert init.returncode == 0, init.stderr
    assert "no API key" in init.stdout
    config = load_target(repo)
    assert (config.run, config.editable, config.metric, config.direction) == (
        "python score.py", ["prompt.py"], "accuracy", "max")
    assert config.protected == ["score.py", "evalset.jsonl"]


def test_data_the_source_does_not_name_is_found_by_the_dry_run(tmp_path: Path) -> None:
    """The path is built at run time: the first dry run dies on it, the second shares it."""
    repo = char_gpt(tmp_path / "repo", train=CHAR_TRAIN.replace('os.path.join("data", DATASET)',
                                                                 'os.path.join("da" + "ta", DATASET)'))
    assert discover(repo).data.value == []
    init = ar_tui(repo, "init", "--yes", "--dry-run", "60")
    assert init.returncode == 0, init.stderr
    assert load_target(repo).data == ["data/shakespeare_char"]
    assert "the dry run needed it" in init.stdout


def test_an_existing_config_is_kept_unless_forced(tmp_path: Path) -> None:
    repo = char_gpt(tmp_path / "repo")
    (repo / "autoresearch.toml").write_text("# mine\n")
    refused = ar_tui(repo, "init", "--yes", "--dry-run", "0")
    assert refused.returncode != 0 and "pass --force" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert (repo / "autoresearch.toml").read_text() == "# mine\n"
    forced = ar_tui(repo, "init", "--yes", "--dry-run", "0", "--force")
    assert forced.returncode == 0 and "[target]" in (repo / "autoresearch.toml").read_text()


def test_unsure_choices_are_asked_and_the_answers_taken(tmp_path: Path) -> None:
    """Two training scripts in scripts/: the entry point is a question."""
    repo = scripts_repo(tmp_path / "repo")
    (repo / "scripts" / "train_big.py").write_text((repo / "scripts" / "train_bigram.py").read_text())
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a second script")
    asked: list[str] = []

    def ask(question: str, default: str) -> str:
        asked.append(question)
        return "python scripts/train_bigram.py" if question.startswith("training command") else default

    class Args:
        dry_run = 30.0
        sandbox = "auto"

    choices = make_choices(discover(repo), Args(), ask, lambda line: None)
    assert any(q.startswith("training command") for q in asked)
    assert choices.run.value == "python scripts/train_bigram.py"
    assert choices.metric.value is not None and choices.metric.value.name == "eval/loss"


def test_run_on_a_repository_the_defaults_do_not_fit_says_to_run_init(tmp_path: Path) -> None:
    repo = scripts_repo(tmp_path / "repo")
    result = ar_tui(repo, "run", "--headless", "--target", str(repo), "--run-dir", str(tmp_path / "night"))
    assert result.returncode != 0
    assert "run `ar-tui init" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_makefile_target_is_an_entry_point(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "Makefile").write_text("data:\n\tpython tools/fetch.py\n\ntrain-small: data\n\tpython -m model.fit\n")
    (repo / "model").mkdir()
    (repo / "model" / "fit.py").write_text("LR = 0.1\nEPOCHS = 3\nprint('---')\nprint('val_loss: 1.0')\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "initial")
    found = discover(repo)
    assert found.entry.value == "make train-small" and "Makefile" in found.entry.why
    # No Python entry file: the file with the most constants is a guess, and is asked about.
    assert found.editable.value == ["model/fit.py"] and not found.editable.sure
