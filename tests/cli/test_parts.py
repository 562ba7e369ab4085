"""The small toolkit-free parts the CLI wires: the exit-code map, the
registries, GPU discovery's flags, the headless text and the chart's range."""

from __future__ import annotations

import io

import pytest

from ar_tui import exit_codes
from ar_tui.agents.offline import OfflineProposer
from ar_tui.agents.registry import ProposerSettings, make_proposer, proposer_names
from ar_tui.core import events as ev
from ar_tui.core.config import ConfigError
from ar_tui.core.errors import RunError, UserError
from ar_tui.core.executors import executor_names, make_executor
from ar_tui.core.executors.local import LocalExecutor
from ar_tui.core.records.ledger import LedgerError, LedgerRow
from ar_tui.gpus import detect_devices
from ar_tui.headless import HeadlessPrinter, describe_status, runs_table
from ar_tui.report.build import Report
from ar_tui.report.chart import y_range


@pytest.mark.parametrize("error, code", [
    (UserError("bad flag"), 2),
    (ConfigError("autoresearch.toml:1: bad"), 2),
    (RunError("disk full"), 1),
    (LedgerError("cannot write results.tsv"), 1),
    (RuntimeError("a bug"), 1),
])
def test_every_error_maps_to_one_exit_code(error: BaseException, code: int) -> None:
    stream = io.StringIO()
    assert exit_codes.report(error, stream) == code
    line = stream.getvalue()
    assert line.count("\n") == 1 and line.startswith("ar-tui: ")
    # Our own errors are worded for a person; anything else is a bug and says what it was.
    assert ("RuntimeError" in line) == (not isinstance(error, (UserError, RunError)))


def test_a_run_that_stopped_on_an_error_exits_1_and_a_clean_stop_0() -> None:
    def stopped(error: bool) -> ev.RunStopped:
        return ev.RunStopped(reason="r", experiments=1, kept=0, best_metric=None, baseline_metric=None,
                             improvement_pct=None, cost_usd=0.0, error=error)

    assert exit_codes.exit_code(stopped=stopped(True)) == exit_codes.EXIT_ERROR
    assert exit_codes.exit_code(stopped=stopped(False)) == exit_codes.EXIT_OK
    assert exit_codes.exit_code() == exit_codes.EXIT_OK


def test_proposers_are_found_by_name() -> None:
    assert proposer_names() == ["offline", "claude", "openai", "hybrid", "team", "claude-code", "codex"]
    proposer = make_proposer("offline", ProposerSettings(model="m", seed=7))
    assert isinstance(proposer, OfflineProposer) and proposer.seed == 7
    with pytest.raises(UserError,
                       match="unknown agent 'gpt'; known: offline, claude, openai, hybrid, team, claude-code, codex"):
        make_proposer("gpt", ProposerSettings(model="m"))
    with pytest.raises(UserError, match="needs its instructions"):
        make_proposer("claude", ProposerSettings(model="m", program=None))


def test_executors_are_found_by_name() -> None:
    assert executor_names() == ["local", "ray"]
    assert isinstance(make_executor("local"), LocalExecutor)
    with pytest.raises(UserError, match="unknown executor 'slurm'; known: local, ray"):
        make_executor("slurm")


def test_device_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    assert detect_devices(None, None) == ["cuda:1", "cuda:3"]
    assert detect_devices(1, None) == ["cuda:1"]
    assert detect_devices(3, None) == ["cpu"] * 3  # more slots than GPUs: CPU slots
    assert detect_devices(None, "0,2") == ["cuda:0", "cuda:2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert detect_devices(None, None) == ["cpu"]
    with pytest.raises(UserError, match="--devices must be GPU indices"):
        detect_devices(None, "a,b")
    with pytest.raises(UserError, match="--slots must be at least 1"):
        detect_devices(0, None)


def test_headless_lines_read_like_the_app() -> None:
    decision = ev.Decision(exp=3, status="keep", rule="beat the best", metric=0.9876543, best_before=1.0,
                           best_after=0.9876543, commit="abc", description="LR down")
    assert HeadlessPrinter.format(decision) == "exp 3 KEEP    0.987654  LR down  (beat the best)"
    stopped = ev.RunStopped(reason="max experiments (3) reached", experiments=3, kept=1, best_metric=None,
                            baseline_metric=None, improvement_pct=None, cost_usd=0.0123)
    assert HeadlessPrinter.format(stopped).splitlines()[1] == (
        "experiments: 3  kept: 1  best: -  improvement over baseline: -  cost: $0.0123")


def test_status_and_ls_text() -> None:
    status = {"tag": "night", "state": "dead", "experiments": 4, "kept": 2, "metric": "val_bpb", "best": 0.95,
              "improvement_pct": 5.0, "baseline": 1.0, "cost_usd": 1.5, "run_dir": "/runs/night", "live": False}
    line = describe_status(status)
    assert line.startswith("night  dead  4 done, 2 kept  best val_bpb 0.950000 (+5.00% vs baseline 1.000000)  $1.50")
    assert "`ar-tui run --run-dir /runs/night --headless` resumes it" in line
    table = runs_table([status]).splitlines()
    assert table[0].split() == ["TAG", "STATE", "EXPS", "KEPT", "BEST", "RUN", "DIR"]
    assert table[1].split() == ["night", "dead", "4", "2", "0.950000", "/runs/night"]
    assert runs_table([]) == "no runs on this machine"


def _report(rows: list[tuple[int, float | None, str]], direction: str = "min") -> Report:
    ledger = [LedgerRow(commit=f"c{exp}", metric=metric, memory_gb=None, status=status, description="", exp=exp)
              for exp, metric, status in rows]
    return Report(run_dir="", source="ar-tui", original_format=False, tag="t", agent="", model=None,
                  metric="val_bpb", direction=direction, baseline=None, baseline_commit="", best=None, best_exp=None,
                  best_commit="", improvement_pct=None, experiments=len(rows) - 1, kept=0, discarded=0, crashed=0,
                  vetoed=0, wall_seconds=None, training_seconds=None, slots=1, experiments_per_hour=None,
                  training_share=None, cost_usd=None, cost_is_lower_bound=False, tokens=None,
                  cost_per_experiment=None, cost_per_kept=None, stopped_reason="", rows=ledger)


def test_one_diverged_run_does_not_flatten_the_chart() -> None:
    # The app's own screenshot: gains between 0.998 and 0.971, one run at 1.31.
    rows = [(0, 0.998, "keep"), (1, 0.990, "keep"), (2, 1.31, "discard"), (3, 0.971, "keep"), (4, 0.985, "discard")]
    low, high = y_range(_report(rows))
    assert low < 0.971 and 0.998 < high < 1.31  # the outlier is clipped to the edge, not in range
    assert (high - low) < 0.1  # the band is the night's progress, not the outlier's
    low, high = y_range(_report([(0, 1.0, "keep"), (1, 1.2, "keep"), (2, -5.0, "discard")], direction="max"))
    assert low > -5.0 and high > 1.2
