"""The bundled nanochat target still trains and evaluates inside the sandbox,
through the real Engine: one short baseline run per backend, and the trusted
evaluator, run confined in a clean checkout, agrees with what train.py printed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ar_tui.agents.scripted import ScriptedProposer
from ar_tui.core import events as ev
from ar_tui.core.engine import Engine, EngineOptions
from ar_tui.core.records.ledger import read_events, read_results
from tests.conftest import git
from tests.core.test_sandbox import backend  # noqa: F401  (the fixture: both backends, never skipped)
from tests.nanochat.conftest import make_target, prepared_cache  # noqa: F401  (prepared_cache is a fixture)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux backends")


@pytest.mark.parametrize("cache_from", ["AR_TUI_CACHE", "user cache dir"])
async def test_nanochat_trains_and_evaluates_inside_the_sandbox(tmp_path: Path, backend, prepared_cache,  # noqa: F811
                                                                 monkeypatch: pytest.MonkeyPatch, cache_from: str) -> None:
    if cache_from == "AR_TUI_CACHE":
        monkeypatch.setenv("AR_TUI_CACHE", str(prepared_cache))
    else:
        # A fresh machine sets no AR_TUI_CACHE: the data are in the user's
        # cache dir, and a confined run has a HOME (and cache dir) of its own.
        monkeypatch.delenv("AR_TUI_CACHE", raising=False)
        (tmp_path / "xdg").mkdir()
        (tmp_path / "xdg" / "ar-tui").symlink_to(prepared_cache)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    target = make_target(tmp_path / "target")
    git(target, "init", "-q", "-b", "main")
    git(target, "add", "-A")
    git(target, "commit", "-q", "-m", "nanochat")
    run_dir = tmp_path / "run"
    options = EngineOptions(target_dir=target, tag="n", run_dir=run_dir, time_budget=3, max_experiments=0,
                            attended=False, lookahead=0, baseline_runs=1, sandbox="require",
                            sandbox_backends=[backend], write_report=False)
    stopped = await Engine(options, ScriptedProposer([])).run()
    assert not stopped.error, stopped.reason

    _, rows, _ = read_results(run_dir / "results.tsv")
    assert [(r.exp, r.status) for r in rows] == [(0, "keep")], [r.rule for r in rows]
    events = list(read_events(run_dir / "events.jsonl"))
    started = next(e for e in events if isinstance(e, ev.RunStarted))
    assert started.sandbox == f"sandbox: {backend.name}, network off"
    finished = next(e for e in events if isinstance(e, ev.ExperimentFinished))
    assert finished.outcome == ev.OUTCOME_OK, finished.message + finished.tail
    # The recorded metric is the evaluator's; it agrees with the one train.py printed.
    assert finished.metric == pytest.approx(finished.reported_metric, abs=1e-4)
    assert rows[0].metric == pytest.approx(finished.metric)
    assert "val_bpb:" in (run_dir / "logs" / "0.eval.log").read_text()
