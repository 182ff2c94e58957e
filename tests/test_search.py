"""Archive search as a reader types it: prefixes, word forms, marked-up text, broad searches.

Each test runs on SQLite and on PostgreSQL (when SLICE_TEST_DATABASE_URL is set).
"""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from sqlalchemy import text

from newsletter.core.migrations import discover, migrate
from newsletter.core.settings import Settings
from newsletter.core.store import Store, make_engine
from newsletter.papers import search
from newsletter.papers.search import SearchParams, parse_query, search_papers
from newsletter.web import create_app
from tests.archive_support import add_papers, get, make_paper
from tests.test_archive import count_line, titles


@pytest.fixture
def app(settings: Settings, any_store: Store) -> FastAPI:
    return create_app(settings, store=any_store)


def found(store: Store, q: str, **params: object) -> list[str]:
    with store.read() as session:
        page = search_papers(session, SearchParams(q=q, **params))  # type: ignore[arg-type]
    return sorted(p.title for p in page.papers)


def test_a_word_ending_in_a_star_finds_every_word_it_starts(any_store: Store) -> None:
    add_papers(
        any_store,
        [
            make_paper(1, title="Mammography screening in Norway", abstract="-"),
            make_paper(2, title="Mammograms read by two radiologists", abstract="-"),
            make_paper(3, title="Mammals and CT", abstract="-"),
            make_paper(4, title="Chest X-ray triage", abstract="-"),
        ],
    )
    assert found(any_store, "mammo*") == [
        "Mammograms read by two radiologists",
        "Mammography screening in Norway",
    ]
    assert found(any_store, "mamm*") == [
        "Mammals and CT",
        "Mammograms read by two radiologists",
        "Mammography screening in Norway",
    ]
    assert found(any_store, "mammo") == []  # without the star, a whole word
    assert found(any_store, "x-ra*") == ["Chest X-ray triage"]
    assert found(any_store, "mam* -mammals") == [
        "Mammograms read by two radiologists",
        "Mammography screening in Norway",
    ]


def test_one_letter_before_the_star_is_a_whole_word_with_a_note(app: FastAPI) -> None:
    parsed, notes = parse_query("m* ok*")
    assert [(t.text, t.prefix) for t in parsed.groups[0]] == [("m", False), ("ok", True)]
    assert notes == [
        "A word ending in * needs at least 2 letters before the *;"
        " shorter ones were searched as whole words."
    ]
    assert "needs at least 2 letters" in get(app, "/?q=m*").text


def test_plural_and_singular_find_each_other(any_store: Store) -> None:
    add_papers(
        any_store,
        [
            make_paper(1, title="Radiographs of the knee", abstract="-"),
            make_paper(2, title="One radiograph per patient", abstract="-"),
            make_paper(3, title="Studies of screening", abstract="-"),
            make_paper(4, title="A study of screened women", abstract="-"),
        ],
    )
    both = ["One radiograph per patient", "Radiographs of the knee"]
    assert found(any_store, "radiograph") == both
    assert found(any_store, "radiographs") == both
    assert found(any_store, "study") == ["A study of screened women", "Studies of screening"]
    assert found(any_store, "screen") == ["A study of screened women", "Studies of screening"]


def test_the_index_holds_the_text_a_reader_sees_not_its_markup(any_store: Store) -> None:
    add_papers(
        any_store,
        [
            make_paper(1, title="Peak VO<sub>2</sub>max after training", abstract="-"),
            make_paper(2, title="Effects <i>in vivo</i>", abstract="Significant (p &lt; 0.05)."),
            make_paper(3, title="Dose of 10<sup>-3</sup> Gy", abstract="Bone &amp; muscle."),
            make_paper(4, title="A subgroup analysis", abstract="-"),
        ],
    )
    assert found(any_store, "VO2max") == ["Peak VO<sub>2</sub>max after training"]
    assert found(any_store, "vo2*") == ["Peak VO<sub>2</sub>max after training"]
    assert found(any_store, "sub") == []  # no longer every paper with a subscript
    assert found(any_store, "sub*") == ["A subgroup analysis"]
    assert found(any_store, "sup OR lt OR amp OR i") == []
    assert found(any_store, '"in vivo"') == ["Effects <i>in vivo</i>"]
    assert found(any_store, "bone muscle") == ["Dose of 10<sup>-3</sup> Gy"]


def test_repeated_words_are_searched_once(any_store: Store) -> None:
    parsed, notes = parse_query(" OR ".join(["mri"] * 20) + " ct ct")
    assert len(parsed.groups) == 2 and notes == []
    assert [t.text for t in parsed.groups[1]] == ["mri", "ct"]
    add_papers(any_store, [make_paper(1, title="Knee MRI", abstract="-")])
    assert found(any_store, " OR ".join(["mri"] * 16)) == ["Knee MRI"]


def test_a_very_broad_search_ranks_the_newest_matches_and_says_so(
    app: FastAPI, any_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "RANK_LIMIT", 4)  # 10,000 in use; the same code path
    ids = add_papers(
        any_store,
        [make_paper(i, title=f"Chest study {i}", abstract="chest " * (i + 1)) for i in range(7)],
    )
    with any_store.read() as session:
        page = search_papers(session, SearchParams(q="chest"))
        assert page.total == 7 and page.ranked == 4 and page.pages == 1
        # the four stored last, the one with the word most often first
        assert [p.id for p in page.papers] == [ids[6], ids[5], ids[4], ids[3]]
        by_date = search_papers(session, SearchParams(q="chest", sort="oldest", per_page=10))
        assert by_date.ranked is None and len(by_date.papers) == 7
    html = get(app, "/?q=chest").text
    assert "7 papers match: the 4 most recently added are ranked by relevance here." in html
    assert count_line(html) == "Page 1 of 1 · 7 results for “chest”"
    assert len(titles(html)) == 4


def test_filters_with_words_on_both_sorts(any_store: Store) -> None:
    add_papers(any_store, [make_paper(i) for i in range(12)])  # "learning" in 0, 1, 5, 6, 10, 11
    with any_store.read() as session:
        newest = search_papers(session, SearchParams(q="learning", source="pubmed", sort="newest"))
        best = search_papers(session, SearchParams(q="learning", source="pubmed"))
    assert {p.source for p in newest.papers} == {"pubmed"} and newest.total == 2
    assert [p.title for p in newest.papers] == [
        "Deep learning triage of chest radiographs in the emergency department (10)",
        "Federated learning for brain MRI tumour segmentation across hospitals (1)",
    ]
    assert best.total == 2 and {p.source for p in best.papers} == {"pubmed"}


def test_the_migration_reindexes_papers_stored_before_it(db_url: str) -> None:
    before = [m for m in discover() if m.name < "m100"]
    engine = make_engine(db_url)
    try:
        migrate(engine, before)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO papers (title, authors, abstract, source, kind, published, url, "
                    "journal, title_key, seen_in, extra, first_seen, updated_at) VALUES "
                    "('Peak VO<sub>2</sub>max', '[\"Ana Ruiz\"]', 'Mammograms.', 'rss', "
                    "'paper', '2025-06-01', '', '', '', '[]', '{}', '2025-06-01', '2025-06-01')"
                )
            )
    finally:
        engine.dispose()
    with Store.open(db_url) as store:  # runs m100 and what follows
        assert found(store, "vo2max") == found(store, "mammo*") == ["Peak VO<sub>2</sub>max"]
        assert found(store, "sub") == []
        assert found(store, "ruiz") == ["Peak VO<sub>2</sub>max"]
