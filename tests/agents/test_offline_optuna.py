"""The offline search on Optuna: the distribution of each knob kind, the
study's journal and its rebuild from the ledger, out-of-memory ceilings, no
repeats across a kill -9 of a real `ar-tui run --headless`, re-basing."""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.storages.journal import JournalFileBackend, JournalStorage

from ar_tui.agents.offline import OfflineProposer, parse_description
from ar_tui.agents.offline.knobs import (
    BETA,
    DEPTH,
    EPSILON,
    FRACTION,
    GENERIC_SCALE,
    INTEGER_BATCH,
    INTEGER_HEADS,
    LEARNING_RATE,
    POWER_OF_TWO_BATCH,
    POWER_OF_TWO_LENGTH,
    SCHEDULE_LENGTH,
    WEIGHT_DECAY,
    WIDTH,
    find_knobs,
)
from ar_tui.agents.offline.study import JOURNAL_FILE, OptunaSearch, dimension_for
from ar_tui.core.proposer import ProposalContext, ResultRow
from ar_tui.core.records.ledger import read_results
from tests.agents.test_offline import drive, knob_values, make_target, run_in_process

ALL_KINDS = """
MATRIX_LR = 0.04  # learning rate
WEIGHT_DECAY = 0.1  # weight decay
NO_DECAY = 0.0  # weight decay, off
ADAM_EPS = 1e-8  # epsilon
ADAM_BETAS = (0.8, 0.95)  # betas
WARMDOWN_RATIO = 0.5  # fraction
BATCH_SIZE = 2**5  # sequences per step
TOKEN_BATCH = 48  # not a power of two
SEQ_LEN = 256  # sequence length
DEPTH = 4  # layers
N_EMBD = 256  # width
N_HEAD = 6  # heads
WARMUP_ITERS = 100  # warmup steps
LOGIT_SOFTCAP = 15.0  # a positive scale
"""


def optuna_search(seed: int) -> OfflineProposer:
    return OfflineProposer(seed, search="optuna")


def same(a, b) -> bool:
    """Two distributions alike up to float rounding."""
    return type(a) is type(b) and a.log == b.log and a.step == b.step and all(
        math.isclose(x, y, rel_tol=1e-9) for x, y in ((a.low, b.low), (a.high, b.high)))


def dims_of(source: str) -> dict:
    knobs = find_knobs("train.py", source)
    return {k.name: (k, dimension_for(k, k.value)) for k in knobs}


def test_each_knob_kind_maps_to_its_distribution():
    dims = dims_of(ALL_KINDS)
    kinds = {name: knob.kind for name, (knob, _) in dims.items()}
    assert kinds == {
        "MATRIX_LR": LEARNING_RATE, "WEIGHT_DECAY": WEIGHT_DECAY, "NO_DECAY": WEIGHT_DECAY, "ADAM_EPS": EPSILON,
        "ADAM_BETAS[0]": BETA, "ADAM_BETAS[1]": BETA, "WARMDOWN_RATIO": FRACTION, "BATCH_SIZE": POWER_OF_TWO_BATCH,
        "TOKEN_BATCH": INTEGER_BATCH, "SEQ_LEN": POWER_OF_TWO_LENGTH, "DEPTH": DEPTH, "N_EMBD": WIDTH,
        "N_HEAD": INTEGER_HEADS, "WARMUP_ITERS": SCHEDULE_LENGTH, "LOGIT_SOFTCAP": GENERIC_SCALE,
    }
    d = {name: dim for name, (_, dim) in dims.items()}
    # Rates and scales: log, the kind's largest move either way (x8 for a rate, x100 for an epsilon).
    assert same(d["MATRIX_LR"].distribution, FloatDistribution(0.005, 0.32, log=True))
    assert d["WEIGHT_DECAY"].distribution.log and math.isclose(d["WEIGHT_DECAY"].distribution.high, 0.8)
    assert same(d["ADAM_EPS"].distribution, FloatDistribution(1e-10, 1e-6, log=True))
    assert d["LOGIT_SOFTCAP"].distribution.log
    # A weight decay of 0 keeps 0 in a linear range.
    assert same(d["NO_DECAY"].distribution, FloatDistribution(0.0, 0.08))
    # Betas: 1 - beta on a log scale, inside [0.5, 0.999].
    beta = d["ADAM_BETAS[1]"]
    assert beta.param == "1-ADAM_BETAS[1]" and beta.distribution.log
    assert math.isclose(beta.distribution.low, 0.05 / 4) and math.isclose(beta.distribution.high, 0.2)
    assert math.isclose(beta.from_param(beta.encode(0.95)), 0.95)
    assert d["ADAM_BETAS[0]"].distribution.high == 0.5  # 1 - 0.5: the kind's lower bound
    # Ratios: their whole bounded range.
    assert d["WARMDOWN_RATIO"].distribution == FloatDistribution(0.0, 1.0)
    # Powers of two: the exponent, whole numbers; a length never below 8.
    batch = d["BATCH_SIZE"]
    assert batch.param == "log2(BATCH_SIZE)" and batch.distribution == IntDistribution(3, 7)
    assert [batch.from_param(p) for p in range(3, 8)] == [8, 16, 32, 64, 128]
    assert d["SEQ_LEN"].distribution == IntDistribution(6, 10)
    # Depth and head counts: integers, the kind's largest move either way, never below 1.
    assert d["DEPTH"].distribution == IntDistribution(1, 8)
    assert d["N_HEAD"].distribution == IntDistribution(2, 10)
    # Widths and odd batch sizes: a grid of the knob's granularity through its own value.
    width = d["N_EMBD"].distribution
    assert width == IntDistribution(64, 1024, step=64) and 256 in range(width.low, width.high + 1, width.step)
    odd = d["TOKEN_BATCH"].distribution
    assert odd.step == 8 and (48 - odd.low) % odd.step == 0 and odd.low >= 8
    assert d["WARMUP_ITERS"].distribution.step == 16 and (100 - d["WARMUP_ITERS"].distribution.low) % 16 == 0
    # Every kind's start is a point of its own distribution.
    for name, (knob, dim) in dims.items():
        param = dim.encode(knob.value)
        assert dim.distribution._contains(dim.distribution.to_internal_repr(param)), name
        assert math.isclose(dim.from_param(param), knob.value, rel_tol=1e-9), name


async def test_search_improves_and_never_proposes_a_configuration_twice(tmp_path):
    workspace, config = make_target(tmp_path / "t")
    loop = await drive(optuna_search(0), workspace, config, 30, run_in_process, run_dir=tmp_path)
    assert len(loop.history) == 31
    assert all(parse_description(row.description) for row in loop.history[1:])
    points = [tuple(sorted(knob_values(text).items())) for text in [loop.files_before[0], *loop.files_after]]
    assert len(points) == len(set(points)), "a configuration was proposed twice"
    assert loop.best < loop.history[0].metric - 0.3
    assert (tmp_path / JOURNAL_FILE).is_file()


async def test_a_study_rebuilt_from_the_ledger_alone_matches_the_stored_one(tmp_path):
    workspace, config = make_target(tmp_path / "t")
    stored_dir, rebuilt_dir = tmp_path / "stored", tmp_path / "rebuilt"
    stored_dir.mkdir()
    rebuilt_dir.mkdir()
    loop = await drive(optuna_search(4), workspace, config, 12, run_in_process, run_dir=stored_dir)
    ctx = ProposalContext(exp=13, target=config, best_metric=loop.best, baseline_metric=loop.history[0].metric,
                          history=loop.history)
    from ar_tui.agents.offline.knobs import load_knobs

    knobs = load_knobs(workspace)
    stored = OptunaSearch(knobs, ctx, 4, run_dir=stored_dir)
    assert not stored.rebuilt  # the journal agreed with the ledger
    rebuilt = OptunaSearch(knobs, ctx, 4, run_dir=rebuilt_dir)
    assert stored.decided_trials() == rebuilt.decided_trials()
    assert len(stored.decided_trials()) == 13  # the baseline and twelve experiments
    assert {state for _, _, state, _ in stored.decided_trials()} <= {"COMPLETE", "FAIL"}

    # A fresh instance on a copy of the same journal proposes what a
    # long-lived one does on the original.
    copy_dir, copy_target = tmp_path / "copy-run", tmp_path / "copy-target"
    shutil.copytree(stored_dir, copy_dir)
    shutil.copytree(workspace.root, copy_target)
    from ar_tui.core.workspace import Workspace

    first = await optuna_search(4).propose(ProposalContext(**{**ctx.__dict__, "run_dir": stored_dir}),
                                                  workspace, lambda e: None)
    second = await optuna_search(4).propose(ProposalContext(**{**ctx.__dict__, "run_dir": copy_dir}),
                                                   Workspace(copy_target, ["train.py"], ["prepare.py"]),
                                                   lambda e: None)
    assert first.description == second.description


async def test_a_journal_that_disagrees_with_the_ledger_is_rebuilt_from_it(tmp_path):
    workspace, config = make_target(tmp_path / "t")
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    run_a.mkdir()
    run_b.mkdir()
    (tmp_path / "t2").mkdir()
    loop_a = await drive(optuna_search(1), workspace, config, 4, run_in_process, run_dir=run_a)
    workspace_b, _ = make_target(tmp_path / "t2")
    loop_b = await drive(optuna_search(2), workspace_b, config, 4, run_in_process, run_dir=run_b)
    assert loop_a.history[1].description != loop_b.history[1].description
    # Run b's ledger with run a's journal: the ledger wins.
    shutil.copy(run_a / JOURNAL_FILE, run_b / JOURNAL_FILE)
    from ar_tui.agents.offline.knobs import load_knobs

    ctx = ProposalContext(exp=5, target=config, best_metric=loop_b.best, baseline_metric=None,
                          history=loop_b.history, run_dir=run_b)
    search = OptunaSearch(load_knobs(workspace_b), ctx, 2)
    assert search.rebuilt
    fresh_dir = tmp_path / "fresh"
    fresh_dir.mkdir()
    assert search.decided_trials() == OptunaSearch(load_knobs(workspace_b), ctx, 2, run_dir=fresh_dir).decided_trials()


async def test_an_out_of_memory_crash_puts_a_ceiling_on_the_space(tmp_path):
    workspace, config = make_target(tmp_path / "t")
    crash = ResultRow(1, "0000001", None, "crash", "BATCH_SIZE 2**5 -> 2**6")
    diverged = ResultRow(2, "0000002", None, "crash", "LEARNING_RATE 3e-3 -> 6e-3")
    tail = "Traceback (most recent call last):\nMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"
    from ar_tui.agents.offline.knobs import load_knobs

    knobs = load_knobs(workspace)
    ctx = ProposalContext(exp=3, target=config, best_metric=1.5, baseline_metric=1.5,
                          history=[ResultRow(0, "0" * 7, 1.5, "keep", "baseline"), crash, diverged],
                          last_failure_tail=tail)
    search = OptunaSearch(knobs, ctx, 0, run_dir=tmp_path)
    assert search.ledger.ceiling == {"BATCH_SIZE": 64, "LEARNING_RATE": 6e-3}
    # The sampler's largest batch and rate are moved below their ceilings; the rest is untouched.
    top = {dim.param: dim.distribution.high for dim in search.dims.values()}
    point = search._point_from(top)
    assert point["BATCH_SIZE"] == 32 and point["DEPTH"] == 6 and point["LEARNING_RATE"] < 6e-3
    assert point["LEARNING_RATE"] > 3e-3  # the largest the distribution's grid has below the ceiling
    # Driven for a while after that crash, it never goes back to 64 or above.
    (tmp_path / "run").mkdir()
    loop = await drive(optuna_search(0), workspace, config, 15, run_in_process, earlier=[crash, diverged],
                       tail=tail, run_dir=tmp_path / "run")
    assert all(knob_values(text)["BATCH_SIZE"][0] < 64 for text in loop.files_after)
    assert all(knob_values(text)["LEARNING_RATE"][0] < 6e-3 for text in loop.files_after)


async def test_a_knob_set_change_re_bases_the_sampler(tmp_path):
    workspace, config = make_target(tmp_path / "t")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    loop = await drive(optuna_search(0), workspace, config, 5, run_in_process, run_dir=run_dir)
    train = workspace.root / "train.py"
    before = train.read_text()
    # Claude's kind of change, kept: a new knob, used by the code.
    after = before.replace("\n\ndef val_bpb():", "\nDROPOUT = 0.1  # dropout\n\n\ndef val_bpb():")
    after = after.replace("    return 1.0 + sum(terms) + noise", "    return 1.0 + sum(terms) + noise + DROPOUT")
    assert after.count("DROPOUT") == 2
    train.write_text(after)
    import difflib

    diff = "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True)))
    history = [*loop.history, ResultRow(6, "0000006", loop.best - 0.01, "keep", "add dropout", diff=diff,
                                        proposer="claude")]
    from ar_tui.agents.offline.knobs import load_knobs

    ctx = ProposalContext(exp=7, target=config, best_metric=loop.best - 0.01, baseline_metric=None,
                          history=history, run_dir=run_dir)
    earlier = optuna.get_all_study_names(JournalStorage(JournalFileBackend(str(run_dir / JOURNAL_FILE))))
    search = OptunaSearch(load_knobs(workspace), ctx, 0)
    assert search.rebased and len(earlier) == 1 and search.study_name != earlier[0]
    assert "DROPOUT" in {dim.param for dim in search.dims.values()}
    # The new study starts from the current best: its only trial is the kept change.
    (exp, params, state, value), = search.decided_trials()
    assert exp == 6 and state == "COMPLETE" and math.isclose(value, loop.best - 0.01)
    assert params == search.params_of(dict(search.ledger.current))
    events = []
    proposal = await optuna_search(0).propose(ctx, workspace, events.append)
    assert any("Re-based" in getattr(e, "text", "") for e in events)
    assert parse_description(proposal.description)


TINY = """\
import math
LEARNING_RATE = 0.01  # learning rate
WIDTH = 64  # model width
DEPTH = 2  # layers
WARMDOWN_RATIO = 0.5  # fraction
loss = 1.0 + 0.3 * math.log(LEARNING_RATE / 0.03) ** 2 + 0.1 * math.log2(WIDTH / 96) ** 2 \\
    + 0.02 * (DEPTH - 3) ** 2 + 0.2 * (WARMDOWN_RATIO - 0.3) ** 2
print(f"val_bpb: {loss:.6f}")
"""


def test_kill_9_and_resume_proposes_no_repeat(tmp_path):
    """A real `ar-tui run --headless` with the Optuna search, killed with
    SIGKILL mid-run and started again: the journal survives, and no
    configuration runs twice across the two lives."""
    from tests.conftest import ROOT
    from tests.conftest import make_target as make_git_target

    target = make_git_target(tmp_path / "target", train=TINY)
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    cmd = [sys.executable, "-m", "ar_tui.cli", "run", "--headless", "--target", str(target), "--tag", "night",
           "--run-dir", str(run_dir), "--agent", "offline", "--offline-search", "optuna", "--unattended", "--baseline-runs", "1",
           "--lookahead", "1", "--max-experiments", "10"]
    engine = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ledger = run_dir / "results.tsv"
            if ledger.exists() and len(ledger.read_text().splitlines()) >= 5:  # header, baseline, 3 experiments
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the run did not get to three experiments")
        engine.send_signal(signal.SIGKILL)
        engine.wait(timeout=30)
    finally:
        if engine.poll() is None:
            engine.kill()
    assert (run_dir / JOURNAL_FILE).is_file()
    resumed = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    _, rows, _ = read_results(run_dir / "results.tsv")
    assert [row.exp for row in rows] == list(range(11))
    assert all(row.proposer == "offline" for row in rows[1:])
    configurations = []
    for row in rows:
        source = subprocess.run(["git", "show", f"{row.commit}:train.py"], cwd=target, capture_output=True,
                                text=True, check=True).stdout
        configurations.append(tuple(sorted(knob_values(source).items())))
    assert len(configurations) == len(set(configurations)), "a configuration ran twice"


def test_a_width_sampled_with_a_new_head_size_is_a_multiple_of_it(tmp_path):
    # The bundled nanochat script: attention reshapes WIDTH into WIDTH // HEAD_DIM
    # heads, so a configuration where the head size does not divide the width
    # crashes. The sampler moves both at once; every configuration it can ask,
    # on every device part, must still divide.
    source = (Path(__file__).resolve().parents[2] / "nanochat" / "train.py").read_text()
    knobs = find_knobs("train.py", source)
    by_name = {k.name: k for k in knobs}
    assert len(by_name["WIDTH"].parts) == len(by_name["HEAD_DIM"].parts) == 2  # per_device(cpu, accelerator)
    from ar_tui.core.config import TargetConfig

    ctx = ProposalContext(exp=1, target=TargetConfig(root=tmp_path), best_metric=2.2, baseline_metric=2.2,
                          history=[ResultRow(0, "0" * 7, 2.2, "keep", "baseline")])
    search = OptunaSearch(knobs, ctx, 0, run_dir=tmp_path)
    width, head = search.dims["WIDTH"], search.dims["HEAD_DIM"]
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    moved_both = 0
    for _ in range(300):
        trial = study.ask(search.distributions)
        params = dict(trial.params)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        point = search._point_from(params)
        values = search._values(point)
        moved_both += point["WIDTH"] != by_name["WIDTH"].value and point["HEAD_DIM"] != by_name["HEAD_DIM"].value
        for w, h in zip(values["WIDTH"], values["HEAD_DIM"]):
            assert w % h == 0, (params[width.param], params[head.param], values["WIDTH"], values["HEAD_DIM"])
    assert moved_both > 50  # the case that used to crash was sampled, often
