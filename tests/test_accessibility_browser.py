"""Accessibility in a real browser: axe-core on the email, the web copy and every archive page.

The newsletter is the demo's (real papers, a composed and sent issue, readers),
served by the real app on uvicorn; headless chromium opens each page at a phone
(375 px) and a desktop (1280 px) width, the email in the light and the dark
scheme, and axe-core (npm, installed by .ci/run) must find no serious or
critical violation. Screenshots go to tests/output/a11y-<page>-<width>.png.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from newsletter.core.config import load_settings
from newsletter.core.store import Store
from newsletter.demo import DemoReport, run_demo
from newsletter.web import create_app
from tests.support import axe
from tests.support.browser import Browser, find_chromium
from tests.support.liveserver import LiveServer
from tests.support.smtpd import RecordingSMTPServer
from tests.test_demo import TODAY

OUTPUT = Path(__file__).parent / "output"
CHROMIUM = find_chromium()
WIDTHS = (375, 1280)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="headless chromium is not installed"),
    pytest.mark.skipif(not axe.available(), reason=axe.MISSING),
]


@dataclass
class Site:
    url: str
    report: DemoReport
    smtp: RecordingSMTPServer

    @property
    def email_html(self) -> Path:
        return self.report.compose.folder.email_html

    def unsubscribe_path(self, index: int) -> str:
        item = self.report.issue_messages()[index]
        assert item.path is not None
        message = message_from_bytes(item.path.read_bytes(), policy=default_policy)
        assert isinstance(message, EmailMessage)
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        link = re.search(r"https?://\S+/unsubscribe/\S+", str(body.get_content()))
        assert link is not None
        return urlsplit(link.group(0)).path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    report = run_demo(tmp_path_factory.mktemp("a11y") / "demo", today=TODAY)
    key = re.search(r"^SLICE_SECRET_KEY=(\S+)$", report.env_file.read_text("utf-8"), re.M)
    assert key is not None
    smtp = RecordingSMTPServer().start()
    settings = load_settings(
        config=report.project / "slice.toml",
        environ={"SLICE_SECRET_KEY": key.group(1), "SLICE_SMTP_PORT": str(smtp.port)},
    )
    store = Store.open(settings.database_url)
    server = LiveServer(create_app(settings, store=store)).start()
    try:
        yield Site(server.url, report, smtp)
    finally:
        server.stop()
        store.dispose()
        smtp.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM is not None
    with Browser(CHROMIUM) as opened:
        yield opened


def scheme(browser: Browser, name: str) -> None:
    browser.send(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": name}]},
    )


def check(browser: Browser, name: str, width: int) -> list[str]:
    """Screenshot the open page and return axe's serious and critical findings on it."""
    browser.screenshot(OUTPUT / f"a11y-{name}-{width}.png")
    if width < 400:
        browser.screenshot(OUTPUT / f"a11y-{name}-{width}-top.png", clip=(0, 0, width, 1400))
    return [f"{name} at {width}px: {line}" for line in axe.violations(browser)]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("colors", ["light", "dark"])
def test_the_email_has_no_serious_violations(
    site: Site, browser: Browser, width: int, colors: str
) -> None:
    browser.viewport(width, 900, mobile=width < 400)
    scheme(browser, colors)
    try:
        browser.open(site.email_html.as_uri())
        assert check(browser, f"email-{colors}", width) == []
    finally:
        scheme(browser, "light")


@pytest.fixture(scope="module")
def received_emails(site: Site, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The HTML of each kind of email a demo reader got: the issue, confirmation, welcome."""
    folder = tmp_path_factory.mktemp("received")
    issue_subject = site.report.compose.rendered.message.subject
    found: dict[str, Path] = {}
    for item in site.report.received:
        message = message_from_bytes(item.data, policy=default_policy)
        assert isinstance(message, EmailMessage)
        subject = str(message["Subject"])
        kind = (
            "issue"
            if subject == issue_subject
            else "confirmation"
            if b"/confirm/" in item.data
            else "welcome"
        )
        body = message.get_body(preferencelist=("html",))
        assert body is not None, subject
        found.setdefault(kind, folder / f"{kind}.html").write_text(
            str(body.get_content()), encoding="utf-8"
        )
    assert sorted(found) == ["confirmation", "issue", "welcome"]
    return found


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("colors", ["light", "dark"])
def test_every_email_a_reader_gets_has_no_serious_violations(
    received_emails: dict[str, Path], browser: Browser, width: int, colors: str
) -> None:
    """As delivered (each reader's links and name filled in), not only as composed."""
    browser.viewport(width, 900, mobile=width < 400)
    scheme(browser, colors)
    found: list[str] = []
    try:
        for kind, page in received_emails.items():
            browser.open(page.as_uri())
            found += check(browser, f"received-{kind}-{colors}", width)
    finally:
        scheme(browser, "light")
    assert found == []


@pytest.mark.parametrize("width", WIDTHS)
def test_the_web_copy_and_the_archive_in_the_dark_scheme(
    site: Site, browser: Browser, width: int
) -> None:
    """A reader whose system is dark gets the same readable pages (the site keeps one scheme)."""
    browser.viewport(width, 900, mobile=width < 400)
    scheme(browser, "dark")
    found: list[str] = []
    try:
        for name, path in {
            "web-copy": f"/issues/{site.report.issue_id}",
            "papers": "/?q=mammo*",
            "issues": "/issues",
        }.items():
            browser.open(site.url + path)
            found += check(browser, f"{name}-dark", width)
    finally:
        scheme(browser, "light")
    assert found == []


@pytest.mark.parametrize("width", WIDTHS)
def test_every_archive_page_has_no_serious_violations(
    site: Site, browser: Browser, width: int
) -> None:
    browser.viewport(width, 900, mobile=width < 400)
    found: list[str] = []
    pages = {
        "web-copy": f"/issues/{site.report.issue_id}",
        "papers": "/",
        "search": "/?q=deep+learning",
        "search-page-2": "/?q=learning&per_page=10&page=2",
        "no-results": "/?q=zzzqxv",
        "filters": "/?q=mri&source=pubmed&sort=oldest",
        "beyond-the-last-page": "/?page=99",
        "issues": "/issues",
        "subscribe": "/subscribe",
        "link-problem": "/confirm/not-a-real-token",
        "not-found": "/no-such-page",
        "issue-missing": "/issues/2001-W01",
        "unsubscribe": site.unsubscribe_path(WIDTHS.index(width)),
    }
    for name, path in pages.items():
        browser.open(site.url + path)
        found += check(browser, name, width)

    # what a form answers: an unsubscribe, a signup with a mistake, a signup, its confirmation
    browser.click("form button[type=submit]", navigates=True)
    assert "unsubscribed" in browser.js("document.body.innerText")
    found += check(browser, "unsubscribed", width)
    browser.open(site.url + "/subscribe")
    browser.type("#signup-email", "not an address")
    browser.click(".signup button", navigates=True)
    found += check(browser, "signup-mistake", width)
    browser.open(site.url + "/subscribe")
    address = f"reader-{width}@example.org"
    browser.type("#signup-email", address)
    browser.click(".signup button", navigates=True)
    found += check(browser, "check-your-inbox", width)
    browser.open(site.url + _confirm_path(site.smtp, address))
    confirm_button = 'form[action*="/confirm/"] button'
    if browser.js(f"!!document.querySelector('{confirm_button}')"):  # confirmed by a press
        found += check(browser, "confirm", width)
        browser.click(confirm_button, navigates=True)
    assert "isn't valid" not in browser.js("document.body.innerText")
    found += check(browser, "confirmed", width)
    assert found == []


def _confirm_path(smtp: RecordingSMTPServer, address: str) -> str:
    end = time.monotonic() + 10
    while time.monotonic() < end:
        for message in smtp.parsed():
            if address in str(message["To"]):
                body = message.get_body(preferencelist=("plain",))
                assert body is not None
                link = re.search(r"https?://\S+/confirm/\S+", str(body.get_content()))
                assert link is not None
                return urlsplit(link.group(0)).path
        time.sleep(0.05)
    raise AssertionError(f"no confirmation email to {address}")


def _contrast(first: list[float], second: list[float]) -> float:
    def luminance(rgb: list[float]) -> float:
        parts = [c / 255 for c in rgb[:3]]
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in parts]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    light, dark = sorted((luminance(first), luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


FOCUSED = """(() => {
  const el = document.activeElement, style = getComputedStyle(el);
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  let bg = el.parentElement;
  while (bg && rgb(getComputedStyle(bg).backgroundColor)[3] === 0) bg = bg.parentElement;
  return {
    what: el.tagName + (el.id ? "#" + el.id : "") + " " + (el.innerText || el.name || "").slice(0, 30),
    style: style.outlineStyle, width: parseFloat(style.outlineWidth),
    ring: rgb(style.outlineColor),
    behind: rgb(bg ? getComputedStyle(bg).backgroundColor : "rgb(255, 255, 255)"),
  };
})()"""


def test_the_focus_ring_stands_out_on_every_control(site: Site, browser: Browser) -> None:
    browser.viewport(1280, 900)
    browser.open(site.url + "/?q=learning")
    seen = []
    for _ in range(14):  # the site's name, navigation, signup, search, filters, results
        for kind in ("keyDown", "keyUp"):
            browser.send(
                "Input.dispatchKeyEvent",
                {"type": kind, "key": "Tab", "code": "Tab", "windowsVirtualKeyCode": 9},
            )
        focused = browser.js(FOCUSED)
        seen.append(focused["what"])
        assert focused["style"] != "none" and focused["width"] >= 2, focused
        assert _contrast(focused["ring"], focused["behind"]) >= 3.0, focused
    assert any("INPUT#q" in s for s in seen), seen
    browser.screenshot(OUTPUT / "a11y-focus-1280.png", clip=(0, 0, 1280, 900))


def test_a_phones_abstract_toggle_shows_its_focus_on_its_label(
    site: Site, browser: Browser
) -> None:
    """The checkbox itself is invisible: the ring goes round "Show the whole abstract"."""
    browser.viewport(375, 900, mobile=True)
    browser.open(site.url + "/?q=learning")
    label = None
    for _ in range(30):
        for kind in ("keyDown", "keyUp"):
            browser.send(
                "Input.dispatchKeyEvent",
                {"type": kind, "key": "Tab", "code": "Tab", "windowsVirtualKeyCode": 9},
            )
        label = browser.js(
            "(() => { const el = document.activeElement;"
            " if (!el.classList.contains('abstract-toggle')) return null;"
            " const label = document.querySelector(`label[for='${el.id}']`);"
            " const style = getComputedStyle(label);"
            " const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);"
            " return {text: label.innerText, style: style.outlineStyle,"
            " width: parseFloat(style.outlineWidth), ring: rgb(style.outlineColor)}; })()"
        )
        if label is not None:
            break
    assert label is not None, "no abstract toggle is reached with Tab on a phone"
    assert label["text"] == "Show the whole abstract"
    assert label["style"] == "solid" and label["width"] >= 2
    assert _contrast(label["ring"], [251, 251, 252]) >= 3.0  # on the page's background


def test_the_abstract_toggle_shows_only_under_cut_abstracts(site: Site, browser: Browser) -> None:
    state = """[...document.querySelectorAll('.abstract')].map(box => {
      const text = box.querySelector('.abstract-text'), label = box.querySelector('.abstract-more');
      return {cut: text.scrollHeight > text.clientHeight + 1,
              toggle: !!label && getComputedStyle(label).display !== 'none',
              focusable: [...box.querySelectorAll('input')].some(
                  i => getComputedStyle(i).display !== 'none')};
    })"""
    browser.viewport(1280, 900)
    browser.open(site.url + "/")
    wide = browser.js(state)
    assert wide and all(not a["cut"] and not a["toggle"] and not a["focusable"] for a in wide)
    browser.viewport(375, 900, mobile=True)
    browser.open(site.url + "/")
    phone = browser.js(state)
    assert any(a["cut"] for a in phone)
    assert all(a["toggle"] == a["cut"] == a["focusable"] for a in phone), phone
