"""The offline proposer, driven the way the engine drives it: real files, a
real Workspace, the target run as a real child process, keep-if-better.

These are the hand-written ("classic") search's tests and the knob
discovery's; the Optuna search has its own in test_offline_optuna.py."""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import io
import random
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from ar_tui.agents.offline.knobs import (
    BETA,
    DEPTH,
    FRACTION,
    LEARNING_RATE,
    POWER_OF_TWO_BATCH,
    WEIGHT_DECAY,
    WIDTH,
    edit_for,
    find_knobs,
    format_value,
    parse_value,
    snap_part,
)
from ar_tui.agents.offline import (
    OfflineProposer,
    Search,
    describe,
    load_knobs,
    parse_description,
)
from ar_tui.core.workspace import EDITOR_TOOL_NAME
from ar_tui.core.config import TargetConfig
from ar_tui.core.events import AgentText, AgentToolCall
from ar_tui.core.proposer import ProposalContext, ProposalFailed, ResultRow
from ar_tui.core.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]


def classic(seed: int = 0) -> OfflineProposer:
    return OfflineProposer(seed, search="classic")

# A target whose metric is a known smooth bowl of its knobs (log learning
# rate, log width, depth, log batch, a ratio, a beta, weight decay) plus a tiny
# deterministic noise, with an out-of-memory crash when the model gets too big.
# The optimum is 1.0 at LEARNING_RATE=0.02, WIDTH=160, DEPTH=4, BATCH_SIZE=16,
# WARMDOWN_RATIO=0.3, ADAM_BETAS[1]=0.98, WEIGHT_DECAY=0.05.
BOWL = '''"""Synthetic target: val_bpb is a smooth function of the knobs."""
import hashlib
import math

SEED = 1337  # same code + same seed -> same metric
TIME_BUDGET = 300  # seconds
WINDOW_PATTERN = "SSSL"  # a string, not a number
USE_BIAS = False  # a boolean
LOG_INTERVAL = 10  # steps between progress lines

LEARNING_RATE = 3e-3  # learning rate
WEIGHT_DECAY = 0.1  # decoupled weight decay
ADAM_BETAS = (0.8, 0.95)  # Adam beta1, beta2
WIDTH = 64  # residual stream width
DEPTH = 2  # transformer layers
BATCH_SIZE = 2**5  # sequences per step
WARMDOWN_RATIO = 0.5  # fraction of the budget spent decaying the LR


def val_bpb():
    if BATCH_SIZE * WIDTH * DEPTH > 2**15:
        raise MemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    terms = [
        0.30 * math.log(LEARNING_RATE / 0.02) ** 2,
        0.15 * math.log2(WIDTH / 160) ** 2,
        0.02 * (DEPTH - 4) ** 2,
        0.10 * math.log2(BATCH_SIZE / 16) ** 2,
        0.20 * (WARMDOWN_RATIO - 0.3) ** 2,
        0.05 * math.log((1 - ADAM_BETAS[1]) / 0.02) ** 2,
        0.01 * math.log(WEIGHT_DECAY / 0.05) ** 2,
    ]
    knobs = repr((LEARNING_RATE, WEIGHT_DECAY, ADAM_BETAS, WIDTH, DEPTH, BATCH_SIZE, WARMDOWN_RATIO))
    noise = int(hashlib.sha256(knobs.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF * 2e-4 - 1e-4
    return 1.0 + sum(terms) + noise


if __name__ == "__main__":
    print("step 1/1")
    print("---")
    print(f"val_bpb: {val_bpb():.6f}")
'''
OPTIMUM = 1.0

# The hyperparameter block of karpathy/autoresearch's train.py, as written there.
AUTORESEARCH_KNOBS = """
# Model architecture
ASPECT_RATIO = 64       # model_dim = depth * ASPECT_RATIO
HEAD_DIM = 128          # target head dimension for attention
WINDOW_PATTERN = "SSSL" # sliding window pattern: L=full, S=half context

# Optimization
TOTAL_BATCH_SIZE = 2**19 # ~524K tokens per optimizer step
EMBEDDING_LR = 0.6      # learning rate for token embeddings (Adam)
UNEMBEDDING_LR = 0.004  # learning rate for lm_head (Adam)
MATRIX_LR = 0.04        # learning rate for matrix parameters (Muon)
SCALAR_LR = 0.5         # learning rate for per-layer scalars (Adam)
WEIGHT_DECAY = 0.2      # cautious weight decay for Muon
ADAM_BETAS = (0.8, 0.95) # Adam beta1, beta2
WARMUP_RATIO = 0.0      # fraction of time budget for LR warmup
WARMDOWN_RATIO = 0.5    # fraction of time budget for LR warmdown
FINAL_LR_FRAC = 0.0     # final LR as fraction of initial

# Model size
DEPTH = 8               # number of transformer layers
DEVICE_BATCH_SIZE = 128  # per-device batch size (reduce if OOM)
FINAL_EVAL_BATCH_SIZE = 256
STARTUP_EXCLUDE_STEPS = 1
"""


def make_target(root: Path, source: str = BOWL) -> tuple[Workspace, TargetConfig]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.py").write_text(source)
    (root / "prepare.py").write_text("LEARNING_RATE = 0.5  # protected: never a knob\n")
    (root / "notes.py").write_text("WIDTH = 12  # not editable\n")
    return Workspace(root, ["train.py"], ["prepare.py"]), TargetConfig(root=root)


async def run_child(root: Path, config: TargetConfig) -> tuple[float | None, str]:
    """Run train.py as a real child process and read its metric line."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "train.py",
        cwd=root,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = (await process.communicate())[0].decode()
    match = config.metric_regex.search(output)
    if process.returncode != 0 or not match:
        return None, output[-2000:]
    return float(match.group(1)), output


async def run_in_process(root: Path, config: TargetConfig) -> tuple[float | None, str]:
    """The same script, executed in this process: many times faster than a
    child, for comparisons that need hundreds of runs."""
    source = (root / "train.py").read_text()
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(source, "train.py", "exec"), {"__name__": "__main__"})
    except Exception as exc:  # the script crashed: that is a result, like a non-zero exit
        return None, f"{out.getvalue()}Traceback (most recent call last):\n{type(exc).__name__}: {exc}\n"
    match = config.metric_regex.search(out.getvalue())
    return (float(match.group(1)) if match else None), out.getvalue()


@dataclass
class Loop:
    history: list[ResultRow]
    best: float
    events: list
    contexts: list[ProposalContext]
    files_before: list[str]  # train.py as each proposal found it
    files_after: list[str]  # ... and as it left it


async def drive(
    proposer,
    workspace: Workspace,
    config: TargetConfig,
    steps: int,
    evaluate=run_child,
    earlier: list[ResultRow] = (),
    tail: str = "",
    run_dir: Path | None = None,
) -> Loop:
    """What the engine does, reduced to its decisions: propose, run, keep if
    better, otherwise restore the file. `earlier` rows (discarded or crashed
    experiments) follow the baseline in the history."""
    train = workspace.root / "train.py"
    baseline, _ = await evaluate(workspace.root, config)
    assert baseline is not None
    loop = Loop([ResultRow(0, "0000000", baseline, "keep", "baseline"), *earlier], baseline, [], [], [], [])
    for exp in range(len(loop.history), len(loop.history) + steps):
        before = train.read_text()
        ctx = ProposalContext(
            exp=exp,
            target=config,
            best_metric=loop.best,
            baseline_metric=baseline,
            history=list(loop.history),
            last_failure_tail=tail,
            run_dir=run_dir,
        )
        loop.contexts.append(ctx)
        try:
            proposal = await proposer.propose(ctx, workspace, loop.events.append)
        except ProposalFailed:
            break
        loop.files_before.append(before)
        loop.files_after.append(train.read_text())
        metric, output = await evaluate(workspace.root, config)
        if metric is None:
            status, tail = "crash", output
        elif metric < loop.best:
            status, loop.best = "keep", metric
        else:
            status = "discard"
        if status != "keep":
            train.write_text(before)
        diff = "".join(difflib.unified_diff(before.splitlines(True), loop.files_after[-1].splitlines(True)))
        loop.history.append(ResultRow(exp, f"{exp:07x}", metric, status, proposal.description,
                                      diff=diff, cost_usd=getattr(proposal, "cost_usd", 0.0),
                                      proposer=getattr(proposal, "proposer", "")))
    return loop


class RandomSingleKnob:
    """The comparison: one random knob, a random direction, the same first
    step and rounding the offline search uses, never the same value twice
    from the same file."""

    name = "random"
    model = None

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.tried: set[tuple[str, str]] = set()

    async def propose(self, ctx, workspace, emit):
        source = workspace.read("train.py")
        knobs = load_knobs(workspace)
        for _ in range(50):
            knob = self.rng.choice(knobs)
            kind = knob.kind
            sign = self.rng.choice((1, -1))
            if not kind.movable(knob.value):
                continue
            value = snap_part(knob, 0, kind.from_u(kind.to_u(knob.value) + sign * kind.step), knobs)
            if not kind.allows(value) or value == knob.value or (source, f"{knob.name}={value}") in self.tried:
                continue
            self.tried.add((source, f"{knob.name}={value}"))
            text = format_value(value, knob.parts[0].text, kind.integer)
            workspace.str_replace("train.py", *edit_for(source, knob, [text]))
            return type("P", (), {"description": describe([(knob.name, knob.text, text)])})()
        raise ProposalFailed("nothing new")


def regret(metric: float) -> float:
    return metric - OPTIMUM


# ---------------------------------------------------------------------------
# Knobs


def test_finds_hyperparameters_and_skips_seeds_strings_booleans_and_logging():
    knobs = {k.name: k for k in find_knobs("train.py", BOWL)}
    assert set(knobs) == {
        "LEARNING_RATE",
        "WEIGHT_DECAY",
        "ADAM_BETAS[0]",
        "ADAM_BETAS[1]",
        "WIDTH",
        "DEPTH",
        "BATCH_SIZE",
        "WARMDOWN_RATIO",
    }
    assert knobs["LEARNING_RATE"].kind is LEARNING_RATE
    assert knobs["WEIGHT_DECAY"].kind is WEIGHT_DECAY
    assert knobs["ADAM_BETAS[1]"].kind is BETA and knobs["ADAM_BETAS[1]"].value == 0.95
    assert knobs["WIDTH"].kind is WIDTH and knobs["DEPTH"].kind is DEPTH
    assert knobs["BATCH_SIZE"].kind is POWER_OF_TWO_BATCH and knobs["BATCH_SIZE"].text == "2**5"
    assert knobs["WARMDOWN_RATIO"].kind is FRACTION
    assert knobs["LEARNING_RATE"].comment == "learning rate"


def test_reads_karpathy_autoresearch_constants():
    knobs = {k.name: k for k in find_knobs("train.py", AUTORESEARCH_KNOBS)}
    assert set(knobs) == {
        "ASPECT_RATIO",
        "HEAD_DIM",
        "TOTAL_BATCH_SIZE",
        "EMBEDDING_LR",
        "UNEMBEDDING_LR",
        "MATRIX_LR",
        "SCALAR_LR",
        "WEIGHT_DECAY",
        "ADAM_BETAS[0]",
        "ADAM_BETAS[1]",
        "WARMUP_RATIO",
        "WARMDOWN_RATIO",
        "FINAL_LR_FRAC",
        "DEPTH",
        "DEVICE_BATCH_SIZE",
    }
    assert knobs["TOTAL_BATCH_SIZE"].value == 2**19
    assert knobs["FINAL_LR_FRAC"].kind is FRACTION  # a fraction, though its name says LR
    assert knobs["MATRIX_LR"].kind is LEARNING_RATE
    # A power written as a power stays one, and the rest of the line is kept.
    old, new = edit_for(AUTORESEARCH_KNOBS, knobs["TOTAL_BATCH_SIZE"], [format_value(2**18, "2**19", True)])
    assert old == "TOTAL_BATCH_SIZE = 2**19 # ~524K tokens per optimizer step"
    assert new == "TOTAL_BATCH_SIZE = 2**18 # ~524K tokens per optimizer step"


def test_values_keep_the_scripts_style():
    assert format_value(6e-4, "3e-4", False) == "6e-4"
    assert format_value(0.06, "0.04", False) == "0.06"
    assert format_value(1.0, "0.5", False) == "1.0"  # a float stays a float
    assert format_value(96, "64", True) == "96"
    assert format_value(2**20, "2**19", True) == "2**20"
    assert format_value(48, "2**5", True) == "48"  # not a power of two: written plainly
    assert parse_value("2**19") == 2**19 and parse_value("3e-4") == 3e-4 and parse_value("10_000") == 10000


def test_a_multiple_that_reaches_one_stays_a_whole_number():
    # nanochat's MLP_RATIO = 4 taken down to 1 by a keep: read again, it is
    # still a width multiple (whole numbers), not a fraction in [0, 1]; as a
    # fraction, every later proposal wrote a float into nn.Linear's size.
    comment = "  # hidden width of the MLP, in multiples of WIDTH\n"
    kinds = {value: find_knobs("train.py", f"MLP_RATIO = {value}{comment}")[0].kind
             for value in ("4", "1", "1.0", "0.5")}
    assert kinds["4"] is kinds["1"] and kinds["1"].integer
    assert not kinds["1.0"].integer and not kinds["0.5"].integer  # written as fractions, read as fractions
    assert find_knobs("train.py", "DROPOUT = 0  # dropout\n")[0].kind.label == "ratio / fraction"


def test_width_stays_a_multiple_of_the_head_size_and_head_size_divides_width():
    source = "WIDTH = 192  # residual width\nHEAD_DIM = 48  # per head\n"
    knobs = {k.name: k for k in find_knobs("train.py", source)}
    listed = list(knobs.values())
    for target in (130, 250, 300, 400):
        assert snap_part(knobs["WIDTH"], 0, target, listed) % 48 == 0
    for target in (30, 40, 70, 100):
        assert 192 % snap_part(knobs["HEAD_DIM"], 0, target, listed) == 0


# ---------------------------------------------------------------------------
# Search


async def test_search_gets_close_to_the_optimum_running_the_target_as_a_child(tmp_path):
    workspace, config = make_target(tmp_path)
    untouched = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != "train.py"}
    loop = await drive(classic(seed=0), workspace, config, steps=30)
    start = regret(loop.history[0].metric)
    # Only the editable file changed; nothing was created beside it.
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != "train.py"} == untouched
    assert len(loop.history) == 31
    assert regret(loop.best) < 0.1 * start, [(r.description, r.status, r.metric) for r in loop.history]
    # The file really holds what was kept, and the child agrees with the best.
    metric, _ = await run_child(tmp_path, config)
    assert metric == pytest.approx(loop.best, abs=1e-6)
    # The agent pane hears the reasoning and sees every edit as a tool call.
    texts = [e for e in loop.events if isinstance(e, AgentText)]
    tools = [e for e in loop.events if isinstance(e, AgentToolCall)]
    assert {e.exp for e in texts} == set(range(1, 31))
    assert len(tools) >= 30 and all(t.name == EDITOR_TOOL_NAME and not t.is_error for t in tools)


async def test_search_beats_random_single_knob_changes(tmp_path):
    seeds = range(7)
    ours, random_walk = [], []
    for seed in seeds:
        workspace, config = make_target(tmp_path / f"ours{seed}")
        ours.append(regret((await drive(classic(seed), workspace, config, 30, run_in_process)).best))
        workspace, config = make_target(tmp_path / f"random{seed}")
        random_walk.append(regret((await drive(RandomSingleKnob(seed), workspace, config, 30, run_in_process)).best))
    print(
        f"regret after 30 experiments: offline median {statistics.median(ours):.4f} {sorted(ours)}; "
        f"random single-knob median {statistics.median(random_walk):.4f} {sorted(random_walk)}"
    )
    assert statistics.median(ours) < 0.5 * statistics.median(random_walk)
    assert max(ours) < statistics.median(random_walk)


def knob_values(source: str) -> dict[str, tuple]:
    return {k.name: tuple(p.value for p in k.parts) for k in find_knobs("train.py", source)}


async def test_descriptions_say_exactly_what_changed_and_parse_back(tmp_path):
    workspace, config = make_target(tmp_path)
    loop = await drive(classic(seed=1), workspace, config, 40, run_in_process)
    assert len(loop.files_after) == 40
    for row, before, after in zip(loop.history[1:], loop.files_before, loop.files_after):
        changes = parse_description(row.description)
        assert changes, row.description
        old_values, new_values = knob_values(before), knob_values(after)
        moved = {name for name in old_values if old_values[name] != new_values[name]}
        assert moved == {c.name for c in changes}, row.description
        for change in changes:
            assert old_values[change.name] == pytest.approx(change.old)
            assert new_values[change.name] == pytest.approx(change.new)
        assert parse_description("; ".join(c.text for c in changes)) == changes
        compile(after, "train.py", "exec")


async def test_never_proposes_the_same_experiment_twice(tmp_path):
    workspace, config = make_target(tmp_path)
    loop = await drive(classic(seed=2), workspace, config, 80, run_in_process)
    experiments = list(zip(loop.files_before, loop.files_after))
    assert len(experiments) >= 60
    assert all(before != after for before, after in experiments)
    assert len(set(experiments)) == len(experiments)
    # Some proposals move two knobs at once; most move one.
    pairs = sum("; " in row.description for row in loop.history[1:])
    assert 0 < pairs < len(experiments) / 2
    # With more experiments it keeps closing in.
    assert regret(loop.best) < 0.005


async def test_a_fresh_instance_rebuilds_the_same_search_from_history(tmp_path):
    """A resumed run has only the history: proposals must come out the same."""

    class FreshEachCall:
        name, model = "offline", None

        async def propose(self, ctx, workspace, emit):
            return await classic(seed=3).propose(ctx, workspace, emit)

    workspace, config = make_target(tmp_path / "kept")
    kept = await drive(classic(seed=3), workspace, config, 25, run_in_process)
    workspace, config = make_target(tmp_path / "fresh")
    fresh = await drive(FreshEachCall(), workspace, config, 25, run_in_process)
    assert [r.description for r in fresh.history] == [r.description for r in kept.history]
    assert fresh.files_after == kept.files_after
    # And the same seed on the same history gives the same next proposal,
    # while the history alone (not the instance) decides it.
    ctx = kept.contexts[-1]
    results = []
    for name in ("a", "b"):
        copy, _ = make_target(tmp_path / name, kept.files_before[-1])
        results.append((await classic(seed=3).propose(ctx, copy, lambda e: None)).description)
    assert results[0] == results[1] == kept.history[-1].description


async def test_running_experiments_are_not_proposed_again(tmp_path):
    workspace, config = make_target(tmp_path / "a")
    ctx = ProposalContext(
        exp=1,
        target=config,
        best_metric=2.5,
        baseline_metric=2.5,
        history=[ResultRow(0, "0000000", 2.5, "keep", "baseline")],
    )
    first = (await classic().propose(ctx, workspace, lambda e: None)).description
    ctx.unseen = [(1, first)]
    ctx.exp = 2
    workspace, _ = make_target(tmp_path / "b")
    second = (await classic().propose(ctx, workspace, lambda e: None)).description
    assert second != first
    # The knob already moving waits: the next proposal moves another.
    assert {c.name for c in parse_description(second)}.isdisjoint({c.name for c in parse_description(first)})


async def test_out_of_memory_puts_a_ceiling_on_the_knob_that_caused_it(tmp_path):
    # Bigger batches would score better here, so only the ceiling keeps them out.
    workspace, config = make_target(tmp_path, BOWL.replace("BATCH_SIZE / 16", "BATCH_SIZE / 256"))
    crash = ResultRow(1, "0000001", None, "crash", "BATCH_SIZE 2**5 -> 2**6")
    loop = await drive(
        classic(seed=0),
        workspace,
        config,
        40,
        run_in_process,
        earlier=[crash],
        tail="torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
    )
    batches = [knob_values(after)["BATCH_SIZE"][0] for after in loop.files_after]
    assert batches and max(batches) < 64


async def test_a_crash_rules_out_the_value_and_the_search_tries_the_other_side(tmp_path):
    workspace, config = make_target(tmp_path)
    history = [
        ResultRow(0, "0000000", 2.5, "keep", "baseline"),
        ResultRow(1, "0000001", None, "crash", "WARMDOWN_RATIO 0.5 -> 0.6"),
    ]
    ctx = ProposalContext(
        exp=2,
        target=config,
        best_metric=2.5,
        baseline_metric=2.5,
        history=history,
        last_failure_tail="ValueError: warmdown too long",
    )
    knobs = load_knobs(workspace)
    search = Search(knobs, ctx, seed=0)
    move = search.best_move(next(k for k in knobs if k.name == "WARMDOWN_RATIO"))
    assert move is not None and move.new == (0.4,)


async def test_learns_from_changes_made_by_another_proposer(tmp_path):
    """Rows without our description format still count, through their diff."""
    workspace, config = make_target(tmp_path)
    diff = (
        "--- a/train.py\n+++ b/train.py\n@@ -9 +9 @@\n"
        "-LEARNING_RATE = 3e-3  # learning rate\n+LEARNING_RATE = 6e-3  # learning rate\n"
    )
    history = [
        ResultRow(0, "0000000", 2.5, "keep", "baseline"),
        ResultRow(1, "0000001", 2.9, "discard", "Raise the learning rate a bit", diff=diff),
    ]
    ctx = ProposalContext(exp=2, target=config, best_metric=2.5, baseline_metric=2.5, history=history)
    knobs = load_knobs(workspace)
    move = Search(knobs, ctx, seed=0).best_move(next(k for k in knobs if k.name == "LEARNING_RATE"))
    assert move is not None and move.new[0] < 3e-3  # it went up and got worse: now down


async def test_an_earlier_proposal_is_reapplied_on_a_newer_best(tmp_path):
    workspace, config = make_target(tmp_path, BOWL.replace("LEARNING_RATE = 3e-3", "LEARNING_RATE = 4e-3"))
    ctx = ProposalContext(
        exp=5,
        target=config,
        best_metric=2.0,
        baseline_metric=2.5,
        history=[ResultRow(0, "0000000", 2.5, "keep", "baseline")],
        adapt_description="LEARNING_RATE 3e-3 -> 6e-3",
    )
    proposal = await classic().propose(ctx, workspace, lambda e: None)
    assert proposal.description == "LEARNING_RATE 4e-3 -> 6e-3"
    assert "LEARNING_RATE = 6e-3  # learning rate" in (tmp_path / "train.py").read_text()


async def test_nothing_left_to_try_raises_proposal_failed(tmp_path):
    script = "DEPTH = 1  # layers\nif __name__ == '__main__':\n    print(f'val_bpb: {1 + (DEPTH - 1) ** 2:.6f}')\n"
    workspace, config = make_target(tmp_path, script)
    loop = await drive(classic(), workspace, config, 10, run_in_process)
    # One knob at its lower bound: up one step (worse), then two (worse), then nothing is left.
    assert [r.description for r in loop.history[1:]] == ["DEPTH 1 -> 2", "DEPTH 1 -> 3"]
    assert (tmp_path / "train.py").read_text() == script  # the failed call left the file alone
    with pytest.raises(ProposalFailed, match="exhausted"):
        await classic().propose(
            ProposalContext(exp=2, target=config, best_metric=1.0, baseline_metric=1.0, history=loop.history),
            workspace,
            lambda e: None,
        )


async def test_a_script_without_knobs_is_a_clear_failure(tmp_path):
    workspace, config = make_target(tmp_path, 'SEED = 1\nNAME = "x"\nprint("val_bpb: 1.0")\n')
    ctx = ProposalContext(exp=1, target=config, best_metric=1.0, baseline_metric=1.0, history=[])
    with pytest.raises(ProposalFailed, match="no tunable constants in train.py"):
        await classic().propose(ctx, workspace, lambda e: None)


# ---------------------------------------------------------------------------
# The bundled nanochat target


NANOCHAT_TRAIN = REPO / "nanochat" / "train.py"


def test_nanochat_knobs():
    knobs = {k.name: k for k in find_knobs("train.py", NANOCHAT_TRAIN.read_text())}
    for name in ("DEPTH", "WIDTH", "HEAD_DIM", "BATCH_SIZE", "MATRIX_LR", "EMBED_LR", "COOLDOWN_FRACTION"):
        assert name in knobs, name
    for name in ("SEED", "TIME_BUDGET", "CPU_THREADS", "COMPILE", "SEQ_LEN", "MAX_LOSS", "PROGRESS_INTERVAL_S"):
        assert name not in knobs, name
    # `per_device(cpu, gpu)` knobs have one part per device class.
    assert len(knobs["DEPTH"].parts) == 2


async def test_nanochat_edit_keeps_the_script_valid(tmp_path):
    source = NANOCHAT_TRAIN.read_text()
    workspace, config = make_target(tmp_path, source)
    ctx = ProposalContext(
        exp=1,
        target=config,
        best_metric=2.0,
        baseline_metric=2.0,
        history=[ResultRow(0, "0000000", 2.0, "keep", "baseline")],
    )
    events = []
    proposal = await classic().propose(ctx, workspace, events.append)
    after = (tmp_path / "train.py").read_text()
    compile(after, "train.py", "exec")
    changed = [(a, b) for a, b in zip(source.split("\n"), after.split("\n")) if a != b]
    assert len(changed) == 1 and len(after.split("\n")) == len(source.split("\n"))
    (change,) = parse_description(proposal.description)
    assert knob_values(after)[change.name] == pytest.approx(change.new)
    # A `per_device(cpu, gpu)` knob is written back whole, comment and all.
    width = {k.name: k for k in find_knobs("train.py", source)}["WIDTH"]
    wider = tuple(part.value * 3 // 2 for part in width.parts)
    wanted = f"WIDTH {width.text} -> {'|'.join(map(str, wider))}"
    ctx.adapt_description = wanted
    workspace, _ = make_target(tmp_path / "w", source)
    proposal = await classic().propose(ctx, workspace, events.append)
    assert proposal.description == wanted
    written = (tmp_path / "w" / "train.py").read_text()
    assert knob_values(written)["WIDTH"] == wider
    assert f"WIDTH = per_device({', '.join(map(str, wider))})  # {width.comment}" in written


# ---------------------------------------------------------------------------
# Through the engine


def test_ar_tui_run_headless_with_the_offline_proposer(tmp_path):
    """`ar-tui run --headless --agent offline` as a real child process on a
    real git repository: every experiment is one of ours and the run improves."""
    import json
    import os
    import subprocess

    from tests.conftest import make_target as make_git_target

    target = make_git_target(tmp_path / "target", train=BOWL)
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ar_tui.cli",
            "run",
            "--headless",
            "--target",
            str(target),
            "--run-dir",
            str(run_dir),
            "--tag",
            "t",
            "--max-experiments",
            "5",
            "--unattended",
            "--lookahead",
            "0",
            "--baseline-runs",
            "1",
            "--offline-search",
            "classic",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split("\t") for line in (run_dir / "results.tsv").read_text().splitlines()[1:]]
    assert len(rows) == 6 and rows[0][4] == "baseline"
    assert all(parse_description(row[4]) for row in rows[1:]), [row[4] for row in rows]
    kept = [float(row[1]) for row in rows[1:] if row[3] == "keep"]
    assert kept and min(kept) < float(rows[0][1]) - 0.3
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert any(e["kind"] == "agent_text" and "Offline search" in e["text"] for e in events)
    assert sum(e["kind"] == "agent_tool" for e in events) >= 5


def test_reads_nanogpt_style_lowercase_config():
    source = """
out_dir = 'out'
eval_interval = 2000
log_interval = 1
eval_iters = 200
always_save_checkpoint = True
gradient_accumulation_steps = 5 * 8
batch_size = 12
block_size = 1024
n_layer = 12
n_head = 12
n_embd = 768
dropout = 0.0
learning_rate = 6e-4
max_iters = 600000
weight_decay = 1e-1
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0
warmup_iters = 2000
lr_decay_iters = 600000
min_lr = 6e-5
"""
    knobs = {k.name: k.kind for k in find_knobs("train.py", source)}
    assert set(knobs) == {
        "gradient_accumulation_steps",
        "batch_size",
        "block_size",
        "n_layer",
        "n_head",
        "n_embd",
        "dropout",
        "learning_rate",
        "weight_decay",
        "beta1",
        "beta2",
        "grad_clip",
        "warmup_iters",
        "min_lr",
    }
    assert knobs["learning_rate"] is LEARNING_RATE and knobs["min_lr"] is LEARNING_RATE
    assert knobs["beta2"] is BETA and knobs["n_layer"] is DEPTH and knobs["dropout"] is FRACTION


# A real tiny training run: a small MLP learns a fixed teacher with AdamW for a
# fixed number of steps (so the metric does not depend on machine speed).
TINY_TORCH = '''"""A real tiny training run: a two-layer MLP learns a fixed teacher on CPU."""
import torch

SEED = 0  # data and init
LEARNING_RATE = 1e-3  # Adam learning rate
HIDDEN_DIM = 16  # hidden width
BATCH_SIZE = 2**7  # examples per step
WEIGHT_DECAY = 0.0  # AdamW decay
STEPS = 40  # optimisation steps (fixed, so the metric does not depend on machine speed)


def main():
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(SEED)
    teacher = 0.4 * torch.randn(8, 1, generator=generator)
    x_train = torch.randn(1024, 8, generator=generator)
    y_train = torch.sin(x_train @ teacher) + 0.05 * torch.randn(1024, 1, generator=generator)
    x_val = torch.randn(1024, 8, generator=generator)
    y_val = torch.sin(x_val @ teacher)
    torch.manual_seed(SEED)
    model = torch.nn.Sequential(torch.nn.Linear(8, HIDDEN_DIM), torch.nn.GELU(), torch.nn.Linear(HIDDEN_DIM, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    for step in range(STEPS):
        index = torch.randint(0, 1024, (BATCH_SIZE,), generator=generator)
        loss = torch.nn.functional.mse_loss(model(x_train[index]), y_train[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        val = torch.nn.functional.mse_loss(model(x_val), y_val).item()
    print("---")
    print(f"val_loss: {val:.6f}")


if __name__ == "__main__":
    main()
'''


async def test_improves_a_real_tiny_torch_training(tmp_path):
    workspace, _ = make_target(tmp_path, TINY_TORCH)
    config = TargetConfig(root=tmp_path, metric="val_loss")
    import torch

    threads = torch.get_num_threads()  # the script sets its own; the test process keeps its setting
    try:
        loop = await drive(classic(seed=0), workspace, config, 8, run_in_process)
    finally:
        torch.set_num_threads(threads)
    baseline = loop.history[0].metric
    print(
        f"tiny torch training: val_loss {baseline:.4f} -> {loop.best:.4f} in 8 experiments: "
        + "; ".join(f"{r.description} ({r.status})" for r in loop.history[1:])
    )
    assert loop.best < 0.1 * baseline


async def test_knobs_in_several_editable_files_are_named_by_file(tmp_path):
    (tmp_path / "train.py").write_text("LEARNING_RATE = 0.01  # main\n")
    (tmp_path / "model.py").write_text("LEARNING_RATE = 0.5  # head\nDEPTH = 2  # layers\n")
    workspace = Workspace(tmp_path, ["train.py", "model.py"], [])
    names = {k.name for k in load_knobs(workspace)}
    assert names == {"train.py:LEARNING_RATE", "model.py:LEARNING_RATE", "DEPTH"}
    ctx = ProposalContext(
        exp=1,
        target=TargetConfig(root=tmp_path),
        best_metric=1.0,
        baseline_metric=1.0,
        history=[ResultRow(0, "0000000", 1.0, "keep", "baseline")],
    )
    proposal = await classic().propose(ctx, workspace, lambda e: None)
    (change,) = parse_description(proposal.description)
    path, _, name = change.name.partition(":")
    assert (path, name) in {("train.py", "LEARNING_RATE"), ("model.py", "LEARNING_RATE")}
    assert f"LEARNING_RATE = {change.new[0]}" in (tmp_path / path).read_text()


async def test_a_script_that_does_not_parse_is_a_one_line_failure(tmp_path):
    broken = "LEARNING_RATE = 0.01\ndef f(:\n"
    workspace, config = make_target(tmp_path, broken)
    ctx = ProposalContext(exp=1, target=config, best_metric=1.0, baseline_metric=1.0, history=[])
    with pytest.raises(ProposalFailed, match=r"^train.py does not parse \(line 2\)") as failure:
        await classic().propose(ctx, workspace, lambda e: None)
    assert "\n" not in failure.value.reason
    assert (tmp_path / "train.py").read_text() == broken
