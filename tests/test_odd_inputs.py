"""Inputs nobody sends on purpose: each record is stored or refused by name, never garbled.

Written from what a first run of `slice ingest` and `slice subscribers import` did with
hand-made variants of the recorded payloads (nulls, wrong types, deep nesting).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from sqlmodel import select
from typer.testing import Result

from newsletter.core.config import load_settings
from newsletter.core.models import Paper
from newsletter.core.store import Store
from newsletter.papers.ingest import ingest_files
from tests.composedata import add_papers, project_settings
from tests.conftest import FIXTURES
from tests.signup_support import rows

GOOD = {
    "title": "Estimates of severity",
    "authors": "Verity, R.; Okell, L. C.",
    "doi": "10.1101/2020.03.09.20033357",
    "date": "2020-03-13",
    "version": "1",
    "abstract": "A range of estimates.",
    "published": "NA",
    "server": "medRxiv",
}


def _item(doi: str, **changes: object) -> dict[str, object]:
    return {**GOOD, "doi": doi, "title": f"Paper {doi[-1]}", **changes}


def _medrxiv(tmp_path: Path, collection: list[object]) -> Path:
    path = tmp_path / "details.json"
    path.write_text(json.dumps({"messages": [{"status": "ok"}], "collection": collection}))
    return path


def _stored(store: Store) -> dict[str, Paper]:
    with store.read() as session:
        return {p.doi or "": p for p in session.exec(select(Paper)).all()}


def test_medrxiv_nulls_are_empty_fields_not_the_word_none(store: Store, tmp_path: Path) -> None:
    path = _medrxiv(
        tmp_path,
        [
            _item("10.1101/x.1", title=None),
            _item("10.1101/x.2", authors=None),
            _item("10.1101/x.3", abstract=None),
            _item("10.1101/x.4", published=None, version=None),
        ],
    )
    (result,) = ingest_files(store, [path])
    assert [(r.where, r.reason) for r in result.rejected] == [("DOI 10.1101/x.1", "no title")]
    stored = _stored(store)
    assert sorted(stored) == ["10.1101/x.2", "10.1101/x.3", "10.1101/x.4"]
    assert stored["10.1101/x.2"].authors == []
    assert stored["10.1101/x.3"].abstract == ""
    assert stored["10.1101/x.4"].published_doi is None
    assert all("None" not in p.title for p in stored.values())


def test_a_medrxiv_collection_saved_without_its_envelope_is_read_as_medrxiv(
    store: Store, tmp_path: Path
) -> None:
    """A bare list of API items (the 'collection' alone) was read as Slice JSON and every
    record refused for its date."""
    path = tmp_path / "collection.json"
    path.write_text(json.dumps([_item("10.1101/x.1"), _item("10.1101/x.2", version="2")]))
    (result,) = ingest_files(store, [path])
    assert result.error is None and result.rejected == []
    stored = _stored(store)
    assert sorted(stored) == ["10.1101/x.1", "10.1101/x.2"]
    assert stored["10.1101/x.1"].source == "medrxiv"


def test_dates_no_paper_can_have_are_refused_by_record(store: Store, tmp_path: Path) -> None:
    """Year 1 and 2099 were stored; a paper dated 2099 heads the newest-first archive."""
    from datetime import date, timedelta

    soon = (date.today() + timedelta(days=120)).isoformat()  # a journal's next print issue
    path = _medrxiv(
        tmp_path,
        [
            _item("10.1101/x.1", date="2099-01-01"),
            _item("10.1101/x.2", date="0001-01-01"),
            _item("10.1101/x.3", date=soon),
            _item("10.1101/x.4"),
        ],
    )
    (result,) = ingest_files(store, [path])
    assert [(r.where, r.reason) for r in result.rejected] == [
        ("DOI 10.1101/x.1", "publication date 2099-01-01 is not plausible"),
        ("DOI 10.1101/x.2", "publication date 0001-01-01 is not plausible"),
    ]
    assert sorted(_stored(store)) == ["10.1101/x.3", "10.1101/x.4"]


def test_medrxiv_wrong_types_and_non_objects_are_refused_by_position(
    store: Store, tmp_path: Path
) -> None:
    path = _medrxiv(
        tmp_path,
        [
            _item("10.1101/x.1", title=123),
            _item("10.1101/x.2", authors=["Verity, R.", "Okell, L."]),
            "a string",
            None,
            {**_item("10.1101/x.5"), "doi": 12345},
            _item("10.1101/x.6"),
        ],
    )
    (result,) = ingest_files(store, [path])
    assert sorted((r.where, r.reason) for r in result.rejected) == [
        ("DOI 10.1101/x.1", "'title' is a number, not text"),
        ("DOI 10.1101/x.2", "'authors' is a list, not text"),
        ("record #3", "a string, not a JSON object"),
        ("record #4", "null, not a JSON object"),
        ("record #5", "'doi' is a number, not text"),
    ]
    assert (result.fetched, result.new) == (6, 1)
    assert list(_stored(store)) == ["10.1101/x.6"]


def test_json_nested_too_deeply_is_one_line_not_a_traceback(
    run_cli: Callable[..., Result], tmp_path: Path
) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    files = {
        "details.json": '{"messages": [{"status": "ok"}], "collection": ' + deep + "}",
        "papers.json": deep,
        "papers.jsonl": '{"title": "A", "published": "2025-01-01"}\n{"a": ' + deep + "}\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = run_cli("ingest", *(str(tmp_path / name) for name in files))
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: 3 files failed:")
    assert "details.json: JSON nested too deeply" in error
    assert "papers.json: JSON nested too deeply" in error
    assert "papers.jsonl: line 2: JSON nested too deeply" in error


def test_a_folder_or_a_device_given_to_ingest_is_named_for_what_it_is(
    run_cli: Callable[..., Result], tmp_path: Path
) -> None:
    (tmp_path / "feeds").mkdir()
    result = run_cli("ingest", str(tmp_path / "feeds"), "/dev/null", str(tmp_path / "gone.xml"))
    assert result.exit_code == 1
    error = result.stderr.strip().splitlines()[-1]
    assert f"feeds: is a folder; name the files in it (e.g. {tmp_path / 'feeds'}/*.xml)" in error
    assert "/dev/null: not a regular file" in error
    assert "gone.xml: no such file" in error


# --- subscribers import ------------------------------------------------------------------


def _import(run_cli: Callable[..., Result], env: dict[str, str], path: Path) -> Result:
    return run_cli("subscribers", "import", str(path), "--confirmed", env=env)


def _people(project: Path, env: dict[str, str]) -> list[tuple[str, str]]:
    settings = load_settings(config=project / "slice.toml", environ=env)
    return [(s.email, s.name) for s in rows(Store.open(settings.database_url))]


def test_import_takes_addresses_written_with_a_display_name(
    run_cli: Callable[..., Result], environ: dict[str, str], project: Path, tmp_path: Path
) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text(
        "email,name\n"
        '"Ann Reader <ann@example.org>",\n'
        "<bob@example.org>,Bob\n"
        '"Carl <carl@example.org>",Carl C\n'
        '"""Reader, Dora"" <dora@example.org>",\n'
        '"Eve <not an address>",\n'
    )
    result = _import(run_cli, environ, path)
    assert result.exit_code == 0, result.output
    assert _people(project, environ) == [
        ("ann@example.org", "Ann Reader"),
        ("bob@example.org", "Bob"),
        ("carl@example.org", "Carl C"),  # the name column wins over the display name
        ("dora@example.org", "Reader, Dora"),
    ]
    assert result.stderr.splitlines() == [  # and no blank line from a progress bar
        f"{path}: line 6: 'not an address' is not a valid email address: "
        "An email address must have an @-sign."
    ]


def test_import_summary_counts_one_in_the_singular(
    run_cli: Callable[..., Result], smtp_environ: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "one.csv"
    path.write_text("email,name\nann@example.org,Ann\nANN@example.org,\nnot-an-address,\n")
    result = run_cli("subscribers", "import", str(path), env=smtp_environ)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"{path}: 1 added as pending, 1 confirmation email sent, 0 already on the list, "
        "1 duplicate row merged, 0 unsubscribed or bounced kept off, 1 bad row skipped.\n"
    )


# --- what a person reads ------------------------------------------------------------------


def test_issues_shows_the_whole_id_in_an_80_column_terminal(
    project: Path, environ: dict[str, str], run_cli: Callable[..., Result]
) -> None:
    """The id is what `slice send` takes; it was cut to '2026-05-20…' at 80 columns."""
    settings = project_settings(project, environ)
    with Store.open(settings.database_url) as store:
        add_papers(store)
    assert run_cli("compose", "--since", "2026-05-20", "--until", "2026-05-31").exit_code == 0
    listed = run_cli("issues", env={**environ, "COLUMNS": "80"})
    assert listed.exit_code == 0, listed.output
    assert "2026-05-20_2026-05-31" in listed.stdout
    # and the window's dates, one whole date on a line; the header reads 'deliveries'
    assert "2026-05-20 " in listed.stdout and "2026-05-31 " in listed.stdout
    assert " deliveries " in listed.stdout
    assert max(len(line) for line in listed.stdout.splitlines()) <= 80


def test_papers_says_when_the_list_stops_at_the_limit(
    run_cli: Callable[..., Result], tmp_path: Path
) -> None:
    """`slice papers --limit 2` said '2 papers' with 3 stored."""
    empty = run_cli("papers")
    assert empty.exit_code == 0 and empty.stdout == ""
    assert empty.stderr.startswith("No papers stored yet: `slice fetch`")
    path = tmp_path / "three.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {"title": f"Paper {n}", "published": f"2025-01-0{n}", "doi": f"10.5555/p.{n}"}
            )
            + "\n"
            for n in (1, 2, 3)
        )
    )
    ingested = run_cli("ingest", str(path))
    assert ingested.exit_code == 0, ingested.output
    cut = run_cli("papers", "--limit", "2")
    assert cut.stdout.startswith("The first 2 papers; more are stored (raise --limit to see them)")
    assert "Paper 3" in cut.stdout and "Paper 1" not in cut.stdout
    assert run_cli("papers", "--limit", "3").stdout.startswith("3 papers\n")
    assert run_cli("papers", "--search", "nothing-like-it").stderr == "No stored paper matches.\n"


def test_a_bad_date_or_format_is_one_line_as_in_compose(run_cli: Callable[..., Result]) -> None:
    """fetch and ingest printed the usage block and 'Invalid value for ...' over four lines."""
    for args, says in [
        (("fetch", "--since", "2025-02-30"), "Error: --since '2025-02-30' is not a date"),
        (("fetch", "--until", "soon"), "Error: --until 'soon' is not a date"),
        (("ingest", "--format", "nope", "x.xml"), "Error: --format 'nope' is not a format"),
    ]:
        result = run_cli(*args)
        assert result.exit_code == 1
        assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(says)


def _pubmed_article(pmid: str, pubdate: str) -> str:
    return (
        f'<PubmedArticle><MedlineCitation><PMID Version="1">{pmid}</PMID><Article>'
        f"<Journal><JournalIssue><PubDate>{pubdate}</PubDate></JournalIssue></Journal>"
        f"<ArticleTitle>Dates as journals print them, number {pmid}.</ArticleTitle>"
        "</Article></MedlineCitation></PubmedArticle>"
    )


def test_pubmed_dates_with_a_day_the_month_lacks_or_the_season_first(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "efetch.xml"
    path.write_text(
        "<PubmedArticleSet>"
        + _pubmed_article("41000001", "<Year>2025</Year><Month>Feb</Month><Day>30</Day>")
        + _pubmed_article("41000002", "<MedlineDate>Summer 2025</MedlineDate>")
        + _pubmed_article("41000003", "<MedlineDate>some day</MedlineDate>")
        + "</PubmedArticleSet>"
    )
    (result,) = ingest_files(store, [path])
    assert [(r.where, r.reason) for r in result.rejected] == [
        ("PMID 41000003", "no publication date")
    ]
    with store.read() as session:
        dates = {p.pmid: p.published.isoformat() for p in session.exec(select(Paper)).all()}
    assert dates == {"41000001": "2025-02-01", "41000002": "2025-06-01"}


def test_slice_json_fields_of_the_wrong_shape_are_refused_not_stored_as_reprs(
    store: Store, tmp_path: Path
) -> None:
    """A list title was stored as "'a', 'b'", an object abstract as "{'x': 1}"."""
    day = {"published": "2025-01-01"}
    path = tmp_path / "papers.json"
    path.write_text(
        json.dumps(
            [
                {"title": ["a", "b"], **day},
                {"title": "A fine paper with a numeric PMID", "pmid": 12345678, **day},
                {"title": "An abstract that is an object", "abstract": {"x": 1}, **day},
                {"title": "Authors that are objects", "authors": [{"name": "x"}], **day},
            ]
        )
    )
    (result,) = ingest_files(store, [path])
    assert [(r.where, r.reason) for r in result.rejected] == [
        ("record #1", "'title' is a list, not text"),
        ("record #3", "'abstract' is an object, not text"),
        ("record #4", "'authors' holds something other than names"),
    ]
    with store.read() as session:
        titles = [p.title for p in session.exec(select(Paper)).all()]
    assert titles == ["A fine paper with a numeric PMID"]


def test_a_truncated_feed_says_where_once(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    """lxml's text said the place three times: '... line 7, line 7, column 81 (f.xml, line 7))'."""
    feed = (FIXTURES / "sources" / "arxiv_new.xml").read_text(encoding="utf-8")
    cut = tmp_path / "cut.xml"
    cut.write_text(feed[: feed.index("</summary>")])
    result = run_cli("ingest", str(cut))
    assert result.exit_code == 1
    (error,) = result.stderr.splitlines()[-1:]
    assert re.search(
        r"cut\.xml: malformed or truncated Atom XML at line \d+: Premature end of data in tag "
        r"summary line \d+$",
        error,
    ), error


def test_ingesting_a_file_again_counts_its_records_as_unchanged(
    run_cli: Callable[..., Result], environ: dict[str, str], tmp_path: Path
) -> None:
    """A second ingest said 'fetched 2, new 0' with nothing accounting for the 2."""
    path = _medrxiv(tmp_path, [_item("10.1101/x.1"), _item("10.1101/x.2")])
    assert run_cli("ingest", str(path)).exit_code == 0
    again = run_cli("ingest", str(path), env={**environ, "COLUMNS": "80"})
    assert again.exit_code == 0
    header = next(line for line in again.stdout.splitlines() if "fetched" in line)
    row = next(line for line in again.stdout.splitlines() if "file:details.json" in line)
    assert header.split() == [
        "source", "fetched", "new", "updated", "unchanged", "merged", "linked", "rejected"
    ]  # fmt: skip
    assert row.split()[1:] == ["2", "0", "0", "2", "0", "0", "0"]
    assert all(len(line) <= 80 for line in again.stdout.splitlines()[:3]), again.stdout
