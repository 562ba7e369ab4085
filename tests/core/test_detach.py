"""Detach and re-attach: a real background engine (`ar-tui run --detach`) on a
tiny real target, reached through its real Unix socket by the attached app
(driven with the pilot), by `ar-tui status / stop / ls` as child processes,
and by hostile clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import signal
import socket
import stat
import subprocess
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from ar_tui.core import events as ev
from ar_tui.core.control.client import RemoteEngine, RemoteError, request
from ar_tui.core.control.server import MAX_REQUEST_BYTES, SOCKET_NAME, control_service
from ar_tui.core.engine import PID_FILE, engine_pid
from ar_tui.core.executors.process import RUN_MARKER_ENV, kill_orphans, run_marker
from ar_tui.core.records.ledger import read_events, read_results
from ar_tui.ui.attached_app import AttachedApp
from ar_tui.ui.confirm_screen import ConfirmScreen
from tests.conftest import ar_tui_command, make_target
from tests.polling import wait_for

# The baseline (the file as committed) is quick; every experiment changes a
# constant and then "trains" for DETACH_SLEEP seconds, printing progress, so
# a test can act while an experiment runs without waiting on the baseline.
SLOW_TRAIN = textwrap.dedent(
    """\
    import os, time
    LR = 0.5
    WIDTH = 64
    slow = (LR, WIDTH) != (0.5, 64)
    deadline = time.time() + (float(os.environ.get("DETACH_SLEEP", "1")) if slow else 0.05)
    step = 0
    while True:
        step += 1
        print(f"step {step} lr {LR}", flush=True)
        if time.time() >= deadline:
            break
        time.sleep(0.05)
    print("---")
    print(f"val_bpb: {(LR - 0.3) ** 2 + 1.0 + (WIDTH - 64) ** 2 * 1e-4:.6f}")
    """
)
SIZE = (120, 40)


def child_env(sleep: float) -> dict[str, str]:
    return dict(os.environ, DETACH_SLEEP=str(sleep))


async def cli(*args: object, sleep: float = 1.0, timeout: float = 120.0) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *ar_tui_command(), *map(str, args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL, env=child_env(sleep),
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    return process.returncode, out.decode(), err.decode()


async def status(run_dir: Path) -> dict:
    code, out, err = await cli("status", run_dir, "--json")
    assert code == 0, err
    return json.loads(out)


def rows(run_dir: Path) -> list:
    path = run_dir / "results.tsv"
    return read_results(path)[1] if path.exists() else []


def events(run_dir: Path, kind: type = ev.Event) -> list:
    return [e for e in read_events(run_dir / "events.jsonl") if isinstance(e, kind)]


def running_exp(run_dir: Path) -> int | None:
    """The experiment now running according to events.jsonl."""
    started = {e.exp for e in events(run_dir, ev.ExperimentStarted)}
    finished = {e.exp for e in events(run_dir, ev.ExperimentFinished)}
    live = sorted(started - finished)
    return live[-1] if live else None


@pytest.fixture
async def detached(tmp_path: Path):
    """Starts background engines with `ar-tui run --detach`; stops them after the test."""
    started: list[tuple[Path, int]] = []

    async def start(tag: str = "d", sleep: float = 1.0, *extra: object) -> Path:
        target = make_target(tmp_path / f"target-{tag}", train=SLOW_TRAIN)
        run_dir = tmp_path / f"run-{tag}"
        code, out, err = await cli("run", "--detach", "--target", target, "--tag", tag, "--run-dir", run_dir,
                                   "--agent", "offline", "--unattended", "--baseline-runs", "1", "--lookahead", "0",
                                   *extra, sleep=sleep)
        assert code == 0, err
        assert f"ar-tui attach {run_dir}" in out
        pid = engine_pid(run_dir)
        assert pid is not None and pid != os.getpid()
        started.append((run_dir, pid))
        return run_dir

    yield start
    # A graceful stop would write the morning report (seconds of plotting);
    # the tests that stop gracefully do so themselves.
    for run_dir, pid in started:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).wait(15)
        kill_orphans(run_dir)


async def until(pilot, predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def test_attached_app_pauses_the_detached_engine_and_detaching_leaves_it_running(detached) -> None:
    run_dir = await detached(sleep=0.3)
    # The detached engine outlived the `ar-tui run --detach` that started it,
    # in a session of its own: no terminal hang-up reaches it.
    pid = engine_pid(run_dir)
    assert os.getsid(pid) == pid
    await wait_for(lambda: events(run_dir, ev.BaselineReady), what="the baseline")

    remote = RemoteEngine(run_dir)
    history = await remote.connect()
    assert isinstance(history[0], ev.RunStarted) and history[0].run_dir == str(run_dir.resolve())
    app = AttachedApp(remote, replay=history, log_dir=run_dir / "logs", machine_sampler=lambda: ["cpu (test)"])
    async with app.run_test(size=SIZE) as pilot:
        assert app.view.tag == "d" and app.view.baseline == 1.04  # the history, replayed
        # Live training output arrives over the socket (log lines are never in events.jsonl).
        live: list[ev.Event] = []
        remote.subscribe(live.append)
        await until(pilot, lambda: any(isinstance(e, ev.LogLine) for e in live), what="live log lines")
        await until(pilot, lambda: len(app.logs.slot(0).lines) > 0, what="the app to show them")

        await pilot.press("p")
        await until(pilot, lambda: app.view.paused, what="the engine's Paused event")
        figures = await status(run_dir)
        assert figures["paused"] is True and figures["live"] is True and figures["clients"] == 1

        await pilot.press("p")
        await until(pilot, lambda: not app.view.paused, what="the engine's resume")
        assert (await request(run_dir, "status"))["paused"] is False

        await pilot.press("q")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await until(pilot, lambda: not app.is_running, what="the app to leave")
    await remote.close()

    # Detached: nobody watches, and the run goes on.
    decided = len(rows(run_dir))
    await wait_for(lambda: len(rows(run_dir)) >= decided + 2, what="two more decisions after detaching")
    assert engine_pid(run_dir) == pid
    assert [e.paused for e in events(run_dir, ev.Paused)] == [True, False]
    assert (await request(run_dir, "status"))["clients"] == 0

    # Attach again, and this time stop the run from the app: x, then yes.
    decided_before = {r.exp for r in rows(run_dir) if r.exp}
    remote = RemoteEngine(run_dir)
    history = await remote.connect()
    app = AttachedApp(remote, replay=history, log_dir=run_dir / "logs", machine_sampler=lambda: ["cpu (test)"])
    async with app.run_test(size=SIZE) as pilot:
        assert decided_before <= {r.exp for r in app.view.rows}  # the whole history, replayed
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await until(pilot, lambda: app.view.stopped is not None, what="the run's end, seen by the app")
        assert app.view.stopped.reason == "stopped by the user"
        await pilot.press("q")  # nothing left running: q leaves at once
        await until(pilot, lambda: not app.is_running, what="the app to leave")
    await remote.close()
    assert [e.reason for e in events(run_dir, ev.RunStopped)] == ["stopped by the user"]


async def test_two_viewers_see_the_same_events_and_a_veto_acts_once(detached) -> None:
    run_dir = await detached(sleep=60.0)
    first, second = RemoteEngine(run_dir), RemoteEngine(run_dir)
    seen_first: list[ev.Event] = []
    seen_second: list[ev.Event] = []
    history_first = await first.connect()
    history_second = await second.connect()
    first.subscribe(seen_first.append)
    second.subscribe(seen_second.append)
    try:
        await wait_for(lambda: running_exp(run_dir) == 1, what="exp 1 running")
        # Both press veto on the same experiment at the same moment.
        answers = await asyncio.gather(first.call("veto", exp=1), second.call("veto", exp=1))
        assert sorted(answers) == [False, True]

        def decision(seen: list[ev.Event]) -> list[ev.Decision]:
            return [e for e in seen if isinstance(e, ev.Decision) and e.exp == 1]

        await wait_for(lambda: decision(seen_first) and decision(seen_second), what="both viewers see the veto")
        assert [d.to_dict() for d in decision(seen_first)] == [d.to_dict() for d in decision(seen_second)]
        assert [d.status for d in decision(seen_first)] == ["veto"]
        assert [(r.exp, r.status) for r in rows(run_dir) if r.exp == 1] == [(1, "veto")]
        finished = [e for e in events(run_dir, ev.ExperimentFinished) if e.exp == 1]
        assert [f.outcome for f in finished] == [ev.OUTCOME_VETOED]

        # History plus live stream is the whole run, with nothing doubled or missing,
        # for both viewers alike.
        await wait_for(lambda: running_exp(run_dir) == 2, what="exp 2 running")

        def whole_run_seen() -> bool:
            # Each viewer's history and live events together are exactly what
            # is on disk: a doubled or missing event never matches.
            on_disk = [e.to_dict() for e in events(run_dir)]
            return all([e.to_dict() for e in history] + [e.to_dict() for e in seen if e.persist] == on_disk
                       for history, seen in ((history_first, seen_first), (history_second, seen_second)))

        await wait_for(whole_run_seen, what="both viewers to have seen every event on disk, once")

        # The handle's own veto (what the app's key calls) of a decided
        # experiment: sent, refused by the engine, shown as a notice.
        assert second.veto(1) is True
        await wait_for(lambda: any(isinstance(e, ev.Notice) and "nothing to act on" in e.message
                                   for e in seen_second), what="the refusal notice")
        assert [(r.exp, r.status) for r in rows(run_dir) if r.exp == 1] == [(1, "veto")]

        # Either viewer can stop the run; both see it end, as an end and not as a lost connection.
        await first.call("stop", now=True)
        for seen in (seen_first, seen_second):
            await wait_for(lambda: any(isinstance(e, ev.RunStopped) for e in seen), what="the run's end")
            assert not any(isinstance(e, ev.Notice) and "lost the connection" in e.message for e in seen)
    finally:
        await first.close()
        await second.close()


async def test_sigkill_of_an_attached_app_leaves_the_engine_running(detached) -> None:
    run_dir = await detached(sleep=0.3)
    # The real `ar-tui attach` in a terminal of its own.
    master, slave = pty.openpty()
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="120", LINES="40")
    app = subprocess.Popen([*ar_tui_command(), "attach", str(run_dir)], stdin=slave, stdout=slave, stderr=slave,
                           env=env, start_new_session=True)
    os.close(slave)
    os.set_blocking(master, False)

    def drain() -> None:
        # The app's screen output must go somewhere, or it blocks on the terminal.
        try:
            while os.read(master, 65536):
                pass
        except (BlockingIOError, OSError):
            pass

    try:
        async def attached() -> bool:
            drain()
            return (await status(run_dir))["clients"] == 1

        await wait_for(attached, what="the app to attach", interval=0.2)
        app.send_signal(signal.SIGKILL)
        app.wait(10)
        decided = len(rows(run_dir))

        async def dropped() -> bool:
            return (await status(run_dir))["clients"] == 0

        await wait_for(dropped, what="the engine to notice the dead viewer", interval=0.2)
        await wait_for(lambda: len(rows(run_dir)) >= decided + 2, what="two more decisions")
        assert engine_pid(run_dir) is not None
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
        os.close(master)


async def test_sighup_of_a_foreground_run_loses_nothing_and_run_resumes(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target", train=SLOW_TRAIN)
    run_dir = tmp_path / "run"
    args = [*ar_tui_command(), "run", "--headless", "--target", str(target), "--tag", "h", "--run-dir", str(run_dir),
            "--agent", "offline", "--unattended", "--baseline-runs", "1", "--lookahead", "0"]
    process = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT, env=child_env(60.0))
    output = []
    assert process.stdout is not None
    while True:
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        assert line, "".join(output)
        output.append(line)
        if line.startswith("exp 1 ") and "running" in line:
            break
    # The engine serves its socket in the foreground too.
    assert stat.S_ISSOCK(os.stat(run_dir / SOCKET_NAME).st_mode)
    process.send_signal(signal.SIGHUP)  # the SSH connection dropped
    rest, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, "".join(output) + rest.decode()
    assert [(r.exp, r.status) for r in rows(run_dir)] == [(0, "keep")]
    assert isinstance(events(run_dir)[-1], ev.RunStopped)
    assert not (run_dir / SOCKET_NAME).exists() and not (run_dir / PID_FILE).exists()
    assert not [p for p in psutil.process_iter() if _trains_in(p, run_dir)]

    code, out, err = await cli("status", run_dir)
    assert code == 0 and "stopped" in out

    # The same command resumes: experiment 1 runs again and is decided once.
    code, out, err = await cli(*args[3:], "--max-experiments", "2", sleep=0.05)
    assert code == 0, out + err
    assert "resuming run h" in out
    assert [r.exp for r in rows(run_dir)] == [0, 1, 2]
    assert len([e for e in events(run_dir, ev.ProposalReady) if e.exp == 1]) == 1
    assert any(isinstance(e, ev.Notice) and "experiment 1 was interrupted" in e.message for e in events(run_dir))
    assert [e.resumed for e in events(run_dir, ev.RunStarted)] == [False, True]


def _trains_in(process: psutil.Process, run_dir: Path) -> bool:
    try:
        return process.environ().get(RUN_MARKER_ENV) == run_marker(run_dir)
    except psutil.Error:
        return False


async def test_hostile_clients_get_errors_and_the_engine_runs_on(detached) -> None:
    run_dir = await detached(sleep=0.2)
    path = run_dir / SOCKET_NAME
    reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 24)

    async def ask(raw: bytes) -> dict:
        writer.write(raw)
        await writer.drain()
        while True:
            message = json.loads(await asyncio.wait_for(reader.readline(), 10))
            if "event" not in message:
                return message

    hostile = [
        (b"\x00\xff\xfe garbage\n", "not UTF-8"),
        (b"{not json\n", "not JSON"),
        (b"[1, 2, 3]\n", "JSON object"),
        (b'{"id": 7}\n', "missing cmd"),
        (b'{"cmd": "rm -rf /", "id": 8}\n', "unknown cmd"),
        (b'{"cmd": "veto", "exp": "1", "id": 9}\n', "exp must be int or null"),
        (b'{"cmd": "veto", "exp": true, "id": 10}\n', "exp must be int or null"),
        (b'{"cmd": "set_attended", "id": 11}\n', "needs attended"),
        (b'{"cmd": "set_attended", "attended": "yes", "id": 12}\n', "attended must be bool"),
        (b'{"cmd": "pause", "force": 1, "id": 13}\n', "takes no argument"),
        (b'{"cmd": "status", "id": {"a": 1}}\n', "id must be"),
        (b'{"cmd": "subscribe", "id": 14}\n{"cmd": "subscribe", "id": 15}\n', None),
    ]
    for raw, error in hostile:
        reply = await ask(raw)
        if error is None:  # a second subscribe on the same connection
            assert reply["ok"] is True and reply["id"] == 14
            reply = await ask(b"")
            assert reply["id"] == 15 and reply["ok"] is False and "already subscribed" in reply["error"]
            continue
        assert reply["ok"] is False and error in reply["error"], (raw, reply)
    # Nothing above reached the engine: not paused, still attended=False.
    figures = await request(run_dir, "status")
    assert figures["paused"] is False and figures["attended"] is False

    # An endless line is cut off with an error, and the connection closed.
    writer.write(b"x" * (MAX_REQUEST_BYTES + 10))
    await writer.drain()
    reply = await ask(b"")
    assert reply["ok"] is False and "longer than" in reply["error"]
    await asyncio.wait_for(reader.read(), 10)  # EOF
    writer.close()

    # Half a message, then gone; and a storm of connections that say nothing.
    _, half = await asyncio.open_unix_connection(str(path))
    half.write(b'{"cmd": "sto')
    await half.drain()
    half.close()
    storm = [socket.socket(socket.AF_UNIX) for _ in range(40)]
    for sock in storm:
        sock.connect(str(path))
    for sock in storm:
        sock.close()

    # The engine is alive, answers, and its run goes on.
    decided = len(rows(run_dir))
    await wait_for(lambda: len(rows(run_dir)) >= decided + 2, what="two more decisions")
    figures = await request(run_dir, "status")
    assert figures["live"] is True and figures["clients"] == 0  # the viewer cut off above is gone
    with pytest.raises(RemoteError, match="unknown cmd"):
        await request(run_dir, "explode")


async def test_socket_is_owner_only_a_crashed_engine_is_detected_and_resumed(detached) -> None:
    run_dir = await detached(sleep=0.3)
    pid = engine_pid(run_dir)
    mode = os.stat(run_dir / SOCKET_NAME).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    # Nothing listens on a network port.
    assert [c for c in psutil.Process(pid).net_connections(kind="inet")] == []
    # A custom --run-dir registered itself, so `ls` finds it.
    code, out, err = await cli("ls")
    assert code == 0 and str(run_dir.resolve()) in out and "d " in out

    # The engine crashes: its socket and pid file stay behind.
    await wait_for(lambda: (running_exp(run_dir) or 0) >= 1, what="an experiment running")
    os.kill(pid, signal.SIGKILL)
    psutil.Process(pid).wait(15) if psutil.pid_exists(pid) else None
    assert (run_dir / SOCKET_NAME).exists() and (run_dir / PID_FILE).exists()

    code, out, refusal = await cli("attach", run_dir)
    assert code == 1
    # The run remembers how it was started: --run-dir is all its resume command needs.
    assert "no engine is running" in refusal and f"ar-tui run --run-dir {run_dir.resolve()}\n" in refusal
    assert not (run_dir / SOCKET_NAME).exists() and not (run_dir / PID_FILE).exists()
    figures = await status(run_dir)
    assert figures["live"] is False and figures["state"] == "dead"

    # The command it offers resumes the run (here in the background again).
    decided = len(rows(run_dir))
    resume = next(line.split("ar-tui ", 1)[1] for line in refusal.splitlines() if "ar-tui run " in line).split()
    code, out, err = await cli(*resume, "--detach", sleep=0.3)
    assert code == 0, out + err
    resumed_pid = engine_pid(run_dir)
    assert resumed_pid not in (None, pid)
    await wait_for(lambda: len(rows(run_dir)) >= decided + 1, what="a decision after resuming")
    assert [e.resumed for e in events(run_dir, ev.RunStarted)] == [False, True]

    # `stop` asks for a clean stop and, with --wait, returns once the engine is gone.
    code, out, err = await cli("stop", run_dir, "--wait")
    assert code == 0, err
    assert not psutil.pid_exists(resumed_pid) or psutil.Process(resumed_pid).status() == psutil.STATUS_ZOMBIE
    assert not (run_dir / SOCKET_NAME).exists() and not (run_dir / PID_FILE).exists()
    assert events(run_dir)[-1].reason == "stopped by the user"
    exps = [r.exp for r in rows(run_dir)]
    assert exps == list(range(len(exps)))  # nothing doubled or lost across the crash
    code, out, err = await cli("status", run_dir)
    assert code == 0 and "stopped" in out


CHATTY_TRAIN = textwrap.dedent(
    """\
    LR = 0.5
    for step in range(10000):
        print(f"step {step} of a run that floods its output, loss {LR:.3f}")
    print("---")
    print(f"val_bpb: {(LR - 0.3) ** 2 + 1.0:.6f}")
    """
)


async def test_a_viewer_that_never_reads_does_not_hold_up_the_engine(tmp_path: Path) -> None:
    from ar_tui.agents.scripted import ScriptedProposer, ScriptStep
    from ar_tui.core.engine import Engine, EngineOptions

    run_dir = tmp_path / "run"
    options = EngineOptions(target_dir=make_target(tmp_path / "target", train=CHATTY_TRAIN), tag="c", run_dir=run_dir,
                            attended=False, lookahead=0, baseline_runs=1, max_experiments=1, write_report=False)
    engine = Engine(options, ScriptedProposer([ScriptStep("LR 0.5 -> 0.4", "LR = 0.5", "LR = 0.4")]),
                    services=[control_service])
    log_lines: list[ev.LogLine] = []
    engine.subscribe(lambda e: log_lines.append(e) if isinstance(e, ev.LogLine) else None)
    run = asyncio.create_task(engine.run())
    await wait_for(lambda: (run_dir / SOCKET_NAME).exists(), what="the socket")
    # A small stream limit: asyncio stops reading from the socket once 2x
    # this much is buffered, so the test really does not read.
    reader, writer = await asyncio.open_unix_connection(str(run_dir / SOCKET_NAME), limit=16 * 1024)
    writer.write(b'{"cmd": "subscribe", "id": 1}\n')
    await writer.drain()
    # The viewer reads nothing while the engine floods it, and the engine
    # still runs the baseline and the experiment and decides it.
    await wait_for(lambda: any(r.exp == 1 for r in rows(run_dir)), timeout=120, what="exp 1 decided")
    received = await asyncio.wait_for(reader.read(), 60)
    stopped = await asyncio.wait_for(run, 60)
    assert stopped.reason == "max experiments (1) reached"
    messages = [json.loads(line) for line in received.splitlines()]
    kinds = [m["event"]["kind"] for m in messages if "event" in m]
    # Training output was dropped for this viewer, and it was told so; every
    # other event reached it, ending with the run's end.
    assert 0 < kinds.count("log") < len(log_lines)
    assert any(m["event"]["kind"] == "notice" and "were not sent" in m["event"]["message"]
               for m in messages if "event" in m)
    assert kinds[-1] == "run_stopped"
    # One decision for the baseline, one for the experiment.
    assert kinds.count("decision") == 2
    writer.close()


async def test_without_a_run_dir_status_covers_every_live_run_and_stop_asks_which(detached) -> None:
    first, second = await asyncio.gather(detached("alpha", 0.3), detached("beta", 0.3))
    code, out, err = await cli("status")
    assert code == 0, err
    lines = out.splitlines()
    assert sorted(line.split()[0] for line in lines) == ["alpha", "beta"]
    assert all("best val_bpb" in line or "0 done" in line for line in lines)
    # Stopping a run nobody named would be a guess: refused, with the choices.
    code, out, err = await cli("stop")
    assert code == 1 and "2 live runs" in err and str(first.resolve()) in err and str(second.resolve()) in err
    assert engine_pid(first) is not None and engine_pid(second) is not None


async def test_a_run_dir_longer_than_a_socket_address_still_gets_its_socket(tmp_path: Path, monkeypatch) -> None:
    from ar_tui.agents.scripted import ScriptedProposer, ScriptStep
    from ar_tui.core.engine import Engine, EngineOptions

    run_dir = tmp_path / ("a-very-long-directory-name-" * 4) / "run"
    assert len(str(run_dir / SOCKET_NAME)) > 108  # AF_UNIX's limit on Linux
    monkeypatch.setenv("DETACH_SLEEP", "60")
    options = EngineOptions(target_dir=make_target(tmp_path / "target", train=SLOW_TRAIN), tag="long",
                            run_dir=run_dir, attended=False, lookahead=0, baseline_runs=1, max_experiments=1,
                            write_report=False)
    engine = Engine(options, ScriptedProposer([ScriptStep("LR 0.5 -> 0.4", "LR = 0.5", "LR = 0.4")]),
                    services=[control_service])
    run = asyncio.create_task(engine.run())
    await wait_for(lambda: running_exp(run_dir) == 1, what="exp 1 running")
    figures = await request(run_dir, "status")
    assert figures["live"] is True and figures["slots"][0]["exp"] == 1
    assert await request(run_dir, "veto", exp=1) is True
    stopped = await asyncio.wait_for(run, 60)
    assert [(r.exp, r.status) for r in rows(run_dir)] == [(0, "keep"), (1, "veto")]
    assert stopped.reason == "max experiments (1) reached"
    assert not (run_dir / SOCKET_NAME).exists()
