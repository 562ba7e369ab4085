"""Regenerate the docs' screenshots from a real tiny session.

The real engine and the offline proposer run a tiny target in a temporary git
repository (a train.py whose metric depends on its constants, printing
progress for about four seconds a run). The app, at 200x60, is photographed mid-run,
with the veto question open, with the help open, and at 80x24 (the log, the
metric tab with the progress chart, the lineage tree). Then `ar-tui serve`
serves the finished run and a headless Chromium photographs the browser tab
(`browser.png`; needs Debian's `chromium`). Run it after any change to the UI:

    python scripts/screenshots.py            # writes docs/screenshots/*.svg and browser.png
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ar_tui.agents.offline import OfflineProposer  # noqa: E402
from ar_tui.core import events as ev  # noqa: E402
from ar_tui.core.engine import Engine, EngineOptions  # noqa: E402
from ar_tui.ui.app import ArTuiApp  # noqa: E402

TRAIN = textwrap.dedent(
    """\
    # A stand-in for a training script: the metric is a smooth function of
    # the constants, the output looks like a training run's.
    import math, sys, time

    MATRIX_LR = 0.04  # learning rate of the matrix parameters
    WARMUP_RATIO = 0.1  # share of the budget spent warming up
    DEPTH = 8  # transformer layers
    WEIGHT_DECAY = 0.2  # decoupled weight decay

    loss_floor = 0.95 + (math.log(MATRIX_LR / 0.06)) ** 2 * 0.2 + (WARMUP_RATIO - 0.05) ** 2 + (DEPTH - 10) ** 2 * 0.002
    loss_floor += (WEIGHT_DECAY - 0.1) ** 2 * 0.5
    steps = 60
    for step in range(1, steps + 1):
        loss = loss_floor + 2.5 * math.exp(-step / 12)
        # Like nanochat: a progress line rewritten in place, kept every 10 steps.
        sys.stdout.write(f"\\rstep {step:05d}/{steps} ({100 * step // steps}%) | loss {loss:.4f} | "
                         f"lr {MATRIX_LR:.4f} | dt 33ms | tok/sec 48,210")
        if step % 10 == 0:
            sys.stdout.write("\\n")
        sys.stdout.flush()
        time.sleep(0.06)
    print()
    print("---")
    print(f"val_bpb: {loss_floor:.6f}")
    print("peak_vram_mb: 2211.3")
    """
)


def git(cwd: Path, *args: str) -> None:
    env = dict(os.environ, GIT_AUTHOR_NAME="s", GIT_AUTHOR_EMAIL="s@s", GIT_COMMITTER_NAME="s",
               GIT_COMMITTER_EMAIL="s@s")
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def make_target(root: Path) -> Path:
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    (root / "train.py").write_text(TRAIN)
    (root / "prepare.py").write_text("# data and evaluation (fixed)\n")
    (root / "autoresearch.toml").write_text("[target]\ntime_budget = 5\ntimeout = 60\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "tiny target")
    return root


async def wait_for(pilot, predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the session did not get there in time")
        await pilot.pause(0.05)


async def drawn(pilot) -> None:
    """Until what the app has ingested is on screen: three redraws from now."""
    target = pilot.app.redraws + 3
    await wait_for(pilot, lambda: pilot.app.redraws >= target)
    await pilot.wait_for_scheduled_animations()


async def browser_screenshot(run_dir: Path, out: Path, status_colour: tuple[int, int, int]) -> None:
    """`ar-tui serve` on the run, photographed by a real headless Chromium
    once the app's status line is in the page."""
    import re

    from tests.web.chromium import Browser, share_of, status_band

    serve = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ar_tui.cli", "serve", str(run_dir), "--port", "0", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        line = (await asyncio.wait_for(serve.stdout.readline(), 60)).decode()
        url = re.search(r"(http://\S+/\?token=\S+)", line).group(1)
        async with Browser(1600, 1000) as browser:
            await browser.navigate(url)
            await browser.until(lambda: browser.evaluate("document.body.classList.contains('-first-byte')"),
                                "the app in the page")
            shown = None

            async def settled() -> bool:
                # The status line drawn, and two screenshots alike: the
                # replayed history is on screen.
                nonlocal shown
                png = await browser.screenshot()
                same, shown = png == shown, png
                return same and share_of(png, status_colour, status_band(browser.width)) > 0.3

            await browser.until(settled, "the page to settle")
            (out / "browser.png").write_bytes(shown)
    finally:
        serve.terminate()
        await serve.wait()


async def main(out: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="ar-tui-shots-"))
    os.environ["AR_TUI_HOME"] = str(work / "home")
    target = make_target(work / "nanochat-tiny")
    options = EngineOptions(target_dir=target, tag="nov28", run_dir=work / "run", attended=False, lookahead=1,
                            baseline_runs=1, max_experiments=12, write_report=False)
    engine = Engine(options, OfflineProposer(seed=3))
    app = ArTuiApp(engine, run_engine=engine.run)
    out.mkdir(exist_ok=True)

    def decided() -> int:
        return len(app.view.rows)

    def running_for(seconds: float) -> bool:
        slot = app.view.slots[0] if app.view.slots else None
        return (slot is not None and slot.state == ev.STATE_RUNNING and slot.started_at is not None
                and time.time() - slot.started_at > seconds)

    async with app.run_test(size=(200, 60)) as pilot:
        await wait_for(pilot, lambda: decided() >= 5 and running_for(1.0))
        await drawn(pilot)
        app.save_screenshot("main-200x60.svg", path=str(out))
        await pilot.press("v")
        await drawn(pilot)
        app.save_screenshot("veto-modal.svg", path=str(out))
        await pilot.press("n")
        await pilot.press("question_mark")
        await drawn(pilot)
        app.save_screenshot("help.svg", path=str(out))
        await pilot.press("escape")
        await pilot.resize_terminal(80, 24)
        await wait_for(pilot, lambda: running_for(2.5))
        await pilot.press("2")  # the training log tab
        await drawn(pilot)
        app.save_screenshot("log-80x24.svg", path=str(out))
        await pilot.press("4")  # the metric tab
        await drawn(pilot)
        app.save_screenshot("metric-80x24.svg", path=str(out))
        await pilot.press("7")  # the lineage tree
        await drawn(pilot)
        app.save_screenshot("tree-80x24.svg", path=str(out))
        status_colour = app.status_line.styles.background.rgb
        await pilot.press("q", "y")
        await wait_for(pilot, lambda: not app.is_running)
    await browser_screenshot(work / "run", out, status_colour)
    for name in sorted(p.name for p in [*out.glob("*.svg"), out / "browser.png"]):
        print(f"wrote {out / name}")


if __name__ == "__main__":
    asyncio.run(main(ROOT / "docs" / "screenshots"))
