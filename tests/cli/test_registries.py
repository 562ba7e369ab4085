"""A new part of each kind -- a search strategy, an executor, an agent -- is
added from this file alone, through the registries, without editing ar_tui/:
its flags appear on `ar-tui run`, its options reach it, the run stores them,
and a resume that contradicts one is refused. A real run: real git, real
training processes, the real CLI (in this process, so that the registries
this test extends are the ones it reads)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from ar_tui import cli
from ar_tui.agents.registry import PROPOSERS, ProposerEntry, ProposerSettings
from ar_tui.agents.scripted import ScriptedProposer, ScriptStep
from ar_tui.core.config import RunOption, positive_int
from ar_tui.core.engine.strategies import STRATEGIES, StrategyEntry
from ar_tui.core.engine.strategies.greedy import GreedyStrategy
from ar_tui.core.executors import EXECUTORS, ExecutorEntry
from ar_tui.core.executors.base import OnLine, RunResult, RunSpec
from ar_tui.core.executors.local import LocalExecutor
from ar_tui.core.records.ledger import read_results
from ar_tui.core.records.rundir import RunDir


class PatientStrategy(GreedyStrategy):
    """Greedy under another name, remembering the option it was made with."""

    name = "patient"
    made: list[dict[str, Any]] = []

    def __init__(self, patience: int = 1, **settings: Any) -> None:
        self.patience = patience
        PatientStrategy.made.append({"patience": patience, **settings})


class CountingExecutor(LocalExecutor):
    """This machine's executor, counting the commands it runs."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.commands: list[str] = []

    async def run(self, spec: RunSpec, on_line: OnLine, stop: asyncio.Event) -> RunResult:
        self.commands.append(spec.command)
        return await super().run(spec, on_line, stop)


@pytest.fixture
def new_parts(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    made: dict[str, list] = {"executors": [], "agents": []}
    PatientStrategy.made = []

    def counting(settings: dict[str, Any]) -> CountingExecutor:
        executor = CountingExecutor(settings.get("counting_label", "unlabelled"))
        made["executors"].append(executor)
        return executor

    def steady(settings: ProposerSettings) -> ScriptedProposer:
        made["agents"].append(settings)
        step = settings.extra.get("steady_step", "0.4")
        return ScriptedProposer([ScriptStep(f"LR 0.5 -> {step}", "LR = 0.5", f"LR = {step}")])

    monkeypatch.setitem(STRATEGIES, "patient", StrategyEntry(PatientStrategy, "greedy that waits", (
        RunOption("patience", "decided experiments to wait", type=positive_int, default=2),)))
    monkeypatch.setitem(EXECUTORS, "counting", ExecutorEntry(counting, "this machine, counted", (
        RunOption("counting_label", "what the counter is called"),)))
    monkeypatch.setitem(PROPOSERS, "steady", ProposerEntry(steady, options=(
        RunOption("steady_step", "the learning rate it tries", toml="steady.step"),)))
    return made


def test_a_strategy_an_executor_and_an_agent_are_added_through_the_registries(
        new_parts: dict[str, list], tiny_target: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal's width
    for flag in ("--patience", "--counting-label", "--steady-step", "{greedy,tree,islands,patient}"):
        assert flag in help_text
    assert "counting (this machine, counted)" in help_text

    run_dir = tmp_path / "run"
    code = cli.main(["run", "--headless", "--target", str(tiny_target), "--run-dir", str(run_dir), "--unattended",
                     "--baseline-runs", "1", "--lookahead", "0", "--max-experiments", "1",
                     "--strategy", "patient", "--patience", "3", "--executor", "counting",
                     "--counting-label", "night", "--agent", "steady", "--steady-step", "0.3"])
    assert code == 0, capsys.readouterr()

    # Each part got its own option; the strategy also got the run's settings.
    assert PatientStrategy.made[-1]["patience"] == 3 and PatientStrategy.made[-1]["direction"] == "min"
    (executor,) = new_parts["executors"]
    assert executor.label == "night" and len(executor.commands) == 2  # the baseline and experiment 1
    assert new_parts["agents"][-1].extra["steady_step"] == "0.3"
    _, rows, _ = read_results(run_dir / "results.tsv")
    assert [(row.status, row.description) for row in rows] == [("keep", "baseline"), ("keep", "LR 0.5 -> 0.3")]

    # The run stores them, so a resume is the same run.
    extra = json.loads(RunDir(run_dir).options.read_text())["extra"]
    assert {k: extra[k] for k in ("strategy", "patience", "counting_label", "steady_step")} == {
        "strategy": "patient", "patience": 3, "counting_label": "night", "steady_step": "0.3"}
    assert json.loads(RunDir(run_dir).options.read_text())["executor"] == "counting"
    capsys.readouterr()
    assert cli.main(["run", "--headless", "--run-dir", str(run_dir), "--patience", "4"]) == 2
    assert "was started with --patience 3, not --patience 4" in capsys.readouterr().err


def test_a_new_strategy_s_declared_default_is_stored_at_the_first_start(
        new_parts: dict[str, list], tiny_target: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert cli.main(["run", "--headless", "--target", str(tiny_target), "--run-dir", str(run_dir), "--unattended",
                     "--baseline-runs", "1", "--max-experiments", "0", "--strategy", "patient",
                     "--agent", "steady"]) == 0
    assert PatientStrategy.made[-1]["patience"] == 2
    assert json.loads(RunDir(run_dir).options.read_text())["extra"]["patience"] == 2
