"""Real repositories shaped like real research projects, built in the tests.

- `char_gpt`: a character-level language model (a bigram model in numpy,
  seconds on a CPU) whose `prepare.py` writes `data/shakespeare_char/
  {train,val}.bin` and `meta.json` into a git-ignored `data/`, and whose
  `train.py` prints `step N: train loss ..., val loss ...` at every evaluation;
- `scripts_repo`: the entry point in `scripts/`, the data next to a tracked
  preparation script (nanoGPT's layout: `data/tinytext/prepare.py` tracked,
  `*.bin` ignored), and `eval/loss=...` lines;
- `uv_project`: a uv project whose entry point is a `[project.scripts]` entry;
- `example_repo`: a bundled example with its `autoresearch.toml` removed.

No downloads: every text is made here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import ROOT, git

# A few public-domain lines; the corpus is drawn from them with a fixed seed.
LINES = [
    "To be, or not to be, that is the question:",
    "Whether 'tis nobler in the mind to suffer",
    "The slings and arrows of outrageous fortune,",
    "Or to take arms against a sea of troubles",
    "And by opposing end them. To die: to sleep;",
    "Now is the winter of our discontent",
    "Made glorious summer by this sun of York;",
    "All the world's a stage, and all the men and women merely players.",
]

CHAR_PREPARE = textwrap.dedent(
    f'''\
    """Prepare the character-level dataset: data/shakespeare_char/{{train,val}}.bin and meta.json.

    Run once, before training: python prepare.py
    """
    import json
    import os

    import numpy as np

    LINES = {LINES!r}
    OUT = os.path.join("data", "shakespeare_char")


    def main():
        rng = np.random.default_rng(0)
        text = "\\n".join(LINES[i] for i in rng.integers(0, len(LINES), size=4000))
        chars = sorted(set(text))
        stoi = {{c: i for i, c in enumerate(chars)}}
        ids = np.array([stoi[c] for c in text], dtype=np.uint16)
        n = int(0.9 * len(ids))
        os.makedirs(OUT, exist_ok=True)
        ids[:n].tofile(os.path.join(OUT, "train.bin"))
        ids[n:].tofile(os.path.join(OUT, "val.bin"))
        with open(os.path.join(OUT, "meta.json"), "w") as f:
            json.dump({{"vocab_size": len(chars), "itos": chars}}, f)
        print(f"length of dataset in characters: {{len(text):,}}")
        print(f"vocab size: {{len(chars)}}")
        print(f"train has {{n:,}} tokens")
        print(f"val has {{len(ids) - n:,}} tokens")


    if __name__ == "__main__":
        main()
    '''
)

BIGRAM_CORE = textwrap.dedent(
    '''\
    def batch(data, rng, size):
        ix = rng.integers(0, len(data) - 1, size=size)
        return data[ix].astype(np.int64), data[ix + 1].astype(np.int64)


    def loss_and_grad(W, x, y):
        logits = W[x]
        logits = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        rows = np.arange(len(y))
        loss = float(-np.log(probs[rows, y] + 1e-12).mean())
        probs[rows, y] -= 1.0
        return loss, probs / len(y)


    def evaluate(W, data):
        x = data[:-1][:EVAL_TOKENS].astype(np.int64)
        y = data[1:][:EVAL_TOKENS].astype(np.int64)
        return loss_and_grad(W, x, y)[0]
    '''
)

CHAR_TRAIN = textwrap.dedent(
    '''\
    """Train a character-level bigram language model on data/shakespeare_char (numpy, CPU)."""
    import json
    import os

    import numpy as np

    DATASET = "shakespeare_char"
    BATCH_SIZE = 32  # characters per step
    LEARNING_RATE = 1.0  # plain SGD on the logits table
    MAX_ITERS = 400  # optimiser steps
    EVAL_INTERVAL = 100  # steps between evaluations
    EVAL_TOKENS = 4000  # held-out characters per evaluation
    INIT_SCALE = 0.5  # std of the initial logits
    WEIGHT_DECAY = 0.001
    SEED = 1337

    data_dir = os.path.join("data", DATASET)

    '''
) + BIGRAM_CORE + textwrap.dedent(
    '''

    def main():
        with open(os.path.join(data_dir, "meta.json")) as f:
            vocab_size = json.load(f)["vocab_size"]
        train = np.memmap(os.path.join(data_dir, "train.bin"), dtype=np.uint16, mode="r")
        val = np.memmap(os.path.join(data_dir, "val.bin"), dtype=np.uint16, mode="r")
        rng = np.random.default_rng(int(os.environ.get("AR_SEED", SEED)))
        W = rng.normal(0.0, INIT_SCALE, size=(vocab_size, vocab_size))
        for step in range(MAX_ITERS + 1):
            if step % EVAL_INTERVAL == 0 or step == MAX_ITERS:
                print(f"step {step}: train loss {evaluate(W, train):.4f}, val loss {evaluate(W, val):.4f}", flush=True)
            if step == MAX_ITERS:
                break
            x, y = batch(train, rng, BATCH_SIZE)
            _, grad = loss_and_grad(W, x, y)
            np.add.at(W, x, -LEARNING_RATE * grad)
            W *= 1.0 - LEARNING_RATE * WEIGHT_DECAY


    if __name__ == "__main__":
        main()
    '''
)

SCRIPTS_TRAIN = textwrap.dedent(
    '''\
    """Bigram language model on data/tinytext; run from the repository root: python scripts/train_bigram.py"""
    import os

    import numpy as np

    BATCH_SIZE = 32
    LEARNING_RATE = 1.0
    NUM_STEPS = 300
    EVAL_EVERY = 100
    EVAL_TOKENS = 3000
    INIT_SCALE = 0.5
    VOCAB = 128  # bytes below 128

    '''
) + BIGRAM_CORE + textwrap.dedent(
    '''

    def main():
        train = np.fromfile(os.path.join("data", "tinytext", "train.bin"), dtype=np.uint8)
        val = np.fromfile(os.path.join("data", "tinytext", "val.bin"), dtype=np.uint8)
        rng = np.random.default_rng(int(os.environ.get("AR_SEED", 0)))
        W = rng.normal(0.0, INIT_SCALE, size=(VOCAB, VOCAB))
        for it in range(NUM_STEPS + 1):
            if it % EVAL_EVERY == 0:
                print(f"iter {it} | train/loss={evaluate(W, train):.4f} | eval/loss={evaluate(W, val):.4f}", flush=True)
            x, y = batch(train, rng, BATCH_SIZE)
            _, grad = loss_and_grad(W, x, y)
            np.add.at(W, x, -LEARNING_RATE * grad)


    if __name__ == "__main__":
        main()
    '''
)

SCRIPTS_PREPARE = textwrap.dedent(
    f'''\
    """Write data/tinytext/train.bin and val.bin (bytes) from a fixed corpus: python data/tinytext/prepare.py"""
    import os

    import numpy as np

    LINES = {LINES!r}
    HERE = os.path.dirname(os.path.abspath(__file__))

    rng = np.random.default_rng(1)
    text = "\\n".join(LINES[i] for i in rng.integers(0, len(LINES), size=3000)).encode("ascii")
    ids = np.frombuffer(text, dtype=np.uint8)
    n = int(0.9 * len(ids))
    ids[:n].tofile(os.path.join(HERE, "train.bin"))
    ids[n:].tofile(os.path.join(HERE, "val.bin"))
    print(f"wrote {{n}} train and {{len(ids) - n}} val bytes")
    '''
)

UV_TRAIN = textwrap.dedent(
    '''\
    """Logistic regression on a fixed synthetic problem, in plain Python."""
    import math
    import os
    import random

    LEARNING_RATE = 0.1
    EPOCHS = 20
    L2 = 0.001
    SEED = 0


    def data(n, rng):
        points = []
        for _ in range(n):
            x = [rng.gauss(0, 1) for _ in range(4)]
            points.append((x, 1 if x[0] - 0.5 * x[1] + 0.25 * x[2] > 0 else 0))
        return points


    def main():
        rng = random.Random(int(os.environ.get("AR_SEED", SEED)))
        train, test = data(400, random.Random(1)), data(200, random.Random(2))
        w = [rng.gauss(0, 0.01) for _ in range(4)]
        for epoch in range(1, EPOCHS + 1):
            for x, y in train:
                p = 1 / (1 + math.exp(-sum(wi * xi for wi, xi in zip(w, x))))
                w = [wi - LEARNING_RATE * ((p - y) * xi + L2 * wi) for wi, xi in zip(w, x)]
            right = sum((sum(wi * xi for wi, xi in zip(w, x)) > 0) == bool(y) for x, y in test)
            print(f"epoch {epoch}: test accuracy {right / len(test):.4f}", flush=True)


    if __name__ == "__main__":
        main()
    '''
)


def commit_all(root: Path, message: str = "initial") -> Path:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    return root


def char_gpt(root: Path, prepared: bool = True, train: str = CHAR_TRAIN) -> Path:
    """The char-level GPT repository; `prepared`: its data prepared, as its README says."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    (root / "README.md").write_text("# char-bigram\n\n    python prepare.py\n    python train.py\n")
    (root / ".gitignore").write_text("data/\n__pycache__/\n*.pt\n")
    (root / "prepare.py").write_text(CHAR_PREPARE)
    (root / "train.py").write_text(train)
    commit_all(root)
    if prepared:
        prepare(root, "prepare.py")
    return root


def prepare(root: Path, script: str) -> None:
    subprocess.run([sys.executable, script], cwd=root, check=True, capture_output=True, text=True, timeout=120)


def scripts_repo(root: Path) -> Path:
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    (root / ".gitignore").write_text("*.bin\n__pycache__/\n")
    (root / "scripts").mkdir()
    (root / "scripts" / "train_bigram.py").write_text(SCRIPTS_TRAIN)
    (root / "data" / "tinytext").mkdir(parents=True)
    (root / "data" / "tinytext" / "prepare.py").write_text(SCRIPTS_PREPARE)
    commit_all(root)
    prepare(root, "data/tinytext/prepare.py")
    return root


def uv_project(root: Path) -> Path:
    """A uv project (no dependencies, so `uv lock` and `uv sync` need no network)."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    (root / ".gitignore").write_text(".venv/\n__pycache__/\n")
    (root / "pyproject.toml").write_text(textwrap.dedent(
        """\
        [project]
        name = "toy"
        version = "0.1.0"
        requires-python = ">=3.10"
        dependencies = []

        [project.scripts]
        train = "toy.train:main"
        """))
    (root / "toy").mkdir()
    (root / "toy" / "__init__.py").write_text("")
    (root / "toy" / "train.py").write_text(UV_TRAIN)
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    env = dict(os.environ, UV_PYTHON=sys.executable, UV_OFFLINE="1", UV_NO_PROGRESS="1")
    subprocess.run([uv, "lock"], cwd=root, check=True, capture_output=True, env=env, timeout=120)
    subprocess.run([uv, "sync", "--frozen"], cwd=root, check=True, capture_output=True, env=env, timeout=120)
    return commit_all(root)


def example_repo(name: str, root: Path) -> Path:
    """A bundled example as its own repository, its autoresearch.toml removed."""
    source = ROOT / "examples" / name
    shutil.copytree(source, root, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "autoresearch.toml"))
    git(root, "init", "-q", "-b", "main")
    return commit_all(root)
