"""train.py and the trusted evaluator, as the engine runs them: real child
processes in a target directory laid out like the engine's worktree."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.nanochat.conftest import final_block, make_target, nanochat_env, run

FINAL_KEYS = {"val_bpb", "training_seconds", "total_seconds", "peak_memory_mb", "num_steps", "num_params_M", "tokens_per_sec"}


def train(target: Path, cache: Path, budget: float, train_py: str = "train.py"):
    env = nanochat_env(cache, AR_TIME_BUDGET=str(budget), AR_CHECKPOINT=str(target / "model.pt"))
    return run([sys.executable, train_py], cwd=target, env=env)


def evaluate(target: Path, cache: Path, *extra: str):
    return run([sys.executable, "-m", "nanochat.evaluate", "model.pt", *extra], cwd=target, env=nanochat_env(cache))


def recorded_values(stdout: str) -> list[float]:
    return [float(v) for v in re.findall(r"^\s*val_bpb\s*[:=]\s*(\S+)", stdout, re.MULTILINE)]


def edited(target: Path, name: str, *replacements: tuple[str, str], prefix: str = "", suffix: str = "") -> Path:
    """A copy of the target's train.py with the edits an agent might make."""
    source = (target / "train.py").read_text()
    for pattern, replacement in replacements:
        source, count = re.subn(pattern, replacement, source, flags=re.MULTILINE)
        assert count, f"{pattern!r} not found in train.py"
    if prefix:  # module-level code, right after train.py's own imports
        source, count = re.subn(r"^(from prepare import .*\n)", lambda m: m.group(1) + prefix, source, count=1, flags=re.MULTILINE)
        assert count, "train.py has no `from prepare import` line"
    path = target / name
    path.write_text(source + suffix)
    return path


def smaller() -> list[tuple[str, str]]:
    """A tiny model and batch: many steps in a few seconds, even on a busy machine."""
    return [(r"^DEPTH = .*$", "DEPTH = 1"), (r"^WIDTH = .*$", "WIDTH = 64"), (r"^HEAD_DIM = .*$", "HEAD_DIM = 32"),
            (r"^BATCH_SIZE = .*$", "BATCH_SIZE = 4")]


@pytest.fixture(scope="module")
def honest_run(prepared_cache: Path, tmp_path_factory: pytest.TempPathFactory):
    """The default train.py, five seconds of training, then the trusted evaluator."""
    target = make_target(tmp_path_factory.mktemp("honest") / "target")
    trained = train(target, prepared_cache, budget=5)
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-2000:]
    evaluated = evaluate(target, prepared_cache)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    return target, trained.stdout, evaluated.stdout


def test_five_second_run_prints_progress_and_a_final_block(honest_run):
    _, stdout, _ = honest_run
    block = final_block(stdout)

    assert FINAL_KEYS <= block.keys()
    assert float(block["training_seconds"]) >= 5.0
    assert float(block["total_seconds"]) >= float(block["training_seconds"])
    assert int(block["num_steps"]) >= 1 and float(block["tokens_per_sec"]) > 0
    assert float(block["peak_memory_mb"]) > 0
    assert re.search(r"^step +\d+ \| loss [\d.]+ \| +\d+ tok/s \| +[\d.]+% \| +[\d.]+s left", stdout, re.MULTILINE)


def test_evaluator_rebuilds_the_saved_model_and_agrees_with_train_py(honest_run):
    target, stdout, evaluated = honest_run

    assert (target / "model.pt").is_file()
    printed = float(final_block(stdout)["val_bpb"])
    (recorded,) = recorded_values(evaluated)
    assert recorded == pytest.approx(printed, abs=1e-4)
    assert re.search(r"^train_bpb: [\d.]+$", evaluated, re.MULTILINE)


def test_printed_fake_metric_never_reaches_the_recorded_number(honest_run, prepared_cache: Path):
    target, _, honest = honest_run
    fake = 'print("val_bpb: 0.000001")\n'
    cheat = edited(target, "cheat_print.py", (r'print\(f"val_bpb: .*$', 'print("val_bpb:          0.000001")'), prefix=fake)

    evaluated = evaluate(target, prepared_cache, "--train-py", str(cheat))

    assert evaluated.returncode == 0, evaluated.stderr
    assert recorded_values(evaluated.stdout) == recorded_values(honest)
    assert "0.000001" in evaluated.stderr  # shown to a person, not recorded


@pytest.mark.parametrize(
    "patch, replaced",
    [
        ("import prepare\nprepare.evaluate_bpb = lambda *a, **k: 0.01\n", "evaluate_bpb"),
        (
            "import prepare\n_windows = prepare.validation_windows\n"
            "prepare.validation_windows = lambda tokens, seq_len=256: tuple(t[:1] for t in _windows(tokens, seq_len))\n",
            "validation_windows",
        ),
        ("import torch.nn.functional\ntorch.nn.functional.cross_entropy = lambda *a, **k: torch.zeros(a[0].shape[0])\n", "cross_entropy"),
    ],
    ids=["fake-evaluate", "shortened-evaluation", "swapped-loss"],
)
def test_train_py_that_tampers_with_the_metric_is_refused(honest_run, prepared_cache: Path, patch: str, replaced: str):
    target, _, _ = honest_run
    cheat = edited(target, f"cheat_{replaced}.py", prefix=patch)

    evaluated = evaluate(target, prepared_cache, "--train-py", str(cheat))

    assert evaluated.returncode == 1
    assert recorded_values(evaluated.stdout) == []
    assert "replaced" in evaluated.stderr and replaced in evaluated.stderr
    assert "Traceback" not in evaluated.stderr


MEMORISER = """
_honest_build_model = build_model


def build_model(config):
    # Remembers which token follows each pair of tokens in the validation text.
    model = _honest_build_model(config)
    val = load_dataset().val_tokens.tolist()
    table = {(a, b): c for a, b, c in zip(val, val[1:], val[2:])}
    honest_forward = model.forward

    def forward(idx):
        logits = honest_forward(idx)
        boost = torch.zeros_like(logits)
        for row, tokens in enumerate(idx.tolist()):
            for t in range(1, len(tokens)):
                following = table.get((tokens[t - 1], tokens[t]))
                if following is not None:
                    boost[row, t, following] = 30.0
        return logits + boost

    model.forward = forward
    return model
"""


def test_model_that_has_memorised_the_validation_text_is_refused(honest_run, prepared_cache: Path):
    target, _, _ = honest_run
    cheat = edited(target, "cheat_memorise.py", suffix=MEMORISER)

    evaluated = evaluate(target, prepared_cache, "--train-py", str(cheat))

    assert evaluated.returncode == 1, evaluated.stdout
    assert recorded_values(evaluated.stdout) == []
    assert "has seen the validation split" in evaluated.stderr.strip().splitlines()[-1]


def test_model_that_attends_to_future_tokens_is_refused(prepared_cache: Path, target: Path):
    peeking = edited(target, "train.py", ("is_causal=True", "is_causal=False"), *smaller())

    trained = train(target, prepared_cache, budget=4, train_py=peeking.name)
    assert trained.returncode == 0, trained.stderr[-2000:]
    # The output projections start at zero, so the first steps cannot show any look-ahead.
    assert int(final_block(trained.stdout)["num_steps"]) >= 3
    evaluated = evaluate(target, prepared_cache)

    assert evaluated.returncode == 1
    assert recorded_values(evaluated.stdout) == []
    assert "looks ahead" in evaluated.stderr.strip().splitlines()[-1]


def test_diverging_loss_stops_training_with_a_clear_line(prepared_cache: Path, target: Path):
    exploding = edited(target, "train.py", (r"^EMBED_LR = .*$", 'EMBED_LR = float("nan")'), *smaller())

    trained = train(target, prepared_cache, budget=60, train_py=exploding.name)

    assert trained.returncode == 1
    assert "FAIL: training diverged" in trained.stdout
    assert "---" not in trained.stdout.splitlines()
    assert not (target / "model.pt").exists()


def test_evaluator_errors_are_one_line(prepared_cache: Path, target: Path):
    missing = evaluate(target, prepared_cache)
    (target / "model.pt").write_bytes(b"not a checkpoint")
    garbage = evaluate(target, prepared_cache)

    for result, words in ((missing, "no such checkpoint"), (garbage, "not a readable checkpoint")):
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("evaluate: error: ") and words in result.stderr
