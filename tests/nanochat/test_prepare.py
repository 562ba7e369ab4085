"""prepare.py as a user runs it: a real child process, real files, a real local HTTP server."""

from __future__ import annotations

import functools
import http.server
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nanochat import prepare
from tests.nanochat.conftest import NANOCHAT, nanochat_env, run


def prepare_cli(cache: Path, *args: str):
    return run([sys.executable, "prepare.py", *args], cwd=NANOCHAT, env=nanochat_env(cache), timeout=120)


def prepare_main(cache: Path, monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """prepare.py's own entry point, in this process: the error cases need no child."""
    monkeypatch.setenv("AR_TUI_CACHE", str(cache))
    for name in ("no_proxy", "NO_PROXY"):  # the local server must be reached directly
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    code = prepare.main(list(args))
    return code, capsys.readouterr().err


def assert_clean_error(outcome: tuple[int, str], *words: str) -> None:
    code, stderr = outcome
    assert code == 2, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]  # progress bars may come before it
    assert last.startswith("prepare: error: "), stderr
    for word in words:
        assert word in last, last


def play_texts(count: int) -> list[str]:
    """A few real plays, read straight from the installed corpus."""
    return [prepare._clean_play(doc) for doc in prepare.shakespeare_source().documents][:count]


def test_default_corpus_builds_offline_and_second_run_changes_nothing(prepared_cache: Path):
    active = json.loads((prepared_cache / "nanochat" / "active.json").read_text())["dataset"]
    dataset = prepared_cache / "nanochat" / active
    meta = json.loads((dataset / "meta.json").read_text())
    assert meta["source"].startswith("Shakespeare")
    assert meta["train_tokens"] > 1_000_000
    assert meta["val_tokens"] > 2 * prepare.EVAL_SEQ_LEN
    stamps = {p.name: p.stat().st_mtime_ns for p in dataset.iterdir()}

    again = prepare_cli(prepared_cache)

    assert again.returncode == 0, again.stderr
    assert "already prepared" in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in dataset.iterdir()} == stamps


def test_validation_split_depends_only_on_the_text():
    documents = [f"document {i}\n" + "words and more words\n" * (400 + 37 * i) for i in range(12)]

    val, train = prepare.split_validation(documents)
    val_reordered, train_reordered = prepare.split_validation(documents[::-1])

    assert val == val_reordered
    assert sorted(train) == sorted(train_reordered)
    assert len(val) >= prepare.VAL_CHARS
    # Every character is used exactly once: nothing of validation leaks into training.
    assert len(val) + sum(map(len, train)) == sum(map(len, documents))


def test_text_dir_of_one_file_is_split_and_prepared(tmp_path: Path, monkeypatch, capsys):
    books = tmp_path / "books"
    books.mkdir()
    (books / "plays.txt").write_text("\n".join(play_texts(2)), encoding="utf-8")
    (books / ".hidden.txt").write_text("\xff not read", encoding="latin-1")
    cache = tmp_path / "cache"

    code, stderr = prepare_main(cache, monkeypatch, capsys, "--text-dir", str(books))

    assert code == 0, stderr
    active = json.loads((cache / "nanochat" / "active.json").read_text())["dataset"]
    meta = json.loads((cache / "nanochat" / active / "meta.json").read_text())
    assert active.startswith("textdir-") and meta["documents"] == 1
    assert meta["val_bytes"] >= prepare.VAL_CHARS and meta["train_tokens"] > 0


def test_missing_text_dir_is_a_one_line_error(tmp_path: Path, monkeypatch, capsys):
    assert_clean_error(prepare_main(tmp_path / "cache", monkeypatch, capsys, "--text-dir", str(tmp_path / "nowhere")), "no such directory")


def test_empty_text_dir_is_a_one_line_error(tmp_path: Path, monkeypatch, capsys):
    (tmp_path / "empty").mkdir()
    assert_clean_error(prepare_main(tmp_path / "cache", monkeypatch, capsys, "--text-dir", str(tmp_path / "empty")), "no .txt or .md files")


def test_too_little_text_is_a_one_line_error(tmp_path: Path, monkeypatch, capsys):
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "a.txt").write_text("To be, or not to be.\n")
    assert_clean_error(prepare_main(tmp_path / "cache", monkeypatch, capsys, "--text-dir", str(tmp_path / "small")), "corpus too small")


def test_non_utf8_file_is_a_one_line_error_and_nothing_is_cached(tmp_path: Path, monkeypatch, capsys):
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "a.txt").write_bytes(b"caf\xe9 latin-1\n" * 100)
    cache = tmp_path / "cache"
    assert_clean_error(prepare_main(cache, monkeypatch, capsys, "--text-dir", str(tmp_path / "mixed")), "not UTF-8")
    assert not (cache / "nanochat" / "active.json").exists()


# --- the parquet path, against a server on 127.0.0.1


@pytest.fixture
def parquet_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()


def write_shard(path: Path, texts: list[str]) -> None:
    pq.write_table(pa.table({"id": list(range(len(texts))), "text": texts}), path, row_group_size=50)


def test_parquet_shards_download_and_prepare(parquet_server, tmp_path: Path):
    base, served = parquet_server
    paragraphs = [p for play in play_texts(3) for p in play.split("\n\n") if p.strip()]
    half = len(paragraphs) // 2
    write_shard(served / "shard_00000.parquet", paragraphs[:half])
    write_shard(served / "shard_00001.parquet", paragraphs[half:])
    cache = tmp_path / "cache"

    result = prepare_cli(cache, "--parquet-url", base + "/shard_{index:05d}.parquet", "--shards", "2")

    assert result.returncode == 0, result.stderr
    active = json.loads((cache / "nanochat" / "active.json").read_text())["dataset"]
    meta = json.loads((cache / "nanochat" / active / "meta.json").read_text())
    assert active.startswith("parquet-")
    assert meta["documents"] == len(paragraphs)
    # Idempotent without the server's help: the shards are not fetched again.
    for shard in served.iterdir():
        shard.unlink()
    again = prepare_cli(cache, "--parquet-url", base + "/shard_{index:05d}.parquet", "--shards", "2")
    assert again.returncode == 0, again.stderr


def test_parquet_url_that_404s_is_a_one_line_error(parquet_server, tmp_path: Path, monkeypatch, capsys):
    base, _ = parquet_server
    assert_clean_error(prepare_main(tmp_path / "cache", monkeypatch, capsys, "--parquet-url", base + "/missing.parquet"), "HTTP 404")


def test_parquet_url_nobody_answers_is_a_one_line_error(tmp_path: Path, monkeypatch, capsys):
    # Port 9 (discard) on loopback: nothing listens there.
    assert_clean_error(prepare_main(tmp_path / "cache", monkeypatch, capsys, "--parquet-url", "http://127.0.0.1:9/x.parquet"), "cannot download")


def test_malformed_url_is_a_one_line_error(tmp_path: Path, monkeypatch, capsys):
    assert_clean_error(prepare_main(tmp_path / "cache", monkeypatch, capsys, "--parquet-url", "not a url"), "not a valid URL")


def test_file_that_is_not_parquet_is_a_one_line_error(parquet_server, tmp_path: Path, monkeypatch, capsys):
    base, served = parquet_server
    (served / "page.parquet").write_text("<html>not parquet</html>")
    assert_clean_error(prepare_main(tmp_path / "cache", monkeypatch, capsys, "--parquet-url", base + "/page.parquet"), "not a parquet file")


def test_parquet_without_text_column_is_a_one_line_error(parquet_server, tmp_path: Path, monkeypatch, capsys):
    base, served = parquet_server
    pq.write_table(pa.table({"content": ["x" * 10]}), served / "other.parquet")
    assert_clean_error(prepare_main(tmp_path / "cache", monkeypatch, capsys, "--parquet-url", base + "/other.parquet"), "no `text` column")
