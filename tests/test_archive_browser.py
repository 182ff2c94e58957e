"""The archive in a real browser (headless chromium) against a real uvicorn, at phone and desktop widths.

Screenshots go to tests/output/archive-<width>-<step>.png.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter.core.config import load_settings
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.web import create_app
from tests.archive_support import add_papers, make_paper
from tests.support.browser import Browser, find_chromium
from tests.support.liveserver import LiveServer
from tests.support.smtpd import RecordingSMTPServer

OUTPUT = Path(__file__).parent / "output"
CHROMIUM = find_chromium()

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="headless chromium is not installed"),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, RecordingSMTPServer]]:
    from newsletter.core.project import init_project

    root = tmp_path_factory.mktemp("browser") / "project"
    init_project(root, name="Radiology AI Weekly")
    smtp = RecordingSMTPServer().start()
    settings: Settings = load_settings(
        config=root / "slice.toml",
        environ={
            "SLICE_SECRET_KEY": "browser-test-secret-0123456789",
            "SLICE_SMTP_HOST": "127.0.0.1",
            "SLICE_SMTP_PORT": str(smtp.port),
        },
    )
    store = Store.open(settings.database_url)
    add_papers(store, [make_paper(i) for i in range(40)])
    add_papers(
        store,
        [
            make_paper(
                99,
                title="A very long title about "
                + "pneumoperitoneum-detection-with-convolutional-networks " * 3,
                authors=[f"Author Number{i} Withalongsurname" for i in range(30)],
                doi="10.1234/long",
            )
        ],
    )
    server = LiveServer(create_app(settings, store=store)).start()
    try:
        yield server.url, smtp
    finally:
        server.stop()
        store.dispose()
        smtp.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM is not None
    with Browser(CHROMIUM) as opened:
        yield opened


def shot(browser: Browser, width: int, step: str) -> None:
    browser.screenshot(OUTPUT / f"archive-{width}-{step}.png")
    if width < 400:  # the whole page is very tall on a phone: also keep its first screens
        browser.screenshot(OUTPUT / f"archive-{width}-{step}-top.png", clip=(0, 0, width, 1400))


def text(browser: Browser, selector: str) -> str:
    return str(browser.js(f"document.querySelector({selector!r})?.innerText ?? ''"))


@pytest.mark.parametrize("width", [375, 1280])
def test_archive_by_clicking(
    browser: Browser, site: tuple[str, RecordingSMTPServer], width: int
) -> None:
    url, smtp = site
    browser.viewport(width, 900 if width > 400 else 760, mobile=width < 400)

    browser.open(url + "/")
    assert text(browser, "#result-count") == "Page 1 of 5 · 41 results"
    assert browser.overflowing() == []
    shot(browser, width, "1-home")

    # search by typing and clicking the button
    browser.type("#q", "mammography")
    browser.click(".search-row button", navigates=True)
    assert "q=mammography" in browser.js("location.search")
    assert text(browser, "#result-count") == "Page 1 of 1 · 8 results for “mammography”"
    assert browser.overflowing() == []
    shot(browser, width, "2-search")

    # filter: open the filters, choose a source, click Apply
    browser.open(url + "/")
    browser.click(".filters summary")
    browser.js("document.querySelector('#source').value = 'pubmed'")
    browser.click(".filter-actions button", navigates=True)
    assert "source=pubmed" in browser.js("location.search")
    badges = browser.js("[...document.querySelectorAll('.badge.source')].map(b => b.innerText)")
    assert badges and set(badges) == {"PubMed"}
    assert browser.overflowing() == []
    shot(browser, width, "3-filter")

    # paging: next, then a page number
    browser.open(url + "/")
    browser.click(".pager a[rel=next]", navigates=True)
    assert text(browser, "#result-count") == "Page 2 of 5 · 41 results"
    browser.click(".pager a[aria-label='Page 5']", navigates=True)
    assert text(browser, "#result-count") == "Page 5 of 5 · 41 results"
    assert browser.overflowing() == []
    shot(browser, width, "4-last-page")

    # abstracts: clamped on a phone until asked for, whole on a desktop
    browser.open(url + "/")
    clamped = "(() => { const p = document.querySelector('.abstract-text');"
    clamped += " return p.scrollHeight > p.clientHeight + 2; })()"
    if width < 400:
        assert browser.js(clamped) is True
        browser.click(".abstract-more")
        assert browser.js(clamped) is False
        assert text(browser, ".abstract-more") == "Show less"
    else:
        assert browser.js(clamped) is False
        assert (
            browser.js("getComputedStyle(document.querySelector('.abstract-more')).display")
            == "none"
        )

    # a hostile query is a normal page
    browser.open(url + "/?q=%22%22%22%20NEAR(%ff&page=abc&sort=loudest")
    assert "No papers match" in text(browser, "#empty-state")
    assert "not a number" in text(browser, ".notes")
    assert browser.js("document.querySelector('#empty-state') !== null") is True
    assert browser.overflowing() == []
    shot(browser, width, "5-bad-input")

    # the signup form on the archive works by clicking
    before = len(smtp.messages)
    browser.open(url + "/")
    address = f"reader{width}@example.org"
    browser.type("#signup-email", address)
    browser.click(".signup button[type=submit]", navigates=True)
    assert "Check your inbox" in text(browser, "main")
    deadline = time.monotonic() + 10
    while len(smtp.messages) == before and time.monotonic() < deadline:
        time.sleep(0.05)  # the confirmation email goes out after the page is answered
    assert smtp.messages[-1].rcpt_tos == [address]
    shot(browser, width, "6-signed-up")

    browser.open(url + "/issues")
    assert "No issues have gone out yet." in text(browser, "main")
    assert browser.overflowing() == []
    shot(browser, width, "7-issues")
