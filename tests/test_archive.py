"""The public archive through the real app (ASGI), on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import date
from html import unescape
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from fastapi import FastAPI
from sqlalchemy import Select, literal_column, select, text

from newsletter.core.models import Issue, IssueStatus, Paper, utcnow
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.issue.outbox import IssueFolder, RenderedIssue
from newsletter.papers.search import SearchParams, parse_query, pg_tsquery, search_papers
from newsletter.web import create_app
from tests.archive_support import add_papers, get, make_paper


@pytest.fixture
def app(settings: Settings, any_store: Store) -> FastAPI:
    return create_app(settings, store=any_store)


def titles(html: str) -> list[str]:
    return re.findall(r'<h3 id="paper-\d+"><a href="[^"]*">([^<]*)</a></h3>', html)


def count_line(html: str) -> str:
    found = re.search(r'<p class="count"[^>]*>(.*?)</p>', html, re.S)
    return " ".join(found.group(1).split()) if found else ""


def test_front_page_lists_papers_newest_first_with_signup(app: FastAPI, any_store: Store) -> None:
    add_papers(any_store, [make_paper(i) for i in range(12)])
    response = get(app, "/")
    assert response.status_code == 200
    html = response.text
    assert titles(html)[:2] == [
        "Federated learning for brain MRI tumour segmentation across hospitals (11)",
        "Deep learning triage of chest radiographs in the emergency department (10)",
    ]
    assert len(titles(html)) == 10
    assert count_line(html) == "Page 1 of 2 · 12 results"
    assert 'id="signup-title"' in html  # the signup partial is on the page
    assert "<main>" in html and 'role="search"' in html and '<label for="q">' in html
    assert 'class="badge source source-arxiv">arXiv<' in html
    assert 'class="badge kind kind-preprint">Preprint<' in html
    assert '<time datetime="2025-06-12">Jun 12, 2025</time>' in html
    assert "Author11 Alpha, Beatriz Gómez, Chen Wei" in html
    papers = get(app, "/papers").text  # the same list (the signup form's token is fresh each time)
    assert titles(papers) == titles(html) and count_line(papers) == count_line(html)


def test_search_covers_title_abstract_and_authors(app: FastAPI, any_store: Store) -> None:
    add_papers(
        any_store,
        [
            make_paper(
                1, title="Pneumothorax detection", abstract="A study.", authors=["Ana Ruiz"]
            ),
            make_paper(
                2, title="Other work", abstract="Pneumothorax on radiographs.", authors=["B C"]
            ),
            make_paper(3, title="Nothing relevant", abstract="Knee MRI.", authors=["Zed Quist"]),
        ],
    )
    assert titles(get(app, "/?q=pneumothorax").text) == ["Pneumothorax detection", "Other work"]
    assert titles(get(app, "/?q=quist").text) == ["Nothing relevant"]
    assert titles(get(app, "/?q=knee+-mri").text) == []
    assert titles(get(app, "/?q=knee+OR+ruiz&sort=oldest").text) == [
        "Pneumothorax detection",
        "Nothing relevant",
    ]
    assert count_line(get(app, "/?q=pneumothorax").text) == (
        "Page 1 of 1 · 2 results for “pneumothorax”"
    )


def test_phrases_match_as_typed(app: FastAPI, any_store: Store) -> None:
    add_papers(
        any_store,
        [
            make_paper(1, title="Chest X-ray triage", abstract="-"),
            make_paper(2, title="Ray tracing of the chest wall, x axis", abstract="-"),
        ],
    )
    assert titles(get(app, '/?q="chest+x-ray"').text) == ["Chest X-ray triage"]


def test_rows_written_by_anyone_are_searchable_and_updates_follow(
    app: FastAPI, any_store: Store
) -> None:
    [paper_id] = add_papers(any_store, [make_paper(1, title="Original wording")])
    assert titles(get(app, "/?q=original").text) == ["Original wording"]
    with any_store.write() as session:
        paper = session.get(Paper, paper_id)
        assert paper is not None
        paper.title = "Revised phrasing"
        session.add(paper)
    assert titles(get(app, "/?q=original").text) == []
    assert titles(get(app, "/?q=revised").text) == ["Revised phrasing"]
    with any_store.write() as session:
        session.execute(text("DELETE FROM papers"))
    assert "No papers yet" in get(app, "/?q=revised").text


def test_filters_sort_and_paging_live_in_the_url(app: FastAPI, any_store: Store) -> None:
    add_papers(any_store, [make_paper(i) for i in range(60)])
    html = get(app, "/?source=pubmed&kind=paper&per_page=25").text
    assert count_line(html) == "Page 1 of 1 · 20 results"
    assert all(t.endswith(f"({n})") for t, n in zip(titles(html), range(58, 0, -3), strict=True))
    html = get(app, "/?since=2025-06-10&until=2025-06-14&sort=oldest").text
    assert [t.rsplit(" ", 1)[1] for t in titles(html)] == ["(9)", "(10)", "(11)", "(12)", "(13)"]
    html = get(app, "/?per_page=10&page=3&sort=oldest").text
    assert count_line(html) == "Page 3 of 6 · 60 results"
    assert titles(html)[0].endswith("(20)")
    assert '<ol class="papers" start="21">' in html
    assert 'href="?sort=oldest&amp;page=4" rel="next"' in html
    assert 'href="?sort=oldest&amp;page=2" rel="prev"' in html
    assert '<a aria-current="page" href="?sort=oldest&amp;page=3">3</a>' in html
    html = get(app, "/?q=mammography&per_page=50").text
    assert count_line(html) == "Page 1 of 1 · 12 results for “mammography”"
    assert '<option value="50" selected>' in html
    assert 'value="mammography"' in html


def test_relevance_puts_title_matches_first(app: FastAPI, any_store: Store) -> None:
    add_papers(
        any_store,
        [
            make_paper(1, title="Cohort study", abstract="Secondary mention of elastography."),
            make_paper(2, title="Elastography of the liver", abstract="Stiffness."),
        ],
    )
    assert titles(get(app, "/?q=elastography").text)[0] == "Elastography of the liver"
    assert titles(get(app, "/?q=elastography&sort=newest").text)[0] == "Elastography of the liver"
    assert titles(get(app, "/?q=elastography&sort=oldest").text)[0] == "Cohort study"


BAD_QUERIES = [
    ('"', "no words in it"),
    ('"unbalanced quote', "No papers match"),
    ("NEAR(a b) AND title:x OR * ^", "No papers match"),
    ("-excluded", "only of excluded words"),
    ("x" * 5000, "only its first 500 characters"),
    ("%ff%fe", "no words in it"),
    ("%00drop%00", "No papers match"),
    ("'; DROP TABLE papers; --", "No papers match"),
]


@pytest.mark.parametrize(("raw", "says"), BAD_QUERIES)
def test_any_query_gets_a_normal_page(app: FastAPI, any_store: Store, raw: str, says: str) -> None:
    add_papers(any_store, [make_paper(i) for i in range(3)])
    query = raw if "%" in raw else raw.replace(" ", "+").replace('"', "%22").replace("#", "%23")
    response = get(app, f"/?q={query}")
    assert response.status_code == 200
    assert says in response.text
    assert 'id="empty-state"' in response.text
    # the store is untouched and still searchable
    assert count_line(get(app, "/").text) == "Page 1 of 1 · 3 results"


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("page=abc", "not a number"),
        ("page=-4", "not a number"),
        ("page=99999999999999999999", "There is no page"),
        ("page=7", "There is no page 7"),
        ("sort=loudest", "newest, oldest or relevance"),
        ("per_page=1000", "10, 25 or 50"),
        ("kind=poem", "'paper' (peer-reviewed) or 'preprint'"),
        ("since=yesterday", "needs a date like"),
        ("source=%27%20OR%201%3D1", "not one Slice knows"),
    ],
)
def test_bad_parameters_get_a_normal_page(
    app: FastAPI, any_store: Store, query: str, says: str
) -> None:
    add_papers(any_store, [make_paper(i) for i in range(15)])
    response = get(app, f"/?{query}")
    assert response.status_code == 200
    assert says in unescape(response.text)


def test_page_past_the_end_points_back(app: FastAPI, any_store: Store) -> None:
    add_papers(any_store, [make_paper(i) for i in range(15)])
    html = get(app, "/?page=7&kind=preprint").text
    assert "There is no page 7." in html
    assert "These results fill 1 page (10 results)." in html
    assert 'href="?kind=preprint">back to the first</a>' in html


def test_unknown_source_and_no_match_explain_themselves(app: FastAPI, any_store: Store) -> None:
    add_papers(any_store, [make_paper(i) for i in range(3)])
    html = get(app, "/?q=zebrafish&source=arxiv").text
    assert "No papers match “zebrafish” with these filters." in html
    assert 'href="?q=zebrafish">Search without the filters</a>' in html
    html = get(app, "/?source=biorxiv").text
    assert "No papers match these filters." in html
    assert '<option value="biorxiv" selected>' in html


def test_empty_archive(app: FastAPI) -> None:
    html = get(app, "/").text
    assert "No papers yet." in html


def test_titles_keep_inline_markup_and_nothing_else(app: FastAPI, any_store: Store) -> None:
    add_papers(
        any_store,
        [
            make_paper(
                1,
                title='T<sub>2</sub> maps of <i>in vivo</i> <script>alert(1)</script><a href="x">x</a>',
                abstract='<img src=x onerror="alert(1)">Text',
                url="javascript:alert(1)",
                doi="10.1/abc",
            )
        ],
    )
    html = get(app, "/").text
    assert "T<sub>2</sub> maps of <i>in vivo</i>" in html
    assert "<script>alert" not in html and "onerror" not in html and "<img" not in html
    assert 'href="https://doi.org/10.1/abc"' in html
    assert "javascript:" not in html


def _sent_issue(settings: Settings, store: Store, issue_id: str, number: int, **kw: object) -> None:
    folder = IssueFolder.of(settings.outbox_dir, issue_id)
    folder.root.mkdir(parents=True, exist_ok=True)
    folder.web_html.write_text(
        f"<!doctype html><html><body><h1>Issue {number}</h1><p>Web copy</p></body></html>",
        encoding="utf-8",
    )
    folder.message.write_text(
        RenderedIssue(
            issue_id=issue_id,
            number=number,
            subject=f"Radiology AI Weekly #{number}",
            preheader=f"{number + 4} papers on triage & segmentation",
            date="2025-06-16",
            window_start="2025-06-09",
            window_end="2025-06-15",
            web_url=f"http://127.0.0.1:8000/issues/{issue_id}",
            paper_count=number + 4,
            rendered_at="2025-06-16T07:00:00+00:00",
        ).to_json(),
        encoding="utf-8",
    )
    with store.write() as session:
        session.add(
            Issue(
                id=issue_id,
                number=number,
                subject=f"Radiology AI Weekly #{number}",
                window_start=date(2025, 6, 2 + 7 * number),
                window_end=date(2025, 6, 8 + 7 * number),
                **kw,  # type: ignore[arg-type]
            )
        )


def test_issues_lists_only_sent_issues(app: FastAPI, settings: Settings, any_store: Store) -> None:
    assert "No issues have gone out yet." in get(app, "/issues").text
    _sent_issue(settings, any_store, "2025-W24", 1, status=IssueStatus.SENT.value, sent_at=utcnow())
    _sent_issue(settings, any_store, "2025-W25", 2, status=IssueStatus.SENT.value, sent_at=utcnow())
    _sent_issue(settings, any_store, "2025-W26", 3, status=IssueStatus.COMPOSED.value)
    html = get(app, "/issues").text
    links = re.findall(r'<a href="/issues/([^"]+)">([^<]+)</a>', html)
    assert links == [
        ("2025-W25", "Radiology AI Weekly #2"),
        ("2025-W24", "Radiology AI Weekly #1"),
    ]
    assert "6 papers" in html and "6 papers on triage &amp; segmentation" in html


def test_issue_web_copy_is_served_and_drafts_are_not(
    app: FastAPI, settings: Settings, any_store: Store
) -> None:
    _sent_issue(settings, any_store, "2025-W24", 1, status=IssueStatus.SENT.value, sent_at=utcnow())
    _sent_issue(settings, any_store, "2025-W26", 3, status=IssueStatus.COMPOSED.value)
    response = get(app, "/issues/2025-W24")
    assert response.status_code == 200
    assert "<h1>Issue 1</h1><p>Web copy</p>" in response.text
    draft = get(app, "/issues/2025-W26")
    assert draft.status_code == 404
    assert "There is no sent issue called “2025-W26”." in draft.text
    for bad in ("nope", "..%2F..%2Fslice.toml", "%ff", "x" * 300):
        response = get(app, f"/issues/{bad}")
        assert response.status_code == 404
        assert "See every past issue" in response.text


def test_issue_with_missing_files_is_a_404_page(
    app: FastAPI, settings: Settings, any_store: Store
) -> None:
    _sent_issue(settings, any_store, "2025-W24", 1, status=IssueStatus.SENT.value, sent_at=utcnow())
    IssueFolder.of(settings.outbox_dir, "2025-W24").web_html.unlink()
    response = get(app, "/issues/2025-W24")
    assert response.status_code == 404
    assert "The web copy of issue 2025-W24 is not available right now." in response.text


def test_atom_feed_of_sent_issues(app: FastAPI, settings: Settings, any_store: Store) -> None:
    _sent_issue(settings, any_store, "2025-W24", 1, status=IssueStatus.SENT.value, sent_at=utcnow())
    _sent_issue(settings, any_store, "2025-W26", 3, status=IssueStatus.COMPOSED.value)
    response = get(app, "/feed.xml")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/atom+xml")
    ns = {"a": "http://www.w3.org/2005/Atom"}
    root = ElementTree.fromstring(response.content)
    assert root.findtext("a:title", namespaces=ns) == "Test Weekly"
    entries = root.findall("a:entry", ns)
    assert len(entries) == 1
    assert entries[0].findtext("a:title", namespaces=ns) == "Radiology AI Weekly #1"
    link = entries[0].find("a:link", ns)
    assert link is not None
    assert link.get("href") == f"{settings.web.base_url}/issues/2025-W24"
    assert entries[0].findtext("a:summary", namespaces=ns) == "5 papers on triage & segmentation"
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", root.findtext("a:updated", namespaces=ns) or ""
    )


def test_project_templates_override_the_archive(
    settings: Settings, any_store: Store, tmp_path: Path
) -> None:
    (settings.templates_dir / "web").mkdir(parents=True, exist_ok=True)
    (settings.templates_dir / "web" / "issues.html").write_text(
        "Our own issues page", encoding="utf-8"
    )
    app = create_app(settings, store=any_store)
    assert get(app, "/issues").text == "Our own issues page"


def test_postgres_search_uses_the_gin_index(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: SQLite searches its FTS5 table")
    parsed, _ = parse_query('chest "x-ray" -knee OR mammography')
    stmt: Select[Any] = select(literal_column("paper_id")).select_from(text("paper_search"))
    stmt = stmt.where(literal_column("document").op("@@")(pg_tsquery(parsed)))
    with Store.open(db_url) as store, store.write() as session:
        dialect = store.engine.dialect
        sql = str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(str(row[0]) for row in session.execute(text(f"EXPLAIN {sql}")))
    assert "ix_paper_search_document" in plan


def test_postgres_search_documents_follow_every_write(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: SQLite has its own trigger test")
    with Store.open(db_url) as store:
        [paper_id] = add_papers(store, [make_paper(1, title="Original wording")])
        with store.write() as session:
            session.execute(
                text("UPDATE papers SET title = 'Revised phrasing' WHERE id = :i"), {"i": paper_id}
            )
        with store.read() as session:
            assert search_papers(session, SearchParams(q="original")).total == 0
            assert search_papers(session, SearchParams(q="revised")).total == 1
        with store.write() as session:
            session.execute(text("DELETE FROM papers"))
        with store.read() as session:
            assert session.execute(text("SELECT count(*) FROM paper_search")).scalar_one() == 0


def test_sqlite_rows_inserted_with_plain_sql_are_indexed(store: Store) -> None:
    with store.write() as session:
        session.execute(
            text(
                "INSERT INTO papers (title, authors, abstract, source, kind, published, url, "
                "journal, title_key, seen_in, extra, first_seen, updated_at) VALUES "
                "('Cardiac CT by another tool', '[\"Dana Scully\"]', 'Calcium scoring.', 'rss', "
                "'paper', '2025-06-01', '', '', '', '[]', '{}', '2025-06-01', '2025-06-01')"
            )
        )
    with store.read() as session:
        found = search_papers(session, SearchParams(q="scully calcium"))
    assert [p.title for p in found.papers] == ["Cardiac CT by another tool"]


def test_a_submitted_form_lands_on_the_short_url(app: FastAPI, any_store: Store) -> None:
    add_papers(any_store, [make_paper(i) for i in range(3)])
    response = get(app, "/?q=chest&source=&kind=&since=&until=&sort=&per_page=10", follow=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/?q=chest"
    assert get(app, "/papers?page=1", follow=False).headers["location"] == "/papers"
    assert get(app, "/?q=chest&sort=oldest", follow=False).status_code == 200
    # a page with something to say about the URL is shown, not redirected
    assert get(app, "/?q=chest&sort=loudest&source=", follow=False).status_code == 200


def test_sort_menu_defaults_to_best_match(app: FastAPI, any_store: Store) -> None:
    add_papers(any_store, [make_paper(i) for i in range(3)])
    page = get(app, "/?q=chest").text
    assert '<option value="" selected>Best match</option>' in page
    assert '<details class="filters">' in page  # closed: no filter is set
    page = get(app, "/?q=chest&sort=oldest").text
    assert '<option value="oldest" selected>' in page
    assert '<details class="filters" open>' in page


def test_authors_are_found_by_their_names_as_written(app: FastAPI, any_store: Store) -> None:
    add_papers(
        any_store,
        [
            make_paper(1, title="Embolism study", authors=["María José Fernández", "Łukasz Ząbek"]),
            make_paper(2, title="Other study", authors=["John Fern"]),
        ],
    )
    assert titles(get(app, "/?q=Fernández").text) == ["Embolism study"]
    assert titles(get(app, "/?q=Ząbek").text) == ["Embolism study"]
    assert titles(get(app, "/?q=u00e1ndez").text) == []


def test_sqlite_accents_are_optional_and_odd_authors_do_not_break_inserts(store: Store) -> None:
    add_papers(store, [make_paper(1, title="Embolism study", authors=["María José Fernández"])])
    with store.write() as session:
        session.execute(
            text(
                "INSERT INTO papers (title, authors, abstract, source, kind, published, url, "
                "journal, title_key, seen_in, extra, first_seen, updated_at) VALUES "
                "('Hand-made row', '\"Json Solo\"', '', 'rss', 'paper', '2025-06-01', '', '', "
                "'', '[]', '{}', '2025-06-01', '2025-06-01')"
            )
        )
    with store.read() as session:
        assert [p.title for p in search_papers(session, SearchParams(q="fernandez")).papers] == [
            "Embolism study"
        ]
        assert [p.title for p in search_papers(session, SearchParams(q="json")).papers] == [
            "Hand-made row"
        ]
