"""What the agent is shown, and the prompt-cache simulation the benchmark relies on."""

from __future__ import annotations

from pathlib import Path

from ar_tui.agents.llm import prompt
from ar_tui.core.config import TargetConfig
from ar_tui.core.proposer import ProposalContext, ResultRow
from ar_tui.core.workspace import Workspace
from tests.fake_messages_api import PromptCache


def context(tmp_path: Path, **fields) -> ProposalContext:
    history = [ResultRow(0, "0000000", 1.04, "keep", "baseline")]
    for exp in range(1, 31):
        status = "keep" if exp % 7 == 0 else ("crash" if exp % 11 == 0 else "discard")
        metric = None if status == "crash" else 1.0 + exp / 1000
        history.append(ResultRow(exp, f"{exp:07x}", metric, status, f"idea number {exp}",
                                 diff=f"-LR = 0.{exp}\n+LR = 0.{exp + 1}\n" if status == "keep" else ""))
    defaults = dict(exp=31, target=TargetConfig(root=tmp_path, metric="val_bpb", direction="min"),
                    best_metric=1.007, baseline_metric=1.04, history=history, noise_sd=0.0012)
    defaults.update(fields)
    return ProposalContext(**defaults)


def test_the_situation_shows_best_results_kept_diffs_and_what_not_to_repeat(tmp_path):
    text = prompt.situation_text(context(
        tmp_path,
        unseen=[(32, "wider MLP")],
        last_failure_tail="Traceback (most recent call last):\nRuntimeError: CUDA out of memory",
    ))
    assert "# Experiment 31" in text
    assert "lower is better" in text
    assert "baseline 1.040000; best so far 1.007000; run-to-run noise sd 0.001200" in text
    # The newest rows as a table, with crashes shown without a metric.
    assert "30\tdiscard\t1.030000\tidea number 30" in text
    assert "22\tcrash\t-\tidea number 22" in text
    # Older ideas appear once, in the do-not-repeat list, with their outcome.
    assert "- idea number 3 -> discard 1.003000" in text
    assert text.count("idea number 3 ") + text.count("idea number 3\n") == 1
    # The three most recent kept diffs, newest first; older kept diffs are not repeated.
    assert text.index("exp 28: idea number 28") < text.index("exp 21: idea number 21") < text.index(
        "exp 14: idea number 14")
    assert "exp 7: idea number 7 (" not in text
    assert "exp 32: wider MLP" in text
    assert "CUDA out of memory" in text
    assert text.rstrip().endswith("then call run_experiment.")


def test_a_higher_is_better_metric_says_so(tmp_path):
    target = TargetConfig(root=tmp_path, metric="accuracy", direction="max")
    text = prompt.situation_text(context(tmp_path, target=target))
    assert "Metric: accuracy (higher is better)." in text
    assert "accuracy, higher is better" in prompt.system_blocks("p", target)[0]["text"]


def test_an_adapt_request_shows_the_old_diff_and_the_conflict(tmp_path):
    text = prompt.situation_text(context(
        tmp_path, adapt_description="halve the LR", adapt_diff="-LR = 0.5\n+LR = 0.25",
        adapt_conflict="hunk 1 failed: LR is now 0.4",
    ))
    assert "## Adapt an earlier proposal" in text
    assert "halve the LR" in text and "+LR = 0.25" in text and "LR is now 0.4" in text


def test_the_opening_message_stays_compact_after_a_long_night(tmp_path):
    history = [ResultRow(0, "0", 1.0, "keep", "baseline")] + [
        ResultRow(i, f"{i:07x}", 1.0 + i / 1e4, "discard", "an idea described at some length " * 6, diff="x" * 5000)
        for i in range(1, 400)
    ]
    text = prompt.situation_text(context(tmp_path, history=history, last_failure_tail="y" * 100_000))
    assert len(text.encode()) < 30_000
    assert "older experiments not listed" in text


def test_the_files_block_and_program_are_the_cached_prefix(tmp_path):
    (tmp_path / "train.py").write_text("LR = 0.5\n")
    workspace = Workspace(tmp_path, ["train.py"], [])
    message = prompt.opening_message(context(tmp_path), workspace)
    files, situation = message["content"]
    assert files["cache_control"] == {"type": "ephemeral", "ttl": "1h"} and "LR = 0.5" in files["text"]
    assert "cache_control" not in situation
    marked = prompt.with_turn_breakpoint([message])
    assert marked[0]["content"][1]["cache_control"] == {"type": "ephemeral", "ttl": "5m"}
    assert "cache_control" not in message["content"][1]  # the stored conversation is unchanged


def _body(system_text: str, user_text: str) -> dict:
    return {
        "model": "m",
        "tools": [{"name": "t", "input_schema": {}, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "system": [{"type": "text", "text": system_text, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": user_text, "cache_control": {"type": "ephemeral", "ttl": "5m"}}]}],
    }


def test_the_cache_simulation_writes_reads_and_expires_by_ttl():
    now = [0.0]
    cache = PromptCache(bytes_per_token=1.0, min_cache_tokens=100, clock=lambda: now[0])
    body = _body("s" * 2000, "u" * 500)
    first = cache.account(body)
    assert first.cache_read == 0 and first.cache_write_1h > 2000 and first.cache_write_5m > 500
    assert first.input == 0
    second = cache.account(body)
    assert second.cache_read == first.cache_write_1h + first.cache_write_5m
    assert second.cache_write_1h == second.cache_write_5m == 0
    # Six minutes later the 5-minute entry is gone, the hour-long one is not.
    now[0] += 360
    third = cache.account(body)
    assert third.cache_read == first.cache_write_1h and third.cache_write_5m == first.cache_write_5m
    # A changed user turn reuses the system prefix and writes only the new part.
    fourth = cache.account(_body("s" * 2000, "v" * 500))
    assert fourth.cache_read == first.cache_write_1h
    # A prefix below the minimum is not cached at all.
    small = PromptCache(bytes_per_token=1.0, min_cache_tokens=10_000, clock=lambda: 0.0).account(body)
    assert small.cache_read == small.cache_write_1h == small.cache_write_5m == 0 and small.input > 2500
