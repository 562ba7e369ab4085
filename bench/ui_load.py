"""How the app holds up while a training run floods its output.

The app runs for real in a child process on a pseudo-terminal (200x60, as over
SSH), driving the real engine on a tiny target whose experiment prints
20,000 lines a second for about 10 seconds. Meanwhile this process plays the
terminal: it drains the screen output, types `p` every half second (pause,
resume, pause, ...) and samples the child's memory.

Key-press-to-effect latency: from the moment the key is written to the
terminal to the timestamp of the engine's `paused` event in events.jsonl,
i.e. the key went through the terminal, Textual's input parsing, the app's
binding and the engine. Both clocks are this machine's wall clock.

    python bench/ui_load.py [--seconds 10] [--rate 20000]
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# LOUD seconds of output at RATE lines a second, in batches every 10 ms; the
# baseline is quiet, the experiment (LOUD > 0) floods.
FLOOD_TRAIN = textwrap.dedent(
    """\
    import sys, time
    LOUD = 0
    RATE = {rate}
    out = sys.stdout
    start = time.time()
    n = 0
    while time.time() - start < LOUD:
        due = int((time.time() - start) * RATE)
        while n < due:
            n += 1
            out.write(f"step {{n:08d}} | loss 2.345678 | lr 0.000400 | tok/s 123456\\n")
        out.flush()
        time.sleep(0.01)
    print(f"printed {{n}} lines", flush=True)
    print("---")
    print(f"val_bpb: {{1.0 - 0.001 * (LOUD > 0):.6f}}")
    """
)


def git(cwd: Path, *args: str) -> None:
    env = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="b",
               GIT_COMMITTER_EMAIL="b@b")
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def make_target(root: Path, rate: int) -> None:
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    (root / "train.py").write_text(FLOOD_TRAIN.format(rate=rate))
    (root / "prepare.py").write_text("DATA = 1\n")
    (root / "autoresearch.toml").write_text("[target]\ntime_budget = 60\ntimeout = 300\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "flood target")


def child(target: Path, run_dir: Path, seconds: float) -> int:
    """The app, as `ar-tui run` starts it, with a scripted proposer."""
    from ar_tui.agents.scripted import ScriptedProposer, ScriptStep
    from ar_tui.core.engine import Engine, EngineOptions
    from ar_tui.ui.app import run_app

    proposer = ScriptedProposer([ScriptStep("flood the log", "LOUD = 0", f"LOUD = {seconds}")])
    options = EngineOptions(target_dir=target, tag="bench", run_dir=run_dir, attended=False, lookahead=0,
                            baseline_runs=1, max_experiments=1, write_report=False)
    profile_to = os.environ.get("AR_TUI_BENCH_PROFILE")
    if not profile_to:
        return run_app(Engine(options, proposer))
    import cProfile

    profiler = cProfile.Profile()
    code = profiler.runcall(run_app, Engine(options, proposer))
    profiler.dump_stats(profile_to)
    return code


def read_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=20_000)
    parser.add_argument("--child", nargs=2, metavar=("TARGET", "RUN_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(Path(args.child[0]), Path(args.child[1]), args.seconds)

    work = Path(tempfile.mkdtemp(prefix="ar-tui-bench-"))
    target, run_dir = work / "target", work / "run"
    make_target(target, args.rate)
    import psutil

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 200, 0, 0))
    env = dict(os.environ, TERM="xterm-256color", AR_TUI_HOME=str(work / "home"))
    proc = subprocess.Popen(
        [sys.executable, __file__, "--seconds", str(args.seconds), "--child", str(target), str(run_dir)],
        stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True, cwd=ROOT,
    )
    os.close(slave)
    screen_bytes = [0]
    tail = bytearray()

    def drain() -> None:  # the terminal: read everything the app draws
        while True:
            try:
                ready, _, _ = select.select([master], [], [], 0.5)
                if ready:
                    data = os.read(master, 1 << 16)
                    if not data:
                        return
                    screen_bytes[0] += len(data)
                    tail.extend(data)
                    del tail[:-4096]
            except OSError:
                return

    threading.Thread(target=drain, daemon=True).start()
    process = psutil.Process(proc.pid)
    events_path = run_dir / "events.jsonl"

    def flood_started() -> dict | None:
        for event in read_events(events_path):
            if event["kind"] == "experiment_started" and event["exp"] == 1:
                return event
        return None

    deadline = time.time() + 120
    while flood_started() is None:
        if proc.poll() is not None or time.time() > deadline:
            print("the app ended before the flood started; last output:\n", tail.decode(errors="replace"))
            return 1
        time.sleep(0.05)
    flood_start = time.time()
    cpu_start = process.cpu_times()
    presses: list[float] = []
    rss: list[tuple[float, int]] = []
    next_press = flood_start + 0.5
    while time.time() < flood_start + args.seconds - 0.3 and proc.poll() is None:
        now = time.time()
        rss.append((now - flood_start, process.memory_info().rss))
        if now >= next_press:
            presses.append(time.time())
            os.write(master, b"p")
            next_press = now + 0.5
        time.sleep(0.05)
    cpu_end = process.cpu_times()
    flood_wall = time.time() - flood_start
    app_cpu = (cpu_end.user + cpu_end.system - cpu_start.user - cpu_start.system) / flood_wall
    load = os.getloadavg()[0]
    if len(presses) % 2:  # leave the engine resumed, so the run can finish
        time.sleep(0.3)
        presses.append(time.time())
        os.write(master, b"p")
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        print("the app did not exit after the run; last output:\n", tail.decode(errors="replace"))
        return 1

    paused = [e for e in read_events(events_path) if e["kind"] == "paused"]
    latencies = []
    for pressed, event in zip(presses, paused):
        latencies.append((event["ts"] - pressed) * 1000)
    log = run_dir / "logs" / "1.log"
    printed = sum(1 for _ in log.open(errors="replace")) if log.exists() else 0
    finished = next((e for e in read_events(events_path) if e["kind"] == "experiment_finished" and e["exp"] == 1), {})
    seconds = finished.get("seconds") or args.seconds
    rss_mb = [value / 2**20 for _, value in rss]
    third = max(1, len(rss_mb) // 3)

    print(f"ar-tui UI under load: {printed:,} lines in {seconds:.1f} s = {printed / seconds:,.0f} lines/s "
          f"(asked {args.rate:,}/s), 200x60 pty, {os.cpu_count()} CPUs")
    print(f"key presses: {len(presses)} sent, {len(paused)} took effect (paused/resumed events)")
    if latencies:
        print(f"key-press-to-effect latency ms: p50 {statistics.median(latencies):.1f}  "
              f"p95 {percentile(latencies, 0.95):.1f}  max {max(latencies):.1f}")
    print(f"app RSS MB: start {rss_mb[0]:.1f}  first third max {max(rss_mb[:third]):.1f}  "
          f"last third max {max(rss_mb[-third:]):.1f}  overall max {max(rss_mb):.1f}")
    print(f"app CPU during the flood: {100 * app_cpu:.0f}% of one core (the engine, its runner and the UI "
          f"share one event loop); machine load average {load:.1f} on {os.cpu_count()} CPUs")
    print(f"screen output: {screen_bytes[0] / 2**20:.1f} MiB over the run; app exit code {proc.returncode}")
    ok = len(paused) == len(presses) and proc.returncode == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
