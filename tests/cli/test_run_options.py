"""The merge rules of stored run options, on their own (no engine, no process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ar_tui import run_options
from ar_tui.core import events as ev
from ar_tui.core.errors import UserError
from ar_tui.core.records.rundir import RunDir
from ar_tui.run_options import OptionConflict, RunOptions, merge

STARTED = RunOptions(target="/t", tag="night", agent="offline", model="m", seed=3, baseline_runs=1, lookahead=0,
                     devices=["cpu"], max_experiments=10, hours=None, budget_usd=5.0, attended=False,
                     veto_window_s=30.0, executor="local", extra={"strategy": "greedy"})


def test_nothing_given_resumes_as_started() -> None:
    assert merge(STARTED, {}, binding=True) == STARTED


def test_budgets_may_be_raised_or_set_where_none_was() -> None:
    merged = merge(STARTED, {"max_experiments": 20, "hours": 2.0, "budget_usd": 9.5}, binding=True)
    assert (merged.max_experiments, merged.hours, merged.budget_usd) == (20, 2.0, 9.5)
    assert merged.agent == "offline" and merged.tag == "night"


def test_how_the_run_is_watched_and_scheduled_may_change() -> None:
    merged = merge(STARTED, {"attended": True, "veto_window_s": 5.0, "devices": ["cuda:0", "cuda:1"],
                             "lookahead": 2, "base_url": "http://127.0.0.1:9"}, binding=True)
    assert merged.attended and merged.veto_window_s == 5.0 and merged.devices == ["cuda:0", "cuda:1"]
    assert merged.lookahead == 2 and merged.base_url == "http://127.0.0.1:9"


@pytest.mark.parametrize("name, value, flag", [
    ("agent", "claude", "--agent offline"),
    ("target", "/elsewhere", "--target /t"),
    ("tag", "other", "--tag night"),
    ("seed", 4, "--seed 3"),
    ("executor", "ray", "--executor local"),
    ("time_budget", 60.0, "no --time-budget"),
])
def test_a_conflicting_option_is_refused_in_one_line(name: str, value, flag: str) -> None:
    with pytest.raises(OptionConflict) as caught:
        merge(STARTED, {name: value}, binding=True, where="run /r")
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"run /r was started with {flag}, not ")
    assert isinstance(caught.value, UserError)


def test_the_same_value_given_again_is_no_conflict() -> None:
    assert merge(STARTED, {"agent": "offline", "target": "/t", "seed": 3}, binding=True) == STARTED


def test_extra_options_keep_their_stored_value_and_new_ones_are_added() -> None:
    merged = merge(STARTED, {"extra": {"team": "small"}}, binding=True)
    assert merged.extra == {"strategy": "greedy", "team": "small"}
    with pytest.raises(OptionConflict, match="started with --strategy greedy, not --strategy tree; resume it without --strategy"):
        merge(STARTED, {"extra": {"strategy": "tree"}}, binding=True)


def test_a_run_without_records_takes_the_new_options_whole() -> None:
    # Its first start was refused (a dirty tree, say): nothing ran under the old options.
    merged = merge(STARTED, {"agent": "claude", "target": "/elsewhere"}, binding=False)
    assert (merged.agent, merged.target, merged.tag) == ("claude", "/elsewhere", "night")


def test_a_new_run_starts_from_the_defaults() -> None:
    merged = merge(None, {"tag": "x"}, binding=False)
    assert merged == RunOptions(tag="x")


def test_unknown_names_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="not run options: colour"):
        merge(None, {"colour": "red"}, binding=False)


def test_saved_options_load_back_and_unknown_keys_are_ignored(tmp_path: Path) -> None:
    run_options.save(tmp_path / "run", STARTED)
    assert run_options.load(tmp_path / "run") == STARTED
    stored = json.loads(RunDir(tmp_path / "run").options.read_text())
    stored["from_a_newer_version"] = 1
    RunDir(tmp_path / "run").options.write_text(json.dumps(stored))
    assert run_options.load(tmp_path / "run") == STARTED


def test_a_broken_options_file_is_one_line(tmp_path: Path) -> None:
    paths = RunDir(tmp_path)
    paths.options.write_text("{not json")
    with pytest.raises(UserError, match="cannot read the stored run options"):
        run_options.load(tmp_path)


def test_a_run_from_before_stored_options_resumes_from_its_run_started(tmp_path: Path) -> None:
    started = ev.RunStarted(tag="old", target="/t", run_dir=str(tmp_path), agent="offline", model=None,
                            metric="val_bpb", direction="min", attended=False, veto_window_s=60.0,
                            slots=["cuda:0", "cuda:1"], lookahead=0, resumed=False, budget_usd=None,
                            max_experiments=7, hours=None, time_budget_s=300.0)
    RunDir(tmp_path).events.write_text(started.to_json() + "\n")
    loaded = run_options.load(tmp_path)
    assert loaded is not None
    assert (loaded.tag, loaded.target, loaded.agent, loaded.devices) == ("old", "/t", "offline", ["cuda:0", "cuda:1"])
    assert (loaded.max_experiments, loaded.attended, loaded.lookahead) == (7, False, 0)


def test_no_options_and_no_history_is_a_new_run(tmp_path: Path) -> None:
    assert run_options.load(tmp_path) is None
