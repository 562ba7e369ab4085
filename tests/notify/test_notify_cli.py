"""`--notify`, `[notify]` and `ar-tui notify --test` through real `ar-tui`
child processes and a local HTTP sink: the URLs (secrets) reach the sink and
nowhere else: not the output, not the run dir, not a training run's
environment."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from ar_tui.core.records.rundir import RunDir
from tests.conftest import ROOT, TINY_TRAIN, make_target
from tests.notify.sink import Sink
from tests.notify.test_notify_night import free_port

SECRET = "hook-s3cr3t"
# The tiny target, telling whether the --notify URLs reached its environment.
TELLING_TRAIN = TINY_TRAIN.replace("import os, sys, time",
                                   "import os, sys, time\nprint('notify urls seen:', 'AR_TUI_NOTIFY' in os.environ)")


async def ar_tui(*args: object, env: dict[str, str] | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ar_tui.cli", *map(str, args), cwd=ROOT, env=env or dict(os.environ),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), 240)
    return process.returncode, output.decode()


async def test_notify_test_sends_one_message_to_each_destination_and_says_which_arrived() -> None:
    sink = await Sink().start()
    try:
        code, output = await ar_tui("notify", "--test", "--notify", f"json://127.0.0.1:{sink.port}/{SECRET}",
                                    "--notify", f"ntfy://127.0.0.1:{free_port()}/{SECRET}")
    finally:
        await sink.stop()
    assert code == 1, output
    assert "json #1: delivered (1 try)" in output and "ntfy #2: NOT delivered (2 tries)" in output
    assert SECRET not in output
    [received] = sink.received
    assert received.path == f"/{SECRET}" and received.json()["title"] == "ar-tui: test message"


async def test_a_url_apprise_cannot_send_to_is_one_line_without_the_url(tmp_path: Path) -> None:
    code, output = await ar_tui("run", "--headless", "--target", make_target(tmp_path / "t"), "--run-dir",
                                tmp_path / "run", "--agent", "offline", "--notify", f"nosuch://{SECRET}@host/x")
    assert code == 2 and output.strip().splitlines() == [
        "ar-tui: notify: destination 1 (nosuch://...) is not a URL Apprise can send to; "
        "see https://github.com/caronc/apprise/wiki for the forms"]
    assert not RunDir(tmp_path / "run").ledger.exists()


async def test_flag_env_and_config_urls_each_get_the_night_and_are_stored_nowhere(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target", train=TELLING_TRAIN)
    sink = await Sink().start()
    config = tmp_path / "config.toml"
    config.write_text(f'[notify]\nurls = ["json://127.0.0.1:{sink.port}/config/{SECRET}"]\ncrash_streak = 2\n')
    # AR_TUI_NOTIFY is how a detached engine is handed the --notify URLs.
    env = dict(os.environ, AR_TUI_CONFIG=str(config), AR_TUI_NOTIFY=f"json://127.0.0.1:{sink.port}/env/{SECRET}")
    run_dir = tmp_path / "run"
    try:
        code, output = await ar_tui("run", "--headless", "--target", target, "--run-dir", run_dir, "--agent", "offline",
                                    "--unattended", "--baseline-runs", "1", "--lookahead", "0", "--max-experiments", "1",
                                    "--notify", f"json://127.0.0.1:{sink.port}/flag/{SECRET}", env=env)
    finally:
        await sink.stop()
    assert code == 0, output
    ends = sorted(r.path for r in sink.received if r.json()["title"].endswith("the night is over"))
    assert ends == [f"/config/{SECRET}", f"/env/{SECRET}", f"/flag/{SECRET}"]
    assert SECRET not in output
    for path in RunDir(run_dir).path.rglob("*"):
        if path.is_file() and "worktrees" not in path.parts:
            assert SECRET not in path.read_text(errors="replace"), path
    assert "notify urls seen: False" in RunDir(run_dir).log(0).read_text()
