"""One record per work: dedup, merge, preprint links, rejections, and `slice ingest`."""

from __future__ import annotations

import itertools
import json
import shutil
import threading
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select
from typer.testing import Result

from newsletter.core.models import Paper
from newsletter.core.store import Store
from newsletter.papers.ingest import CHUNK, ingest, ingest_files
from newsletter.papers.queries import journal_version_of, preprint_for, preprints_for
from newsletter.papers.records import normalize_doi
from newsletter.papers.sources.base import PaperRecord
from tests.conftest import FIXTURES

HERE = FIXTURES / "sources"


def rec(**kw: Any) -> PaperRecord:
    base: dict[str, Any] = {
        "title": "Deep learning detects lung nodules on chest CT",
        "source": "pubmed",
        "published": date(2025, 6, 10),
        "authors": ["Anna Müller", "Chidi Okafor"],
        "abstract": "Abstract.",
        "kind": "paper",
    }
    base.update(kw)
    return PaperRecord(**base)


def papers(store: Store) -> list[Paper]:
    with store.read() as session:
        return list(session.exec(select(Paper).order_by(Paper.id)))  # type: ignore[arg-type]


def snapshot(store: Store) -> list[dict[str, Any]]:
    return [p.model_dump() for p in papers(store)]


def test_doi_is_normalized() -> None:
    assert normalize_doi("https://doi.org/10.1148/RYAI.250001") == "10.1148/ryai.250001"
    assert normalize_doi("doi: 10.1000/ABC.") == "10.1000/abc"
    assert normalize_doi("not a doi") is None


def test_same_work_from_two_sources_is_one_record(any_store: Store) -> None:
    first = ingest(any_store, [rec(doi="10.1148/RYAI.1", pmid="41000001")], origin="pubmed-ai")
    second = ingest(
        any_store,
        [rec(source="rss", doi="https://doi.org/10.1148/ryai.1", journal="Radiology", abstract="")],
        origin="journal-feed",
    )
    assert (first.new, second.merged) == (1, 1)
    (paper,) = papers(any_store)
    assert paper.doi == "10.1148/ryai.1" and paper.pmid == "41000001"
    assert paper.journal == "Radiology"  # a blank filled in by the other source
    assert paper.abstract == "Abstract."  # not overwritten by another source's blank
    assert [s.split("@")[0] for s in paper.seen_in] == ["pubmed-ai", "journal-feed"]


@pytest.mark.parametrize(
    ("stored", "incoming"),
    [
        ({"pmid": "123"}, {"pmid": "123", "doi": "10.1000/x"}),
        ({"pmcid": "PMC55"}, {"pmcid": "55"}),
        (
            {"arxiv_id": "2508.01234", "source": "arxiv", "kind": "preprint"},
            {"arxiv_id": "arXiv:2508.01234v3", "source": "rss", "kind": "preprint"},
        ),
        (
            {"authors": ["E. A. Bruce"]},
            {
                "title": "DEEP learning detects lung-nodules on chest CT.",
                "authors": ["Bruce, E."],
                "published": date(2026, 1, 2),
                "source": "rss",
            },
        ),
    ],
    ids=["pmid", "pmcid", "arxiv-without-version", "title-author-year"],
)
def test_dedup_keys(store: Store, stored: dict[str, Any], incoming: dict[str, Any]) -> None:
    ingest(store, [rec(**stored)], origin="a")
    result = ingest(store, [rec(**incoming)], origin="b")
    assert result.merged == 1 and len(papers(store)) == 1


def test_same_title_but_other_first_author_or_year_is_another_work(store: Store) -> None:
    ingest(store, [rec()], origin="a")
    ingest(store, [rec(authors=["Zoe Smith"]), rec(published=date(2020, 1, 1))], origin="b")
    assert len(papers(store)) == 3


def test_preprint_and_journal_version_are_linked_not_merged(any_store: Store) -> None:
    preprint = rec(
        source="medrxiv",
        kind="preprint",
        doi="10.1101/2025.01.01.1",
        published=date(2025, 1, 2),
        published_doi="10.1148/radiol.9",
    )
    journal = rec(doi="10.1148/RADIOL.9", pmid="4242")
    ingest(any_store, [preprint], origin="medrxiv")
    result = ingest(any_store, [journal], origin="pubmed")
    assert result.linked == 1
    stored_preprint, stored_journal = papers(any_store)
    assert stored_preprint.published_version_id == stored_journal.id
    with any_store.read() as session:
        assert preprint_for(session, stored_journal).id == stored_preprint.id  # type: ignore[union-attr]
        assert journal_version_of(session, stored_preprint).id == stored_journal.id  # type: ignore[union-attr]
        assert preprint_for(session, stored_preprint) is None
        found = preprints_for(session, [stored_journal, stored_preprint])
        assert {k: v.id for k, v in found.items()} == {stored_journal.id: stored_preprint.id}


def test_link_made_in_the_other_order_and_by_title(store: Store) -> None:
    ingest(store, [rec(doi="10.1148/radiol.9")], origin="pubmed")
    ingest(
        store,
        [
            rec(
                source="medrxiv",
                kind="preprint",
                doi="10.1101/x.1",
                published_doi="10.1148/radiol.9",
            )
        ],
        origin="medrxiv",
    )
    # no DOI link at all: an arXiv preprint with the same title, first author and year
    ingest(store, [rec(title="Transformers segment the liver", doi="10.2000/j")], origin="pubmed")
    result = ingest(
        store,
        [
            rec(
                title="Transformers segment the liver.",
                source="arxiv",
                kind="preprint",
                arxiv_id="2501.00001",
            )
        ],
        origin="arxiv",
    )
    assert result.linked == 1
    journal, preprint, journal2, preprint2 = papers(store)
    assert preprint.published_version_id == journal.id
    assert preprint2.published_version_id == journal2.id and preprint2.kind == "preprint"


def test_two_ingests_at_once_store_each_work_once(any_store: Store) -> None:
    chunks = (CHUNK, CHUNK, 100)  # what each ingest writes, one transaction each
    total = sum(chunks)
    batch = [rec(title=f"Work number {n} on chest CT", doi=f"10.5555/w.{n}") for n in range(total)]
    results: list[Any] = []

    def run(origin: str) -> None:
        copies = [PaperRecord(**{**r.__dict__, "extra": {}}) for r in batch]
        results.append(ingest(any_store, copies, origin=origin))

    threads = [threading.Thread(target=run, args=(f"feed-{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # each chunk is one write transaction, and the two ingests take turns chunk by
    # chunk in whatever order the lock goes: each chunk is stored by one of them
    # (all new) and met by the other (all merged), never split between them
    whole_chunks = {sum(c) for c in itertools.product(*[(0, n) for n in chunks])}
    assert [r.new + r.merged for r in results] == [total, total]
    assert sum(r.new for r in results) == total
    assert {r.new for r in results} <= whole_chunks
    assert len(papers(any_store)) == total


def test_reingesting_the_same_data_changes_nothing(store: Store) -> None:
    first = ingest_files(store, [HERE / "pubmed_traps.xml", HERE / "medrxiv_page.json"])
    before = snapshot(store)
    again = ingest_files(store, [HERE / "pubmed_traps.xml", HERE / "medrxiv_page.json"])
    assert [r.new for r in first] == [3, 2]
    assert [(r.new, r.updated, r.merged, r.unchanged) for r in again] == [
        (0, 0, 0, 3),
        (0, 0, 0, 2),
    ]
    assert snapshot(store) == before


def test_same_source_reporting_a_new_version_updates(store: Store) -> None:
    ingest(store, [rec(abstract="v1", extra={"version": 1})], origin="pubmed")
    result = ingest(store, [rec(abstract="v2 with more", extra={"version": 2})], origin="pubmed")
    assert result.updated == 1
    assert papers(store)[0].abstract == "v2 with more"
    older = ingest(store, [rec(abstract="v1", extra={"version": 1})], origin="pubmed")
    assert older.unchanged == 1 and papers(store)[0].abstract == "v2 with more"


def test_records_without_title_or_date_are_rejected_and_counted(store: Store) -> None:
    (result,) = ingest_files(store, [HERE / "papers.jsonl"])
    assert (result.fetched, result.new) == (4, 1)
    reasons = [(r.where, r.reason) for r in result.rejected]
    assert reasons == [
        ("'No date here'", "no publication date"),
        ("record line 3", "no title"),
        ("'Bad kind'", "kind must be 'paper' or 'preprint', not 'blogpost'"),
    ]
    (paper,) = papers(store)
    assert paper.doi == "10.5555/hand.1" and paper.authors == ["J. Doe"]
    assert paper.title == "A hand-picked paper"


def test_pubmed_record_without_title_is_rejected(store: Store) -> None:
    (result,) = ingest_files(store, [HERE / "pubmed_traps.xml"])
    assert [(r.where, r.reason) for r in result.rejected] == [("PMID 41000004", "no title")]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("pubmed_truncated.xml", "malformed or truncated PubMed XML at line"),
        ("latin1.csv", "not UTF-8 text"),
        ("notes.txt", "unknown format"),
        ("error_page.xml", "an HTML page, not a paper file"),
        ("broken.json", "not valid JSON at line 2 column 1"),
        ("broken.jsonl", "line 2 is not valid JSON"),
        ("empty.jsonl", "the file is empty"),
    ],
)
def test_a_bad_file_leaves_the_database_as_it_was(
    store: Store, tmp_path: Path, name: str, message: str
) -> None:
    ingest_files(store, [HERE / "medrxiv_page.json"])
    before = snapshot(store)
    (result,) = ingest_files(store, [HERE / name])
    assert result.error is not None and message in result.error and name in result.error
    assert snapshot(store) == before


def test_non_utf8_pubmed_xml_is_refused(store: Store, tmp_path: Path) -> None:
    latin = tmp_path / "latin.xml"
    latin.write_bytes(
        (HERE / "pubmed_traps.xml").read_bytes().replace("Müller".encode(), b"M\xfcller")
    )
    (result,) = ingest_files(store, [latin])
    assert result.error is not None
    assert result.error == (
        f"{latin}: bytes at line 23 are not in the file's encoding (UTF-8 unless its XML "
        "declaration names another); save the file as UTF-8 and ingest it again."
    )
    assert papers(store) == []


def test_truncated_pubmed_stores_none_of_its_records(store: Store, tmp_path: Path) -> None:
    # the first article is complete in the truncated file, and still nothing is kept
    text = (HERE / "pubmed_traps.xml").read_text()
    cut = tmp_path / "cut.xml"
    cut.write_text(text[: text.index("<PubmedArticle>", text.index("</PubmedArticle>")) + 40])
    (result,) = ingest_files(store, [cut])
    assert result.error and papers(store) == []


# --- the commands -----------------------------------------------------------


def test_cli_ingest_shows_the_table_and_fails_for_a_bad_file(
    run_cli: Callable[..., Result], project: Path
) -> None:
    good = project / "week.xml"
    shutil.copy(HERE / "pubmed_traps.xml", good)
    result = run_cli("ingest", str(good), str(HERE / "notes.txt"))
    assert result.exit_code == 1
    assert "file:week.xml" in result.stdout and "failed" in result.stdout
    lines = [line for line in result.stdout.splitlines() if "file:week.xml" in line]
    # fetched, new, updated, unchanged, merged, linked, rejected
    assert lines[0].split()[1:8] == ["4", "3", "0", "0", "0", "0", "1"]
    assert "Rejected: file:week.xml: PMID 41000004: no title" in result.stderr
    assert "file:week.xml (done)" in result.stderr and "file:notes.txt (failed)" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: 1 file failed; the others were stored: ")
    assert "notes.txt: unknown format" in last
    listed = run_cli("papers", "--json")
    assert {p["pmid"] for p in json.loads(listed.stdout)} == {"41000001", "41000002", "41000003"}


def test_cli_ingest_format_option(run_cli: Callable[..., Result]) -> None:
    result = run_cli("ingest", "--format", "pubmed", str(HERE / "medrxiv_page.json"))
    assert result.exit_code == 1 and "Error: 1 file failed" in result.stderr
    bad = run_cli("ingest", "--format", "word", str(HERE / "papers.csv"))
    assert bad.exit_code == 1 and bad.stderr.startswith("Error: --format 'word' is not a format")


def test_cli_papers_filters(run_cli: Callable[..., Result]) -> None:
    run_cli(
        "ingest",
        str(HERE / "pubmed_traps.xml"),
        str(HERE / "medrxiv_page.json"),
        str(HERE / "papers.csv"),
    )
    week = run_cli("papers", "--week", "2026-W25", "--json")
    assert [p["title"] for p in json.loads(week.stdout)] == [
        "AI triage of head CT: a multicentre study"
    ]
    # the archive's full-text search: stems, and authors as written
    for words in ("nodule", "Müller", '"lung nodules" -pediatric'):
        found = run_cli("papers", "--search", words, "--json")
        assert [p["pmid"] for p in json.loads(found.stdout)] == ["41000001"], words
    by_source = run_cli("papers", "--source", "medrxiv", "--json")
    assert len(json.loads(by_source.stdout)) == 2
    table = run_cli("papers", "--source", "editor")
    assert table.exit_code == 0 and "CSV paper one" in table.stdout and "1 paper" in table.stdout
    assert "1 papers" not in table.stdout  # the title counts in words: "1 paper", "2 papers"
    bad = run_cli("papers", "--week", "2025-24")
    assert bad.exit_code == 1
    assert (
        bad.stderr.strip() == "Error: --week: '2025-24' is not an ISO week; write it like 2025-W24."
    )


def test_the_kinds_a_record_may_have_are_the_models_kinds() -> None:
    """records.KINDS is spelled out (the read-ahead process skips the models); it must not drift."""
    from newsletter.core.models import PaperKind
    from newsletter.papers.records import KINDS

    assert {k.value for k in PaperKind} == KINDS
