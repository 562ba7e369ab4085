"""The tokenizer and the fixed metric, on the real prepared corpus."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from nanochat import prepare


@pytest.fixture
def dataset(prepared_cache: Path, monkeypatch) -> prepare.Dataset:
    monkeypatch.setenv("AR_TUI_CACHE", str(prepared_cache))
    monkeypatch.delenv("AR_NANOCHAT_DATASET", raising=False)
    return prepare.load_dataset()


SAMPLES = [
    "To be, or not to be, that is the question:\n",
    "Thou art more lovely and more temperate.  \r\n\ttabs and  spaces",
    "naïve café — “smart quotes”, ½ ¾, Ωμέγα, 日本語のテキスト, emoji 🎭🗡️, combining é",
    "",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_tokenizer_round_trips_text_and_byte_lengths_add_up(dataset: prepare.Dataset, text: str):
    tokenizer = dataset.tokenizer()
    ids = tokenizer.encode_ordinary(text)

    assert tokenizer.decode(ids) == text
    assert all(0 <= i < dataset.vocab_size for i in ids)
    # The table the metric divides by: every token's bytes, summing to the text's bytes.
    assert int(dataset.token_bytes[ids].sum()) == len(text.encode("utf-8"))


def test_tokenizer_is_learned_from_the_corpus_and_bos_has_no_bytes(dataset: prepare.Dataset):
    tokenizer = dataset.tokenizer()
    bos = tokenizer.encode_single_token(prepare.BOS)

    assert tokenizer.n_vocab == prepare.VOCAB_SIZE == dataset.vocab_size
    assert dataset.token_bytes[bos] == 0 and (dataset.token_bytes[:bos] > 0).all()
    # Merges learned from Shakespeare make his words short.
    assert len(tokenizer.encode_ordinary(" thou")) == 1
    assert int(dataset.val_tokens[0]) == bos and int(dataset.train_tokens[0]) == bos


class UniformModel(torch.nn.Module):
    def __init__(self, vocab_size: int):
        super().__init__()
        self.vocab_size = vocab_size

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*idx.shape, self.vocab_size)


def test_uniform_logits_score_log2_vocab_bits_per_token_over_bytes(dataset: prepare.Dataset):
    vocab = dataset.vocab_size
    seq = prepare.EVAL_SEQ_LEN
    windows = (dataset.val_tokens.numel() - 1) // seq
    targets = dataset.val_tokens[1 : windows * seq + 1].tolist()
    byte_table = dataset.token_bytes.tolist()
    counted = [t for t in targets if byte_table[t] > 0]
    expected = len(counted) * math.log2(vocab) / sum(byte_table[t] for t in counted)

    measured = prepare.evaluate_bpb(UniformModel(vocab), dataset.val_tokens, dataset.token_bytes)

    assert measured == pytest.approx(expected, rel=1e-6)


def test_evaluation_refuses_logits_of_the_wrong_shape(dataset: prepare.Dataset):
    with pytest.raises(ValueError, match="logits of shape"):
        prepare.evaluate_bpb(UniformModel(dataset.vocab_size - 1), dataset.val_tokens, dataset.token_bytes)


def test_validation_windows_cover_the_pinned_split_once(dataset: prepare.Dataset):
    inputs, targets = prepare.validation_windows(dataset.val_tokens)

    assert inputs.shape[1] == prepare.EVAL_SEQ_LEN
    assert torch.equal(inputs.flatten()[1:], targets.flatten()[:-1])
    assert inputs.numel() > dataset.val_tokens.numel() - 1 - prepare.EVAL_SEQ_LEN
