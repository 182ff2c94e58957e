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


_HOSTILE = (
    # deep markup, a control character (U+0085), a bad DOI, no title, a glued heading
    "<PubmedArticle><MedlineCitation><PMID>39000001</PMID><Article><ArticleTitle>Deep "
    "<i><b><sub><sup><i>nest</i></sup></sub></b></i> title\u0085 here.</ArticleTitle>"
    "<Abstract><AbstractText>BackgroundA range of p &lt; 0.05 &amp; V<sub>2</sub>."
    "</AbstractText></Abstract><ArticleDate><Year>2025</Year><Month>6</Month><Day>2</Day>"
    "</ArticleDate></Article></MedlineCitation><PubmedData><ArticleIdList>"
    '<ArticleId IdType="pubmed">39000001</ArticleId></ArticleIdList></PubmedData></PubmedArticle>'
    "<PubmedArticle><MedlineCitation><PMID>39000002</PMID><Article><ArticleTitle>A bad DOI"
    "</ArticleTitle><ArticleDate><Year>2025</Year><Month>6</Month><Day>2</Day></ArticleDate>"
    "</Article></MedlineCitation><PubmedData><ArticleIdList>"
    '<ArticleId IdType="doi">not a doi</ArticleId></ArticleIdList></PubmedData></PubmedArticle>'
    "<PubmedArticle><MedlineCitation><PMID>39000003</PMID><Article><ArticleTitle> </ArticleTitle>"
    "<ArticleDate><Year>2025</Year><Month>6</Month><Day>2</Day></ArticleDate></Article>"
    "</MedlineCitation></PubmedArticle>"
)


def _stored(store: Store) -> list[tuple[object, ...]]:
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT title, abstract, authors, doi, pmid, extra FROM papers ORDER BY pmid"
        )
        return [tuple(row) for row in rows]


def test_records_validated_in_the_helper_process_are_stored_as_in_this_one(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation runs where the parse runs; what is stored and rejected must not depend on it."""
    path = pubmed_file(tmp_path / "mixed.xml", CHUNK + 20)
    path.write_text(
        path.read_text().replace("</PubmedArticleSet>", _HOSTILE + "</PubmedArticleSet>")
    )
    (here,) = ingest_files(store, [path])
    monkeypatch.setattr(readahead, "READ_AHEAD_BYTES", 10_000)
    with Store.open(f"sqlite:///{tmp_path / 'ahead.db'}") as other:
        (ahead,) = ingest_files(other, [path])
        assert _stored(other) == _stored(store)
    assert (here.error, here.new) == (None, CHUNK + 21)
    assert (ahead.error, ahead.new) == (None, CHUNK + 21)
    assert [(r.where, r.reason) for r in ahead.rejected] == [
        (r.where, r.reason) for r in here.rejected
    ]
    assert [r.reason for r in here.rejected] == ["doi 'not a doi' is not valid", "no title"]
