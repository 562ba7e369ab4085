"""Every example runs with the offline proposer, offline, on a CPU: a
baseline and two experiments, each with its metric read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ar_tui.agents.offline import OfflineProposer
from ar_tui.agents.scripted import ScriptedProposer, ScriptStep
from ar_tui.core import events as ev
from ar_tui.core.engine import Engine, EngineOptions
from ar_tui.core.records.ledger import read_events, read_results
from ar_tui.core.targets import EXAMPLES_DIR, example_names, materialize_example
from tests.fake_messages_api import FakeMessagesAPI, RecordedRequest, reply, text


async def run_example(name: str, run_dir: Path, experiments: int = 2, proposer=None) -> ev.RunStopped:
    options = EngineOptions(target_dir=materialize_example(name), tag="ex", run_dir=run_dir, attended=False,
                            lookahead=0, baseline_runs=1, max_experiments=experiments, write_report=False)
    return await Engine(options, proposer or OfflineProposer(seed=0)).run()


def finished(run_dir: Path) -> list[ev.ExperimentFinished]:
    return [e for e in read_events(run_dir / "events.jsonl") if isinstance(e, ev.ExperimentFinished)]


def assert_two_experiments_with_metrics(run_dir: Path, stopped: ev.RunStopped) -> list:
    assert not stopped.error, stopped.reason
    _, rows, _ = read_results(run_dir / "results.tsv")
    assert [r.exp for r in rows] == [0, 1, 2]
    assert rows[0].status == "keep" and rows[0].metric is not None
    # The offline proposer turned real knobs, and each run's metric was read.
    for row in rows[1:]:
        assert row.status in ("keep", "discard"), row.rule
        assert row.metric is not None and row.description
    return rows


def test_every_example_has_its_parts() -> None:
    assert set(example_names()) >= {"forecast", "speed", "prompt", "backtest"}
    for name in example_names():
        folder = EXAMPLES_DIR / name
        assert (folder / "README.md").is_file() and (folder / "autoresearch.toml").is_file()


async def test_forecast_runs_two_experiments_scored_by_its_trusted_scorer(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    rows = assert_two_experiments_with_metrics(run_dir, await run_example("forecast", run_dir))
    # Forecasting "same as last year" scores about 29.9; the network does far better.
    assert 5 < rows[0].metric < 25
    # The recorded metric is the separate scorer's, from the saved forecasts;
    # it agrees with what train.py printed because both score the same numbers.
    baseline = [e for e in finished(run_dir) if e.exp == 0][0]
    assert baseline.metric == pytest.approx(baseline.reported_metric, abs=1e-6)
    assert (run_dir / "logs" / "0.eval.log").read_text().strip().endswith(f"val_rmse: {rows[0].metric:.6f}")


def seeded_forecast(target: Path, seed: str) -> float:
    env = dict(os.environ, AR_SEED=seed)
    env.pop("AR_CHECKPOINT", None)
    out = subprocess.run([sys.executable, "train.py"], cwd=target, env=env, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    return float(out.split("val_rmse:")[1].split()[0])


def test_the_fast_example_has_run_to_run_noise_from_its_seed(tmp_path: Path) -> None:
    target = materialize_example("forecast")
    first, again, other = (seeded_forecast(target, s) for s in ("1", "1", "2"))
    assert first == again  # the seed is the only source of chance
    assert first != other


async def test_speed_runs_two_experiments_timed_after_its_tests_pass(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    rows = assert_two_experiments_with_metrics(run_dir, await run_example("speed", run_dir))
    assert 0 < rows[0].metric < 10
    assert "OK" in (run_dir / "logs" / "0.log").read_text()  # unittest's verdict, before the timing


async def test_speed_with_a_failing_test_is_a_crash_whatever_its_time(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # Faster, and wrong: the tail of the left half is dropped.
    broken = ScriptStep("skip the merge's leftovers", "    merged.extend(left[i:])\n", "", path="sort.py")
    stopped = await run_example("speed", run_dir, experiments=1, proposer=ScriptedProposer([broken]))
    assert not stopped.error, stopped.reason
    _, rows, _ = read_results(run_dir / "results.tsv")
    assert [(r.exp, r.status) for r in rows] == [(0, "keep"), (1, "crash")]
    assert rows[1].metric is None
    assert "crash: AssertionError: " in rows[1].rule and "test(s) of test_sort.py failed" in rows[1].rule
    assert "FAILED" in (run_dir / "logs" / "1.log").read_text()


async def test_backtest_runs_two_experiments_on_real_prices(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    rows = assert_two_experiments_with_metrics(run_dir, await run_example("backtest", run_dir))
    log = (run_dir / "logs" / "0.log").read_text()
    # GOOG 2004-2013, bought and held: a Sharpe ratio near 0.9.
    buy_and_hold = float(log.split("buy_and_hold_sharpe:")[1].split()[0])
    assert 0.8 < buy_and_hold < 1.0
    assert rows[0].metric != buy_and_hold


def labels() -> dict[str, str]:
    items = [json.loads(line) for line in (EXAMPLES_DIR / "prompt" / "evalset.jsonl").read_text().splitlines()]
    return {item["text"]: item["label"] for item in items}


async def test_prompt_is_scored_through_the_messages_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = labels()

    def model(request: RecordedRequest):
        # A stand-in model that hedges on one review in three (its first word is then not the label).
        review = request.json["messages"][0]["content"]
        hedge = "Mostly " if list(answers).index(review) % 3 == 0 else ""
        return reply(text(f"{hedge}{answers[review].capitalize()}."))

    with FakeMessagesAPI() as api:
        api.responder = model
        monkeypatch.setenv("AR_PROMPT_API_KEY", "sk-ant-example-test")
        monkeypatch.setenv("AR_PROMPT_BASE_URL", api.base_url)
        run_dir = tmp_path / "run"
        rows = assert_two_experiments_with_metrics(run_dir, await run_example("prompt", run_dir))
        sent = api.requests
    assert rows[0].metric == pytest.approx(16 / 24)
    assert len(sent) == 3 * 24
    first = sent[0].json
    assert first["system"].startswith("You read product reviews") and first["max_tokens"] == 16
    assert "sk-ant-example-test" in sent[0].headers.get("x-api-key", "") + sent[0].headers.get("authorization", "")
    # The key reached the trusted scorer only: never a log.
    assert not any("sk-ant-example-test" in p.read_text() for p in (run_dir / "logs").iterdir())


async def test_prompt_without_a_key_says_so_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AR_PROMPT_API_KEY", raising=False)
    stopped = await run_example("prompt", tmp_path / "run")
    assert stopped.error
    assert "crash: prompt: error: no API key; set AR_PROMPT_API_KEY" in stopped.reason
