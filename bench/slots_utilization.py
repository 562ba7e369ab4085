"""How much of the wall time is each slot training? (issue: keep the machine training)

A scripted proposer that thinks for a fixed time and a target that trains for a
fixed time, over N experiments, for lookahead 0 and 1 and for 1 and 2 slots.
Prints a markdown table of what it measured.

    python bench/slots_utilization.py [--think 3] [--train 10] [--experiments 20]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ar_tui.agents.scripted import ScriptedProposer, ScriptStep  # noqa: E402
from ar_tui.core import events as ev  # noqa: E402
from ar_tui.core.engine import Engine, EngineOptions  # noqa: E402

TRAIN = "import time\nLR = 0.5\nTRAIN_S = {train}\ntime.sleep(TRAIN_S)\nprint(f'val_bpb: {{1 + (LR - 0.3) ** 2:.6f}}')\n"


def make_target(root: Path, train_s: float) -> Path:
    root.mkdir(parents=True)
    (root / "train.py").write_text(TRAIN.format(train=train_s))
    (root / "prepare.py").write_text("# fixed\n")
    env = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b",
           "PATH": "/usr/bin:/bin"}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True)
    return root


async def measure(slots: int, lookahead: int, think_s: float, train_s: float, experiments: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        target = make_target(Path(tmp) / "target", train_s)
        # Every step is worse than the best, so each applies on the unchanged best.
        steps = [ScriptStep(f"LR 0.5 -> {0.9 + i / 1000:.3f}", "LR = 0.5", f"LR = {0.9 + i / 1000:.3f}")
                 for i in range(experiments)]
        options = EngineOptions(target_dir=target, tag="bench", run_dir=Path(tmp) / "run", attended=False,
                                devices=["cpu"] * slots, lookahead=lookahead, baseline_runs=slots,
                                max_experiments=experiments, write_report=False)
        engine = Engine(options, ScriptedProposer(steps, think_s=think_s))
        starts: dict[tuple[int, int], float] = {}
        busy = [0.0] * slots
        baseline_done: list[float] = []

        def observe(event: ev.Event) -> None:
            if isinstance(event, ev.BaselineReady):
                baseline_done.append(time.monotonic())
            elif isinstance(event, ev.ExperimentStarted) and event.exp > 0:
                starts[(event.exp, event.slot)] = time.monotonic()
            elif isinstance(event, ev.ExperimentFinished) and event.exp > 0:
                busy[event.slot] += time.monotonic() - starts.pop((event.exp, event.slot))

        engine.subscribe(observe)
        began = time.monotonic()
        await engine.run()
        ended = time.monotonic()
        # The window is the experiments' part of the run: from the end of the
        # baseline (every slot busy until then) to the end of the last experiment.
        window = ended - baseline_done[0]
        return {"slots": slots, "lookahead": lookahead, "wall_s": ended - began, "window_s": window,
                "busy": [b / window for b in busy]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--think", type=float, default=3.0)
    parser.add_argument("--train", type=float, default=10.0)
    parser.add_argument("--experiments", type=int, default=20)
    args = parser.parse_args()
    print(f"think {args.think:g} s, train {args.train:g} s, {args.experiments} experiments per row\n")
    print("| slots | lookahead | wall time (s) | training share per slot |")
    print("|---|---|---|---|")
    for slots in (1, 2):
        for lookahead in (0, 1):
            result = asyncio.run(measure(slots, lookahead, args.think, args.train, args.experiments))
            shares = ", ".join(f"{share:.1%}" for share in result["busy"])
            print(f"| {slots} | {lookahead} | {result['wall_s']:.1f} | {shares} |", flush=True)


if __name__ == "__main__":
    main()
