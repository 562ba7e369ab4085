"""Notifications from a real night: a real engine on a tiny real target,
real Apprise sending over HTTP to a local sink behind three kinds of URL
(json://, ntfy:// and Mattermost's Slack-format webhook), each moment once;
and with every destination down or slow, the night goes on and its ledger is
the same as a night with none."""

from __future__ import annotations

import socket
from pathlib import Path

from ar_tui.agents.scripted import ScriptedProposer, ScriptStep
from ar_tui.core import events as ev
from ar_tui.core.engine import Engine, EngineOptions
from ar_tui.core.records.ledger import read_results
from ar_tui.core.records.rundir import RunDir
from ar_tui.notify.service import notify_service
from ar_tui.notify.settings import NotifySettings
from ar_tui.report import report_service
from tests.conftest import make_target
from tests.notify.sink import Sink

CONFIG = "[target]\ntime_budget = 2\n"
CRASH = "WIDTH = 64\nraise SystemExit(3)"
# A keep, three crashes in a row, then a run slow enough to stall the night
# (3 x the 2 s budget without a decision: far above a tiny run's second on
# a loaded machine), then the experiment budget ends it.
STEPS = [
    ScriptStep("LR 0.5 -> 0.4", "LR = 0.5", "LR = 0.4"),
    *[ScriptStep(f"crash {n}", "WIDTH = 64", CRASH) for n in (1, 2, 3)],
    ScriptStep("a slow run", '"0.05"', '"10"'),
]
SECRET = "s3cr3t-t0ken"


def night_options(target: Path, run_dir: Path, steps: int) -> EngineOptions:
    return EngineOptions(target_dir=target, tag="night", run_dir=run_dir, attended=False, lookahead=0,
                         baseline_runs=1, max_experiments=steps, sandbox="off")


def free_port() -> int:
    """A port nothing listens on (bound, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def run_night(target: Path, run_dir: Path, settings: NotifySettings | None,
                    steps: list[ScriptStep] = STEPS) -> tuple[ev.RunStopped, list[ev.Event]]:
    services = [notify_service(settings)] if settings else []
    engine = Engine(night_options(target, run_dir, len(steps)), ScriptedProposer(list(steps)),
                    services=[*services, report_service])
    seen: list[ev.Event] = []
    engine.subscribe(seen.append)
    return await engine.run(), seen


def titles(sink: Sink, path: str) -> list[str]:
    found = []
    for request in sink.received:
        if request.path != path:
            continue
        body = request.json()
        found.append(body.get("title") or body["text"].split("\r\n")[0])
    return found


async def test_each_moment_reaches_each_destination_once_in_its_format(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target", config=CONFIG)
    sink = await Sink().start()
    urls = [f"json://127.0.0.1:{sink.port}/hook/{SECRET}", f"ntfy://127.0.0.1:{sink.port}/night-{SECRET}",
            f"mmost://127.0.0.1:{sink.port}/{SECRET}"]
    try:
        stopped, seen = await run_night(target, tmp_path / "run", NotifySettings(urls=urls, crash_streak=3, stall_after=3))
    finally:
        await sink.stop()

    assert stopped.reason == f"max experiments ({len(STEPS)}) reached"
    _, rows, _ = read_results(RunDir(tmp_path / "run").ledger)
    assert [r.status for r in rows] == ["keep", "keep", "crash", "crash", "crash", "discard"]
    expected = ["ar-tui night: kept exp 1, val_bpb 1.010000", "ar-tui night: 3 crashes in a row",
                "ar-tui night: stalled", "ar-tui night: budget reached", "ar-tui night: the night is over"]
    for path in (f"/hook/{SECRET}", "/", f"/hooks/{SECRET}"):
        assert titles(sink, path) == expected, path
    # Each destination's own format, as Apprise writes it.
    json_hook = [r for r in sink.received if r.path == f"/hook/{SECRET}"]
    assert all(r.headers["Content-Type"] == "application/json" and r.method == "POST" for r in json_hook)
    keep = json_hook[0].json()
    assert keep["type"] == "info" and "LR 0.5 -> 0.4" in keep["message"] and "1.040000 -> 1.010000" in keep["message"]
    assert "2.9% better" in keep["message"]  # the gain, in % of the node it was built on
    assert "the last: crash" in json_hook[1].json()["message"]
    end = json_hook[-1].json()["message"]
    assert f"report: {RunDir(tmp_path / 'run').report}" in end and "5 experiments, 1 kept" in end
    ntfy = [r.json() for r in sink.received if r.path == "/"]
    assert {body["topic"] for body in ntfy} == {f"night-{SECRET}"}
    slack_format = [r.json() for r in sink.received if r.path == f"/hooks/{SECRET}"]
    assert all(set(body) >= {"text", "username"} for body in slack_format)
    # Everything arrived: nothing counted as undelivered.
    assert not [e for e in seen if isinstance(e, ev.Delivery)]
    # The URLs' secrets reached no file of the run.
    for path in RunDir(tmp_path / "run").path.rglob("*"):
        if path.is_file() and "worktrees" not in path.parts:
            assert SECRET not in path.read_text(errors="replace"), path


def _decided(run_dir: Path) -> list[tuple]:
    # What a night decided; the seconds and commits differ between any two nights.
    _, rows, _ = read_results(RunDir(run_dir).ledger)
    return [(r.exp, r.status, r.metric, r.description, r.parent, r.rule) for r in rows]


async def test_with_every_destination_down_or_slow_the_night_is_the_same(tmp_path: Path) -> None:
    slow = await Sink(delay_s=5.0).start()
    down = [f"json://127.0.0.1:{free_port()}/{SECRET}", f"ntfy://127.0.0.1:{free_port()}/t",
            f"json://127.0.0.1:{slow.port}/slow"]
    settings = NotifySettings(urls=down, crash_streak=3, stall_after=3, attempts=2, backoff_s=0.05,
                              timeout_s=0.5, grace_s=5.0)
    try:
        stopped, seen = await run_night(make_target(tmp_path / "a", config=CONFIG), tmp_path / "down", settings,
                                        STEPS[:4])
    finally:
        await slow.stop()
    quiet, _ = await run_night(make_target(tmp_path / "b", config=CONFIG), tmp_path / "none", None, STEPS[:4])

    assert stopped.reason == quiet.reason and not stopped.error
    assert _decided(tmp_path / "down") == _decided(tmp_path / "none")
    # Four moments (keep, crash streak, budget, end) for each of three destinations:
    # none arrived, each counted once.
    counts = [e.undelivered for e in seen if isinstance(e, ev.Delivery)]
    assert sorted(counts) == list(range(1, 13))
    assert {e.destination for e in seen if isinstance(e, ev.Delivery)} == {"json #1", "ntfy #2", "json #3"}
    assert all(SECRET not in e.to_json() and "127.0.0.1" not in e.to_json() for e in seen)
