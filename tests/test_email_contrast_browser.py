"""Every email a reader gets, in a real browser, light and dark, phone and desktop:
all visible text reaches WCAG AA contrast against what is behind it.

Screenshots go to tests/output/ (not committed): look at them after a template change.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from email.message import EmailMessage
from pathlib import Path

import pytest

from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.readers.mail import SubscriberMail
from newsletter.readers.subscribers import Confirmation, Subscribers, Welcome
from tests.regen_golden import build
from tests.support.browser import Browser, find_chromium

CHROMIUM = find_chromium()
OUTPUT = Path(__file__).parent / "output"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="headless chromium is not installed"),
]

# Each visible text node: its colour against the first opaque background behind it
# (WCAG 2 relative luminance); large text (24px, or 18.66px bold) needs 3:1, the rest 4.5:1.
LOW_CONTRAST_JS = """(() => {
  const parse = (c) => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(',').map(Number); return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; };
  const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
  const behind = (el) => { for (let e = el; e; e = e.parentElement) {
    const c = parse(getComputedStyle(e).backgroundColor); if (c && c.a > 0.5) return c; }
    return {r: 255, g: 255, b: 255, a: 1}; };
  const out = [];
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walk.nextNode()) {
    const node = walk.currentNode; const text = node.textContent.trim(); if (!text) continue;
    const el = node.parentElement; const cs = getComputedStyle(el); const box = el.getBoundingClientRect();
    if (cs.visibility === 'hidden' || parseFloat(cs.opacity) === 0 || box.width < 2 || box.height < 2) continue;
    const fg = parse(cs.color); const bg = behind(el);
    const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    const ratio = (hi + 0.05) / (lo + 0.05);
    const size = parseFloat(cs.fontSize); const bold = parseInt(cs.fontWeight, 10) >= 700;
    const need = (size >= 24 || (bold && size >= 18.66)) ? 3 : 4.5;
    if (ratio < need) out.push(`${text.slice(0, 40)}: ${cs.color} on rgb(${bg.r}, ${bg.g}, ${bg.b}) = ${ratio.toFixed(2)}`);
  }
  return out; })()"""


class _NoMailer:
    async def send(self, messages: Sequence[EmailMessage]) -> list[str | None]:
        return [None for _ in messages]


def html_part(message: EmailMessage) -> str:
    body = message.get_body(("html",))
    assert body is not None
    content: str = body.get_content()
    return content


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM is not None
    with Browser(CHROMIUM) as opened:
        yield opened


@pytest.fixture(scope="module")
def emails(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("emails")
    files = build(folder)
    out = {"issue": folder / "email.html"}
    out["issue"].write_text(files["email.html"], encoding="utf-8")
    return out


@pytest.fixture
def optin_emails(settings: Settings, store: Store, tmp_path: Path) -> dict[str, Path]:
    mail = SubscriberMail(Subscribers(settings, store), mailer=_NoMailer())
    confirm = mail.confirmation(Confirmation("ada@example.com", "u1", "t0ken"))
    welcome = mail.welcome(Welcome("ada@example.com", "Ada Lovelace", "u1", "2026-W22"))
    out = {}
    for name, message in (("confirm", confirm), ("welcome", welcome)):
        out[name] = tmp_path / f"{name}.html"
        out[name].write_text(html_part(message), encoding="utf-8")
    return out


def low_contrast(browser: Browser, page: Path, *, width: int, scheme: str, shot: str) -> list[str]:
    browser.viewport(width, 900, mobile=width < 480)
    browser.send(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
    )
    try:
        browser.open(page.as_uri())
        browser.screenshot(OUTPUT / f"{shot}-{width}-{scheme}.png")
        found: list[str] = browser.js(LOW_CONTRAST_JS)
    finally:
        browser.send("Emulation.setEmulatedMedia", {"features": []})
    return found


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [375, 1280])
def test_the_issue_email_reaches_aa_contrast(
    browser: Browser, emails: dict[str, Path], width: int, scheme: str
) -> None:
    assert low_contrast(browser, emails["issue"], width=width, scheme=scheme, shot="email") == []


def test_the_header_line_is_readable_in_dark_mode(
    browser: Browser, emails: dict[str, Path]
) -> None:
    """ "Issue #n · date" and "View in browser" were 2.96:1 and 2.47:1 on the dark page."""
    low_contrast(browser, emails["issue"], width=375, scheme="dark", shot="email-header")
    browser.send(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
    )
    try:
        browser.open(emails["issue"].as_uri())
        colours = browser.js(
            "(() => { const a = [...document.querySelectorAll('a')].find(a => a.textContent === 'View in browser');"
            " return [getComputedStyle(a.parentElement).color, getComputedStyle(a).color]; })()"
        )
    finally:
        browser.send("Emulation.setEmulatedMedia", {"features": []})
    assert colours == ["rgb(170, 178, 188)", "rgb(140, 196, 255)"]  # 8.3:1 and 9.7:1


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [375, 1280])
@pytest.mark.parametrize("name", ["confirm", "welcome"])
def test_the_optin_emails_reach_aa_contrast_and_go_dark(
    browser: Browser, optin_emails: dict[str, Path], name: str, width: int, scheme: str
) -> None:
    page = optin_emails[name]
    assert low_contrast(browser, page, width=width, scheme=scheme, shot=name) == []
    browser.send(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
    )
    try:
        browser.open(page.as_uri())
        body, card = browser.js(
            "[getComputedStyle(document.querySelector('.page td')).backgroundColor,"
            " getComputedStyle(document.querySelector('.card')).backgroundColor]"
        )
    finally:
        browser.send("Emulation.setEmulatedMedia", {"features": []})
    if scheme == "dark":
        assert (body, card) == ("rgb(21, 24, 28)", "rgb(30, 35, 41)")
    else:
        assert card == "rgb(255, 255, 255)"
