"""Ingest writes in short chunks: a big file parsed ahead, and what a break halfway keeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.core.store import Store
from newsletter.papers import readahead
from newsletter.papers.ingest import CHUNK, ingest_files
from tests.load_support import pubmed_file


@pytest.fixture
def parse_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file in these tests counts as big: parsed in the helper process."""
    monkeypatch.setattr(readahead, "READ_AHEAD_BYTES", 10_000)


@pytest.mark.usefixtures("parse_ahead")
def test_a_big_file_is_parsed_ahead_and_stored_whole(store: Store, tmp_path: Path) -> None:
    path = pubmed_file(tmp_path / "big.xml", 2 * CHUNK + 37)
    (result,) = ingest_files(store, [path])
    assert result.error is None
    assert (result.fetched, result.new) == (2 * CHUNK + 37, 2 * CHUNK + 37)
    (again,) = ingest_files(store, [path])
    assert (again.new, again.unchanged) == (0, 2 * CHUNK + 37)
    # the transactions were short ones (no timing is asserted: only that one was measured)
    assert result.longest_write_ms > 0


@pytest.mark.usefixtures("parse_ahead")
def test_a_file_that_breaks_halfway_keeps_the_chunks_before_and_says_so(
    store: Store, tmp_path: Path
) -> None:
    path = pubmed_file(tmp_path / "export.xml", 2 * CHUNK + 100)
    text = path.read_text()
    cut_at = text.index("<PubmedArticle>", text.index(f"load.{2 * CHUNK + 50}<"))
    path.write_text(text[: cut_at + 60])
    (result,) = ingest_files(store, [path])
    assert result.error is not None
    assert "malformed or truncated PubMed XML" in result.error
    assert result.error.endswith(
        f"({2 * CHUNK} records before it were stored; ingesting the file again once it is "
        "fixed stores the rest, and nothing twice)"
    )
    assert result.new == 2 * CHUNK
    path.write_text(text)  # the whole file, downloaded again
    (fixed,) = ingest_files(store, [path])
    assert (fixed.new, fixed.unchanged) == (100, 2 * CHUNK)


def test_a_small_file_is_read_in_this_process(store: Store, tmp_path: Path) -> None:
    path = pubmed_file(tmp_path / "small.xml", 3)
    assert path.stat().st_size < readahead.READ_AHEAD_BYTES
    (result,) = ingest_files(store, [path])
    assert (result.error, result.new) == (None, 3)
