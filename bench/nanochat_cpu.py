"""Benchmark of the nanochat target on this machine: tokens/s and val_bpb of the
default train.py at several time budgets and seeds, with the plain nanoGPT
yardstick for comparison. Prints a markdown table of what it measured.

    python bench/nanochat_cpu.py                         # 10/30/60 s x 3 seeds, + yardstick at 60 s
    python bench/nanochat_cpu.py --budgets 10 --seeds 1 --no-yardstick   # a quick check

Each run is a real child process (`python train.py` in a scratch copy of the
target, the seed given in AR_SEED as the harness gives it). The val_bpb shown is the one
train.py prints; the trusted evaluator agrees with it to 1e-4 (tests/nanochat).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NANOCHAT = REPO / "nanochat"


def final_block(stdout: str) -> dict[str, float]:
    lines = stdout.replace("\r", "\n").splitlines()
    if "---" not in lines:
        raise RuntimeError(f"run printed no final block:\n{stdout[-1500:]}")
    block = lines[len(lines) - lines[::-1].index("---") :]
    values = {}
    for line in block:
        key, _, value = line.partition(":")
        try:
            values[key.strip()] = float(value)
        except ValueError:
            pass
    return values


def run(command: list[str], cwd: Path, budget: float, seed: int | None = None) -> dict[str, float]:
    env = dict(os.environ, AR_TIME_BUDGET=str(budget), PYTHONUNBUFFERED="1")
    if seed is not None:
        env["AR_SEED"] = str(seed)
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-1500:]}{result.stderr[-1500:]}")
    return final_block(result.stdout)


def train_with_seed(scratch: Path, seed: int, budget: float) -> dict[str, float]:
    target = scratch / f"seed{seed}"
    if not target.exists():
        target.mkdir()
        shutil.copy(NANOCHAT / "prepare.py", target)
        shutil.copy(NANOCHAT / "train.py", target)
    return run([sys.executable, "train.py"], target, budget, seed)


def summary(values: list[float], digits: int) -> str:
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[10, 30, 60])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per budget (1..N)")
    parser.add_argument("--no-yardstick", action="store_true", help="skip the nanoGPT baseline")
    args = parser.parse_args()

    prepared = subprocess.run([sys.executable, "prepare.py"], cwd=NANOCHAT, capture_output=True, text=True)
    if prepared.returncode != 0:
        print(prepared.stderr, file=sys.stderr)
        return 1
    sys.path.insert(0, str(NANOCHAT))
    from prepare import dataset_dir

    meta = json.loads((dataset_dir() / "meta.json").read_text())
    seeds = list(range(1, args.seeds + 1))
    rows = []
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="nanochat-bench-") as scratch:
        for budget in args.budgets:
            results = [train_with_seed(Path(scratch), seed, budget) for seed in seeds]
            for seed, r in zip(seeds, results, strict=True):
                print(f"train.py  budget {budget:.0f}s seed {seed}: val_bpb {r['val_bpb']:.4f}, "
                      f"{r['tokens_per_sec']:.0f} tok/s, {r['num_steps']:.0f} steps", file=sys.stderr, flush=True)
            rows.append(("train.py (default)", budget, results))
        if not args.no_yardstick:
            budget = max(args.budgets)
            results = []
            for seed in seeds:
                r = run([sys.executable, str(REPO / "bench" / "yardstick_nanogpt.py"), "--seed", str(seed)], REPO, budget)
                print(f"yardstick budget {budget:.0f}s seed {seed}: val_bpb {r['val_bpb']:.4f}, "
                      f"{r['tokens_per_sec']:.0f} tok/s", file=sys.stderr, flush=True)
                results.append(r)
            rows.append(("nanoGPT yardstick (w128 d2 ctx128)", budget, results))

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU") if Path("/proc/cpuinfo").exists() else "unknown CPU"
    print(f"\nCorpus: {meta['source']}: {meta['bytes']:,} bytes, {meta['train_tokens']:,} train tokens, "
          f"{meta['val_tokens']:,} validation tokens ({meta['val_bytes']:,} bytes), vocabulary {meta['vocab_size']}.")
    print(f"Machine: {cpu}, {os.cpu_count()} logical CPUs, load average at the end {os.getloadavg()[0]:.1f}. "
          f"{len(seeds)} seed(s) per row, mean ± standard deviation; benchmark took {time.time() - started:.0f} s.\n")
    print("| model | budget (s) | val_bpb | tokens/s | steps | params (M) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, budget, results in rows:
        print(f"| {name} | {budget:.0f} | {summary([r['val_bpb'] for r in results], 4)} | "
              f"{summary([r['tokens_per_sec'] for r in results], 0)} | "
              f"{statistics.fmean(r['num_steps'] for r in results):.0f} | {results[0]['num_params_M']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
