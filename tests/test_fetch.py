"""`slice fetch` end to end against a real local HTTP server replaying recorded answers.

Waiting (rate limits, Retry-After, backoff) goes through a fake clock: the tests
assert the spacing of requests on that clock and never sleep, except for the
one timeout test, which needs a real slow answer.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import date
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select
from typer.testing import Result

from newsletter.core.clock import FakeClock
from newsletter.core.config import load_settings
from newsletter.core.errors import SourceHTTPError, SourceTimeout
from newsletter.core.models import Paper
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.papers.fetch import FetchReport, run_fetch
from newsletter.papers.sources.base import FetchWindow
from newsletter.papers.sources.http import PoliteClient, retry_after, user_agent
from tests.conftest import FIXTURES
from tests.support.httpserver import ReplayServer

HERE = FIXTURES / "sources"
WINDOW = FetchWindow(date(2025, 6, 9), date(2025, 6, 15))
ATOM = "application/atom+xml"


def atom(ids: list[str], total: int) -> str:
    entries = "".join(
        f"""<entry><id>http://arxiv.org/abs/{i}v1</id><published>2025-06-10T10:00:00Z</published>
        <title>Paper {i} on CT</title><summary>About {i}.</summary>
        <author><name>Author {i}</name></author></entry>"""
        for i in ids
    )
    return f"""<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"
      xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">
      <opensearch:totalResults>{total}</opensearch:totalResults>{entries}</feed>"""


def pubmed_xml(pmids: list[str]) -> str:
    articles = "".join(
        f"""<PubmedArticle><MedlineCitation><PMID>{p}</PMID><Article><Journal><JournalIssue>
        <PubDate><Year>2025</Year><Month>Jun</Month><Day>10</Day></PubDate></JournalIssue>
        <Title>Radiology</Title></Journal><ArticleTitle>PubMed paper {p}.</ArticleTitle>
        <AuthorList><Author><LastName>Lee</LastName><ForeName>Ann</ForeName></Author></AuthorList>
        </Article></MedlineCitation><PubmedData><ArticleIdList>
        <ArticleId IdType="pubmed">{p}</ArticleId><ArticleId IdType="doi">10.1148/r.{p}</ArticleId>
        </ArticleIdList></PubmedData></PubmedArticle>"""
        for p in pmids
    )
    return f"<?xml version='1.0'?><PubmedArticleSet>{articles}</PubmedArticleSet>"


def esearch(count: int) -> str:
    return json.dumps(
        {"esearchresult": {"count": str(count), "webenv": "MCID_1", "querykey": "1", "idlist": []}}
    )


def make_settings(tmp_path: Path, sources: str, *, fetch: str = "") -> Settings:
    config = tmp_path / "slice.toml"
    config.write_text(
        f'[fetch]\ncontact_email = "editors@example.org"\nretries = 2\n{fetch}\n{sources}',
        encoding="utf-8",
    )
    return load_settings(config=config, environ={})


def fetch(
    settings: Settings, store: Store, clock: FakeClock | None = None, **kw: Any
) -> FetchReport:
    with httpx.Client() as client:
        return run_fetch(
            settings, store, client=client, window=WINDOW, clock=clock or FakeClock(), **kw
        )


def stored(store: Store) -> list[Paper]:
    with store.read() as session:
        return list(session.exec(select(Paper).order_by(Paper.id)))  # type: ignore[arg-type]


@pytest.fixture
def fetch_store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'fetch.db'}")


def test_arxiv_pages_and_waits_three_seconds(
    tmp_path: Path, replay_server: ReplayServer, fetch_store: Store
) -> None:
    replay_server.add("/api/query", atom(["2506.00001", "2506.00002"], 3), content_type=ATOM)
    replay_server.add("/api/query", atom(["2506.00003"], 3), content_type=ATOM)
    settings = make_settings(
        tmp_path,
        f'[[sources]]\nname = "ax"\nkind = "arxiv"\nquery = "cat:eess.IV"\n'
        f'base_url = "{replay_server.url}/api/query"\npage_size = 2\n',
    )
    clock = FakeClock()
    report = fetch(settings, fetch_store, clock)
    (result,) = report.results
    assert (result.fetched, result.new, result.error) == (3, 3, None)
    starts = [r.query["start"][0] for r in replay_server.requests]
    assert starts == ["0", "2"]
    query = replay_server.requests[0].query["search_query"][0]
    assert query == "(cat:eess.IV) AND submittedDate:[202506090000 TO 202506152359]"
    assert replay_server.requests[0].headers["User-Agent"] == user_agent("editors@example.org")
    assert "Slice/" in user_agent()
    times = [t for t, _ in report.requests]
    assert times[1] - times[0] == pytest.approx(3.0)
    assert [p.arxiv_id for p in stored(fetch_store)] == ["2506.00001", "2506.00002", "2506.00003"]


def test_two_sources_on_one_host_share_its_spacing(
    tmp_path: Path, replay_server: ReplayServer, fetch_store: Store
) -> None:
    replay_server.add("/api/query", atom(["2506.00001"], 1), content_type=ATOM)
    replay_server.add("/api/query", atom(["2506.00002"], 1), content_type=ATOM)
    settings = make_settings(
        tmp_path,
        "".join(
            f'[[sources]]\nname = "{name}"\nkind = "arxiv"\nquery = "{name}"\n'
            f'base_url = "{replay_server.url}/api/query"\n'
            for name in ("imaging", "radiology")
        ),
    )
    report = fetch(settings, fetch_store)
    (a, _), (b, _) = report.requests
    assert b - a == pytest.approx(3.0)
    assert [r.new for r in report.results] == [1, 1]


def test_arxiv_empty_page_before_the_end_is_asked_again(
    tmp_path: Path, replay_server: ReplayServer, fetch_store: Store
) -> None:
    replay_server.add("/api/query", atom(["2506.00001", "2506.00002"], 3), content_type=ATOM)
    replay_server.add("/api/query", atom([], 3), content_type=ATOM)
    replay_server.add("/api/query", atom(["2506.00003"], 3), content_type=ATOM)
    settings = make_settings(
        tmp_path,
        f'[[sources]]\nname = "ax"\nkind = "arxiv"\nquery = "x"\n'
        f'base_url = "{replay_server.url}/api/query"\npage_size = 2\n',
    )
    (result,) = fetch(settings, fetch_store).results
    assert [r.query["start"][0] for r in replay_server.requests] == ["0", "2", "2"]
    assert (result.new, result.warnings) == (3, [])


def test_arxiv_empty_pages_that_persist_are_a_warning(
    tmp_path: Path, replay_server: ReplayServer, fetch_store: Store
) -> None:
    replay_server.add("/api/query", atom(["2506.00001", "2506.00002"], 5), content_type=ATOM)
    replay_server.add("/api/query", atom([], 5), content_type=ATOM)
    settings = make_settings(
        tmp_path,
        f'[[sources]]\nname = "ax"\nkind = "arxiv"\nquery = "x"\n'
        f'base_url = "{replay_server.url}/api/query"\npage_size = 2\n',
    )
    (result,) = fetch(settings, fetch_store).results
    assert len(replay_server.requests) == 4 and result.new == 2
    assert result.warnings == [
        "arXiv kept answering an empty page at 2 of 5 results; the rest were not fetched, "
        "run `slice fetch` again later."
    ]


def test_pubmed_history_batches_and_identifies_itself(
    tmp_path: Path, replay_server: ReplayServer, fetch_store: Store
) -> None:
    replay_server.add("/eutils/esearch.fcgi", esearch(3), content_type="application/json")
    replay_server.add("/eutils/efetch.fcgi", pubmed_xml(["1", "2"]), content_type="text/xml")
    replay_server.add("/eutils/efetch.fcgi", pubmed_xml(["3"]), content_type="text/xml")
    settings = make_settings(
        tmp_path,
        f'[[sources]]\nname = "pm"\nkind = "pubmed"\nterm = "radiology AND ai"\n'
        f'base_url = "{replay_server.url}/eutils"\nbatch_size = 2\n',
    )
    report = fetch(settings, fetch_store)
    assert report.results[0].new == 3
    search, first, second = replay_server.requests
    for request in (search, first, second):
        assert request.query["tool"] == ["slice"]
        assert request.query["email"] == ["editors@example.org"]
        assert "api_key" not in request.query
    assert search.query["term"] == ["radiology AND ai"]
    assert (search.query["datetype"], search.query["mindate"], search.query["maxdate"]) == (
        ["edat"],
        ["2025/06/09"],
        ["2025/06/15"],
    )
    assert search.query["usehistory"] == ["y"]
    assert [r.query["retstart"][0] for r in (first, second)] == ["0", "2"]
    assert [r.query["retmax"][0] for r in (first, second)] == ["2", "1"]
    assert first.query["WebEnv"] == ["MCID_1"] and first.query["query_key"] == ["1"]
    times = [t for t, _ in report.requests]
    assert min(b - a for a, b in pairwise(times)) == pytest.approx(1 / 3)


def test_pubmed_api_key_raises_the_rate_to_ten(
    tmp_path: Path, replay_server: ReplayServer, fetch_store: Store
) -> None:
    replay_server.add("/eutils/esearch.fcgi", esearch(1), content_type="application/json")
    replay_server.add("/eutils/efetch.fcgi", pubmed_xml(["9"]), content_type="text/xml")
    settings = make_settings(
        tmp_path,
        f'[[sources]]\nname = "pm"\nkind = "pubmed"\nterm = "x"\nbase_url = "{replay_server.url}/eutils"\n',
    )
    settings.secrets = settings.secrets.model_copy(update={"pubmed_api_key": "k123"})
    report = fetch(settings, fetch_store)
    assert all(r.query["api_key"] == ["k123"] for r in replay_server.requests)
    (a, _), (b, _) = report.requests
    assert b - a == pytest.approx(0.1)


def test_pubmed_error_inside_200_fails_the_source_only(
    tmp_path: Path, replay_server: ReplayServer, fetch_store: Store
) -> None:
    replay_server.add(
        "/eutils/esearch.fcgi",
        '{"esearchresult": {"ERROR": "Invalid query"}}',
        content_type="application/json",
    )
    replay_server.add("/api/query", atom(["2506.00001"], 1), content_type=ATOM)
    settings = make_settings(
        tmp_path,
        f'[[sources]]\nname = "pm"\nkind = "pubmed"\nterm = "x"\nbase_url = "{replay_server.url}/eutils"\n'
        f'[[sources]]\nname = "ax"\nkind = "arxiv"\nquery = "x"\nbase_url = "{replay_server.url}/api/query"\n',
    )
    report = fetch(settings, fetch_store)
    failed, good = report.results
    assert failed.error == "source 'pm': PubMed esearch error: Invalid query"
    assert good.new == 1 and len(stored(fetch_store)) == 1


def test_html_page_where_xml_was_expected(
    tmp_path: Path, replay_server: ReplayServer, fetch_store: Store
) -> None:
    replay_server.add("/eutils/esearch.fcgi", esearch(2), content_type="application/json")
    replay_server.add(
        "/eutils/efetch.fcgi", (HERE / "error_page.xml").read_text(), content_type="text/html"
    )
    settings = make_settings(
        tmp_path,
        f'[[sources]]\nname = "pm"\nkind = "pubmed"\nterm = "x"\nbase_url = "{replay_server.url}/eutils"\n',
    )
    (result,) = fetch(settings, fetch_store).results
    assert result.error == "source 'pm': efetch answered with an HTML page, not PubMed XML"
    assert stored(fetch_store) == []


def test_medrxiv_pages_by_cursor_until_empty(
    tmp_path: Path, replay_server: ReplayServer, fetch_store: Store
) -> None:
    page = json.loads((HERE / "medrxiv_page.json").read_text())
    second = json.loads(json.dumps(page))
    for item in second["collection"]:
        item["doi"] = item["doi"].replace("2026.06", "2026.07")
    base = "/details/medrxiv/2025-06-09/2025-06-15"
    replay_server.add(f"{base}/0", json.dumps(page), content_type="application/json")
    replay_server.add(f"{base}/3", json.dumps(second), content_type="application/json")
    replay_server.add(f"{base}/6", (HERE / "biorxiv_not_found.json").read_text())
    settings = make_settings(
        tmp_path,
        f'[[sources]]\nname = "med"\nkind = "medrxiv"\ncategory = "radiology and imaging"\n'
        f'base_url = "{replay_server.url}"\n',
    )
    (result,) = fetch(settings, fetch_store).results
    assert [r.path for r in replay_server.requests] == [f"{base}/0", f"{base}/3", f"{base}/6"]
    assert replay_server.requests[0].query["category"] == ["radiology_and_imaging"]
    # 6 items, two of them an older version of the same preprint
    assert (result.fetched, result.new) == (4, 4)
    assert all(p.kind == "preprint" and p.source == "medrxiv" for p in stored(fetch_store))


def test_rss_feed_keeps_what_falls_in_the_window(
    tmp_path: Path, replay_server: ReplayServer, fetch_store: Store
) -> None:
    items = "".join(
        f"<item><title>Journal paper {day}.</title><link>https://j.example/{day}</link>"
        f"<pubDate>{day} Jun 2025 08:00:00 GMT</pubDate><description>About CT.</description></item>"
        for day in ("02", "10", "14", "20")
    )
    replay_server.add(
        "/feed.xml",
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>J</title>{items}</channel></rss>',
        content_type="application/rss+xml",
    )
    settings = make_settings(
        tmp_path,
        f'[[sources]]\nname = "radiology-toc"\nkind = "rss"\nurl = "{replay_server.url}/feed.xml"\n'
        'label = "radiology"\n',
    )
    (result,) = fetch(settings, fetch_store).results
    assert (result.fetched, result.new) == (2, 2)
    assert [(p.title, p.source, p.kind) for p in stored(fetch_store)] == [
        ("Journal paper 10", "radiology", "paper"),
        ("Journal paper 14", "radiology", "paper"),
    ]


def test_429_with_retry_after_is_honoured(
    tmp_path: Path, replay_server: ReplayServer, fetch_store: Store
) -> None:
    replay_server.add("/api/query", "Rate exceeded.", status=429, headers={"Retry-After": "7"})
    replay_server.add("/api/query", atom(["2506.00001"], 1), content_type=ATOM)
    settings = make_settings(
        tmp_path,
        f'[[sources]]\nname = "ax"\nkind = "arxiv"\nquery = "x"\nbase_url = "{replay_server.url}/api/query"\n',
    )
    clock = FakeClock()
    report = fetch(settings, fetch_store, clock)
    assert report.results[0].new == 1
    assert clock.sleeps == [7.0]
    (a, _), (b, _) = report.requests
    assert b - a == pytest.approx(7.0)


def test_500_then_success_backs_off(replay_server: ReplayServer) -> None:
    replay_server.add("/x", "boom", status=500)
    replay_server.add("/x", "boom", status=502)
    replay_server.add("/x", "fine")
    clock = FakeClock()
    with httpx.Client() as client:
        polite = PoliteClient(client, clock=clock, retries=3, backoff=1.5)
        assert polite.get(f"{replay_server.url}/x").text == "fine"
    assert clock.sleeps == [1.5, 3.0]
    assert len(replay_server.requests) == 3


def test_retries_run_out(replay_server: ReplayServer) -> None:
    replay_server.add("/x", "down", status=503)
    with httpx.Client() as client:
        polite = PoliteClient(client, clock=FakeClock(), retries=2)
        with pytest.raises(
            SourceHTTPError,
            match=r"answered HTTP 503 Service Unavailable after 3 tries; the service is busy or down",
        ):
            polite.get(f"{replay_server.url}/x", what="source 'pm'")
    assert len(replay_server.requests) == 3


def test_a_404_is_not_retried(replay_server: ReplayServer) -> None:
    with httpx.Client() as client:
        polite = PoliteClient(client, clock=FakeClock(), retries=3)
        with pytest.raises(SourceHTTPError, match="HTTP 404 Not Found; check the source's options"):
            polite.get(f"{replay_server.url}/missing")
    assert len(replay_server.requests) == 1


def test_a_timeout_is_retried(replay_server: ReplayServer) -> None:
    replay_server.add("/slow", "late", delay=1.0)
    replay_server.add("/slow", "on time")
    clock = FakeClock()
    with httpx.Client() as client:
        polite = PoliteClient(client, clock=clock, retries=1, timeout=0.2)
        assert polite.get(f"{replay_server.url}/slow").text == "on time"
    assert clock.sleeps == [1.0]


def test_a_timeout_that_persists_is_a_source_timeout(replay_server: ReplayServer) -> None:
    replay_server.add("/slow", "late", delay=1.0)
    with httpx.Client() as client:
        polite = PoliteClient(client, clock=FakeClock(), retries=0, timeout=0.2)
        with pytest.raises(SourceTimeout, match=r"no answer from 127\.0\.0\.1:\d+ within 0.2s"):
            polite.get(f"{replay_server.url}/slow")


def test_connection_refused_is_a_clear_error() -> None:
    with httpx.Client() as client:
        polite = PoliteClient(client, clock=FakeClock(), retries=1)
        with pytest.raises(SourceHTTPError, match=r"cannot reach 127\.0\.0\.1:9 .* after 2 tries"):
            polite.get("http://127.0.0.1:9/x")


def test_retry_after_forms() -> None:
    from datetime import UTC, datetime

    now = datetime(2025, 6, 10, 12, 0, 0, tzinfo=UTC)
    assert retry_after("12") == 12.0
    assert retry_after("Tue, 10 Jun 2025 12:00:30 GMT", now=now) == 30.0
    assert retry_after("soon") is None and retry_after(None) is None


# --- the command ------------------------------------------------------------


def test_cli_fetch_one_source_fails_the_others_are_kept(
    run_cli: Callable[..., Result], project: Path, replay_server: ReplayServer
) -> None:
    replay_server.add("/api/query", atom(["2506.00001", "2506.00002"], 2), content_type=ATOM)
    (project / "slice.toml").write_text(
        "[fetch]\nretries = 0\n"
        f'[[sources]]\nname = "arxiv-imaging"\nkind = "arxiv"\nquery = "x"\ninterval = 0\n'
        f'base_url = "{replay_server.url}/api/query"\n'
        f'[[sources]]\nname = "pubmed-ai"\nkind = "pubmed"\nterm = "x"\n'
        f'base_url = "{replay_server.url}/nowhere"\n',
        encoding="utf-8",
    )
    result = run_cli("fetch", "--since", "2025-06-09", "--until", "2025-06-15")
    assert result.exit_code == 1
    row = next(line for line in result.stdout.splitlines() if "arxiv-imaging" in line)
    assert row.split()[1:8] == ["2", "2", "0", "0", "0", "0", "0"]
    assert "pubmed-ai" in result.stdout and "failed" in result.stdout
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: 1 source failed; the others were stored: source 'pubmed-ai': ")
    assert "answered HTTP 404" in error
    assert "arxiv-imaging" in result.stderr  # the progress lines
    listed = run_cli("papers", "--source", "arxiv-imaging", "--json")
    assert len(json.loads(listed.stdout)) == 2


def test_disabled_sources_are_skipped_unless_named(tmp_path: Path) -> None:
    from newsletter.core.errors import ConfigError
    from newsletter.papers.fetch import select_sources

    settings = make_settings(
        tmp_path,
        '[[sources]]\nname = "on"\nkind = "arxiv"\nquery = "x"\n'
        '[[sources]]\nname = "off"\nkind = "arxiv"\nquery = "y"\nenabled = false\n',
    )
    assert [e.name for e, _ in select_sources(settings)] == ["on"]
    assert [e.name for e, _ in select_sources(settings, ["off"])] == ["off"]
    settings.sources[0].enabled = False
    with pytest.raises(ConfigError, match=r"every source in slice\.toml has enabled = false"):
        select_sources(settings)


def test_cli_fetch_bad_options(run_cli: Callable[..., Result], project: Path) -> None:
    (project / "slice.toml").write_text(
        '[[sources]]\nname = "pm"\nkind = "pubmed"\nterm = "x"\nqeury = "y"\n', encoding="utf-8"
    )
    result = run_cli("fetch")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "Error: [[sources]] 'pm' (kind pubmed): unknown option 'qeury'; options are term, base_url"
    )
    unknown = run_cli("fetch", "--source", "nope")
    assert unknown.stderr.strip() == "Error: no source named 'nope'; configured: pm."
    backwards = run_cli("fetch", "--since", "2025-06-10", "--until", "2025-06-01")
    assert backwards.exit_code == 1 and "after --until" in backwards.stderr
    (project / "slice.toml").write_text("[fetch]\nretries = 0\n", encoding="utf-8")
    none = run_cli("fetch")
    assert none.stderr.strip() == (
        "Error: no sources configured: add a [[sources]] entry (name, kind, options) to slice.toml."
    )
    bad_date = run_cli("fetch", "--since", "June")
    assert bad_date.exit_code == 1
    assert bad_date.stderr == "Error: --since 'June' is not a date; write it like 2025-06-09.\n"


def test_the_progress_line_counts_records_in_the_singular_and_plural() -> None:
    from rich.console import Console

    from newsletter.cli.papers import Bars

    bars = Bars()
    shown = Console(file=io.StringIO(), width=120, record=True)
    for count in (0, 1, 2):
        bars.start(f"source{count}")
        bars.move(f"source{count}", count)
    shown.print(bars.progress.get_renderable())
    lines = shown.export_text().splitlines()
    for line, words in zip(lines, ("0 records", "1 record ", "2 records"), strict=True):
        assert words in line
