"""Make tests/core/data/stored_run.tar.gz: a run stopped mid-experiment by
the ar-tui of its day, for test_stored_run.py to resume with today's.

Run it with the old code first on the path, e.g.
    PYTHONPATH=/path/to/old/checkout python tests/core/data/make_stored_run.py
It starts `ar-tui run --headless` on a tiny target under PREFIX, waits until
experiment 3 is running (experiment 4 is then prepared and waiting), sends
SIGTERM (the clean stop: both stay in flight), and packs PREFIX's `target/`
(with its git repository) and `run/` into the archive (less the report,
which is remade from the run dir, and git's sample hooks).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

PREFIX = Path("/tmp/ar-tui-stored-run")  # the test moves it: every copy of this path is rewritten
ARCHIVE = Path(__file__).with_name("stored_run.tar.gz")

# Deterministic for a seed (AR_SEED), with a little seed noise so the noise
# model has samples to restore.
TRAIN = """\
import os, random, time
LR = 0.5  # learning rate
WIDTH = 64  # model width
time.sleep(float(os.environ.get("TINY_SLEEP", "0.05")))
noise = random.Random(int(os.environ.get("AR_SEED", "0"))).gauss(0.0, 0.002)
print("step 1/1 loss 1.0", flush=True)
print("---")
print(f"val_bpb: {(LR - 0.3) ** 2 + 1.0 + (WIDTH - 64) ** 2 * 1e-4 + noise:.6f}")
print("peak_vram_mb: 2048.0")
"""
COMMAND = ["run", "--headless", "--tag", "stored", "--agent", "offline", "--unattended", "--baseline-runs", "2",
           "--lookahead", "1", "--max-experiments", "6", "--sandbox", "off"]


def git(cwd: Path, *args: str) -> None:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def started(run_dir: Path, exp: int) -> bool:
    try:
        lines = (run_dir / "events.jsonl").read_text().splitlines()
    except OSError:
        return False
    return any(json.loads(line).get("kind") == "experiment_started" and json.loads(line).get("exp") == exp
               for line in lines if line.strip())


def main() -> None:
    shutil.rmtree(PREFIX, ignore_errors=True)
    target, run_dir = PREFIX / "target", PREFIX / "run"
    target.mkdir(parents=True)
    git(target, "init", "-q", "-b", "main")
    (target / "train.py").write_text(TRAIN)
    (target / "prepare.py").write_text("# fixed data preparation (protected)\nDATA = 42\n")
    git(target, "add", "-A")
    git(target, "commit", "-q", "-m", "initial")
    env = dict(os.environ, TINY_SLEEP="1.0", AR_TUI_HOME=str(PREFIX / "home"))
    engine = subprocess.Popen([sys.executable, "-m", "ar_tui.cli", *COMMAND, "--target", str(target),
                               "--run-dir", str(run_dir)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not started(run_dir, 3):
        if time.monotonic() > deadline or engine.poll() is not None:
            engine.kill()
            sys.exit(f"experiment 3 never started:\n{engine.communicate()[0]}")
        time.sleep(0.05)
    engine.send_signal(signal.SIGTERM)
    out, _ = engine.communicate(timeout=60)
    print(out)
    def kept(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        # The report is remade from the run dir; git's sample hooks are git's.
        dropped = info.name in ("run/report.md", "run/progress.png") or info.name.startswith("target/.git/hooks/")
        return None if dropped else info

    with tarfile.open(ARCHIVE, "w:gz") as archive:
        archive.add(target, "target", filter=kept)
        archive.add(run_dir, "run", filter=kept)
    print(f"wrote {ARCHIVE} ({ARCHIVE.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
