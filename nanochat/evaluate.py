"""The trusted metric: `python -m nanochat.evaluate CHECKPOINT [--train-py PATH]`.

Runs in its own process after train.py has finished. It takes the data, the
tokenizer and evaluate_bpb from the installed nanochat.prepare (never the run's
copy), builds the model with the run's `build_model(config)`, loads the weights
from the checkpoint, refuses a model whose logits at position t depend on
tokens after t or that does far better on the validation text than on
training text, and prints `val_bpb: X`. That line is what the harness records;
whatever train.py printed is shown but not trusted.

The run's code executes inside this process, so the guards below stop edits
that game the metric through the train.py contract (a printed number, a
shorter evaluation, attention to the future, a swapped loss function, a model
that has seen the validation text). They are not a sandbox against code
written to attack this process.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
import time
import types
from pathlib import Path

# As in train.py: idle OpenMP threads sleep instead of spinning on a busy machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from nanochat import prepare as trusted  # noqa: E402

CAUSALITY_TOLERANCE = 1e-3  # max |logit change| at positions <= t; float32 noise is ~1e-6
CAUSALITY_PROBES = 3  # cut points tried, each at a random position chosen now
# A model that does this much better on the validation text than on training
# text has seen the validation text: honest models do the opposite.
MEMORISATION_MARGIN = 0.3  # bits per byte


class EvaluationError(Exception):
    """The run cannot be scored; the message is one line meant for a person."""


def choose_device(requested: str | None) -> str:
    if requested:
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


# --- guards against the run's code swapping what the metric is computed with

_GUARDED_NAMESPACES = {
    "torch": torch,
    "torch.Tensor": torch.Tensor,
    "torch.nn.functional": F,
    "math": math,
    "nanochat.prepare": trusted,
}


def _snapshot() -> dict[tuple[str, str], int]:
    seen = {}
    for label, namespace in _GUARDED_NAMESPACES.items():
        for name, value in list(vars(namespace).items()):
            if callable(value) and not isinstance(value, type) and not isinstance(value, types.ModuleType):
                seen[(label, name)] = id(value)
    this = sys.modules[__name__]
    for name, value in list(vars(this).items()):
        if callable(value):
            seen[(__name__, name)] = id(value)
    return seen


def check_untampered(before: dict[tuple[str, str], int]) -> None:
    namespaces = dict(_GUARDED_NAMESPACES, **{__name__: sys.modules[__name__]})
    for (label, name), identity in before.items():
        if id(vars(namespaces[label]).get(name)) != identity:
            raise EvaluationError(f"train.py replaced {label}.{name}; the metric cannot be trusted")


# --- loading the run


def load_train_module(path: Path) -> types.ModuleType:
    if not path.is_file():
        raise EvaluationError(f"{path}: no such file")
    # train.py does `from prepare import ...`: hand it the trusted module, not the run's copy.
    sys.modules["prepare"] = trusted
    spec = importlib.util.spec_from_file_location("nanochat_run_train", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SystemExit as exc:
        raise EvaluationError(f"{path} exited while being imported (code {exc.code}); keep training under `if __name__ == \"__main__\":`") from None
    except Exception as exc:
        raise EvaluationError(f"{path} failed to import: {type(exc).__name__}: {exc}") from None
    if not callable(getattr(module, "build_model", None)):
        raise EvaluationError(f"{path} has no build_model(config) function")
    return module


def load_model(train: types.ModuleType, checkpoint: Path, dataset: trusted.Dataset, device: str) -> torch.nn.Module:
    if not checkpoint.is_file():
        raise EvaluationError(f"{checkpoint}: no such checkpoint (did train.py save to AR_CHECKPOINT?)")
    try:
        # weights_only: a checkpoint is data; it must not be able to run code.
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise EvaluationError(f"{checkpoint}: not a readable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict) or not isinstance(saved.get("state_dict"), dict):
        raise EvaluationError(f"{checkpoint}: expected a dict with `config` and `state_dict`")
    trained_on = saved.get("dataset")
    if trained_on is not None and trained_on != dataset.name:
        raise EvaluationError(f"the model was trained on dataset {trained_on}, but the prepared dataset is {dataset.name}")
    try:
        model = train.build_model(dict(saved["config"]))
        model.load_state_dict(saved["state_dict"], strict=True)
    except Exception as exc:
        raise EvaluationError(f"cannot rebuild the model from {checkpoint}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    if not isinstance(model, torch.nn.Module):
        raise EvaluationError(f"build_model returned {type(model).__name__}, not a torch.nn.Module")
    return model.to(device)


# --- the causality probe


@torch.no_grad()
def check_causal(model: torch.nn.Module, val_tokens: torch.Tensor, vocab_size: int, device: str) -> float:
    """Largest change of logits at positions <= t when the tokens after t change.

    Real validation windows in the evaluation's own batch shape, and cut points
    drawn fresh from the OS, so a model cannot tell a probe from the real thing.
    """
    inputs, _ = trusted.validation_windows(val_tokens)
    rng = torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little"))
    batch = min(trusted.EVAL_BATCH_SIZE, inputs.size(0))
    seq_len = inputs.size(1)
    worst = 0.0
    model.eval()
    for _ in range(CAUSALITY_PROBES):
        rows = torch.randperm(inputs.size(0), generator=rng)[:batch]
        x = inputs[rows]
        cut = int(torch.randint(0, seq_len - 1, (1,), generator=rng))
        changed = x.clone()
        donors = inputs[torch.randperm(inputs.size(0), generator=rng)[:batch]]
        changed[:, cut + 1 :] = donors[:, cut + 1 :]
        changed[:, cut + 1] = (x[:, cut + 1] + 1) % vocab_size  # at least the next token differs
        original = model(x.to(device)).float()
        altered = model(changed.to(device)).float()
        if original.shape[:2] != x.shape or altered.shape != original.shape:
            raise EvaluationError(f"model(idx) returned shape {tuple(original.shape)} for input {tuple(x.shape)}")
        if not torch.isfinite(original).all():
            raise EvaluationError("the model's logits contain NaN or infinity")
        worst = max(worst, float((original[:, : cut + 1] - altered[:, : cut + 1]).abs().max()))
    return worst


# --- the memorisation check


def reference_tokens(dataset: trusted.Dataset) -> torch.Tensor:
    """A pinned slice of training text as long as the validation split, from the middle of the corpus."""
    length = dataset.val_tokens.numel()
    start = (dataset.train_tokens.numel() - length) // 2
    return dataset.train_tokens[start : start + length]


# --- the command


def evaluate(checkpoint: Path, train_py: Path, device: str) -> dict[str, float]:
    started = time.time()
    if device == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))  # the same threads as train.py's default
    dataset = trusted.load_dataset()
    before = _snapshot()
    train = load_train_module(train_py)
    model = load_model(train, checkpoint, dataset, device)
    check_untampered(before)
    lookahead = check_causal(model, dataset.val_tokens, dataset.vocab_size, device)
    if lookahead > CAUSALITY_TOLERANCE:
        raise EvaluationError(
            f"the model looks ahead: its logits at position t change by up to {lookahead:.3g} when tokens after t change"
        )
    try:
        val_bpb = trusted.evaluate_bpb(model, dataset.val_tokens, dataset.token_bytes, device)
        train_bpb = trusted.evaluate_bpb(model, reference_tokens(dataset), dataset.token_bytes, device)
    except ValueError as exc:
        raise EvaluationError(str(exc)) from None
    check_untampered(before)
    if not math.isfinite(val_bpb):
        raise EvaluationError(f"val_bpb is {val_bpb}")
    if val_bpb < train_bpb - MEMORISATION_MARGIN:
        raise EvaluationError(
            f"the model scores {val_bpb:.3f} bits per byte on the validation text but {train_bpb:.3f} on training "
            "text: it has seen the validation split"
        )
    return {"val_bpb": val_bpb, "train_bpb": train_bpb, "causal_max_diff": lookahead, "eval_seconds": time.time() - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nanochat.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="the file train.py saved to AR_CHECKPOINT")
    parser.add_argument("--train-py", type=Path, default=Path("train.py"), help="the run's train.py (default ./train.py)")
    parser.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    args = parser.parse_args(argv)

    # Anything the run's code prints goes to stderr; only this module writes
    # the lines the harness reads, so a printed fake `val_bpb:` cannot land there.
    sys.stdout.flush()
    result_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        result = evaluate(args.checkpoint, args.train_py, choose_device(args.device))
    except (EvaluationError, trusted.PrepareError) as exc:
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return 1
    result_out.write(
        f"val_bpb: {result['val_bpb']:.6f}\n"
        f"train_bpb: {result['train_bpb']:.6f}\n"
        f"causal_max_diff: {result['causal_max_diff']:.2e}\n"
        f"eval_seconds: {result['eval_seconds']:.1f}\n"
    )
    result_out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
