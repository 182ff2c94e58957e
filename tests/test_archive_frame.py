"""The archive's frame as a reader meets it: the web copy of an issue, dates, sort labels, toggles."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI

from newsletter.core.models import IssueStatus
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.issue.outbox import IssueFolder
from newsletter.web import create_app
from newsletter.web.issuecopy import scoped_css
from tests.archive_support import add_papers, get, make_paper
from tests.test_archive import _sent_issue

# HTML's valid date, or global date and time with at most milliseconds
VALID_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2}))?$"
)
EMAIL_LIKE_COPY = """<!doctype html><html lang="en"><head><title>Radiology AI Weekly #1</title>
<style type="text/css">
body { margin: 0; padding: 0; }
p { display: block; margin: 13px 0; }
.muted { color: #5b6470; }
@media (prefers-color-scheme: dark) { .sheet { background: #15181c !important; } }
@media only screen and (max-width: 480px) { .sheet h1 { font-size: 26px !important; } }
</style></head>
<body><div class="sheet"><h1>Issue 1</h1><p class="muted">Jun 9 – 15, 2025</p>
<p>Web copy</p></div></body></html>"""


@pytest.fixture
def app(settings: Settings, any_store: Store) -> FastAPI:
    return create_app(settings, store=any_store)


def _sent_with_copy(settings: Settings, store: Store) -> None:
    sent_at = datetime(2025, 6, 16, 7, 0, 0, 123456, tzinfo=UTC)
    _sent_issue(settings, store, "2025-W24", 1, status=IssueStatus.SENT.value, sent_at=sent_at)
    IssueFolder.of(settings.outbox_dir, "2025-W24").web_html.write_text(
        EMAIL_LIKE_COPY, encoding="utf-8"
    )


def test_the_web_copy_sits_in_the_site_frame(
    app: FastAPI, settings: Settings, any_store: Store
) -> None:
    _sent_with_copy(settings, any_store)
    page = get(app, "/issues/2025-W24").text
    # the site around it: its name, the archive's navigation with "Past issues" current, signup
    assert 'class="site-name"><a href="/">Test Weekly</a>' in page
    assert '<a href="/issues" aria-current="page">Past issues</a>' in page
    assert 'id="signup-title"' in page and 'name="form_token"' in page
    assert "<title>Radiology AI Weekly #1 · Test Weekly</title>" in page
    # the copy itself, and its styles kept to it; the frame has one (light) scheme
    assert '<div class="sheet"><h1>Issue 1</h1>' in page and "<p>Web copy</p>" in page
    assert ".issue-copy p {" in page and ".issue-copy .muted {" in page
    assert "\np {" not in page and "prefers-color-scheme" not in page
    assert "@media only screen and (max-width: 480px)" in page
    assert ".issue-copy .sheet h1 {" in page
    assert '<h2 id="issue-title" class="issue-heading">Issue #1 · sent <time' in page
    # on a phone (one column, in document order) the issue comes first, the signup after it;
    # the papers page keeps the form on top
    assert page.index('class="archive-results"') < page.index('class="archive-signup"')
    papers = get(app, "/").text
    assert papers.index('class="archive-signup"') < papers.index('class="archive-results"')


def test_css_scoping_keeps_every_rule_inside_the_copy() -> None:
    css = scoped_css("body, html body td { margin: 0 } a:hover, .x > p { color: red }")
    assert css.splitlines()[0] == ".issue-copy, .issue-copy td {"
    assert ".issue-copy a:hover, .issue-copy .x > p {" in css
    assert scoped_css("@media (prefers-color-scheme: dark) { p { color: #fff } }").strip() == ""


def test_time_elements_carry_valid_datetimes_and_one_date_format(
    app: FastAPI, settings: Settings, any_store: Store
) -> None:
    _sent_with_copy(settings, any_store)
    add_papers(any_store, [make_paper(i) for i in range(3)])
    pages = {url: get(app, url).text for url in ("/", "/issues", "/issues/2025-W24")}
    for url, page in pages.items():
        values = re.findall(r'<time datetime="([^"]*)"', page)
        assert values, url
        assert all(VALID_DATETIME.match(v) for v in values), (url, values)
    assert '<time datetime="2025-06-16T07:00:00Z">Jun 16, 2025</time>' in pages["/issues"]
    # the email's way of writing dates (newsletter.issue.cards), on every page
    assert '<time datetime="2025-06-03">Jun 3, 2025</time>' in pages["/"]
    assert "papers from Jun 9 – 15, 2025" in pages["/issues"]
    # the feed's summary when the issue's message.json is gone: the same words for the week
    IssueFolder.of(settings.outbox_dir, "2025-W24").message.unlink()
    assert (
        "<summary>Issue #1: papers from Jun 9 – 15, 2025.</summary>" in get(app, "/feed.xml").text
    )


def test_the_sent_date_is_the_editors_day_on_every_page(
    settings: Settings, any_store: Store
) -> None:
    """Sent at 07:00 UTC on Jun 16 is still Jun 15 in Honolulu, on the list and on the copy."""
    settings.newsletter.timezone = "Pacific/Honolulu"
    _sent_with_copy(settings, any_store)
    app = create_app(settings, store=any_store)
    sent = '<time datetime="2025-06-16T07:00:00Z">Jun 15, 2025</time>'
    assert sent in get(app, "/issues").text
    assert f"Issue #1 · sent {sent}</h2>" in get(app, "/issues/2025-W24").text


def test_tex_stored_before_ingest_cleaned_it_reads_as_text_in_the_archive(
    app: FastAPI, any_store: Store
) -> None:
    """Records a JSON or CSV import stored with raw TeX read as the email shows them."""
    add_papers(
        any_store,
        [
            make_paper(
                1,
                title="VO$_2$max after \\textit{in vivo} training",
                abstract="Mean age was $64.38\\pm13.63$ years; costs fell from $5 to $3.",
            )
        ],
    )
    page = get(app, "/").text
    assert "VO<sub>2</sub>max after <i>in vivo</i> training" in page
    assert "Mean age was 64.38±13.63 years; costs fell from $5 to $3." in page
    assert "\\pm" not in page and "\\textit" not in page


def test_sort_labels_say_what_happens(app: FastAPI, any_store: Store) -> None:
    add_papers(any_store, [make_paper(i) for i in range(3)])

    def options(url: str) -> list[str]:
        menu = re.search(r'<select id="sort" name="sort">(.*?)</select>', get(app, url).text, re.S)
        assert menu is not None
        return [" ".join(o.split()) for o in re.findall(r"<option[^>]*>[^<]*", menu.group(1))]

    # no words to rank by: newest first is what happens, and what the menu says
    assert options("/") == [
        '<option value="" selected>Newest first',
        '<option value="oldest">Oldest first',
    ]
    assert options("/?sort=oldest")[1] == '<option value="oldest" selected>Oldest first'
    assert options("/?sort=newest")[0] == '<option value="" selected>Newest first'
    assert options("/?sort=relevance")[0] == '<option value="" selected>Newest first'
    assert options("/?q=chest")[0] == '<option value="" selected>Best match'
    assert options("/?q=chest&sort=newest")[1] == '<option value="newest" selected>Newest first'


def test_only_long_abstracts_get_the_toggle_and_it_has_a_label(
    app: FastAPI, any_store: Store
) -> None:
    short, long = add_papers(
        any_store,
        [
            make_paper(1, abstract="A short abstract that fits in three lines."),
            make_paper(2, abstract="A long abstract. " * 20),
        ],
    )
    page = get(app, "/").text
    assert f'id="more-{short}"' not in page
    assert f'<input type="checkbox" class="abstract-toggle" id="more-{long}"' in page
    assert f'<label for="more-{long}" class="abstract-more">' in page
    assert page.count('class="abstract-toggle"') == 1
