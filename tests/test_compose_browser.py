"""The rendered email in a real browser: no horizontal overflow at phone and desktop widths.

Screenshots go to tests/output/ (not committed); look at them after a template change.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from newsletter.core.store import Store
from newsletter.issue.compose import compose_issue
from newsletter.issue.window import week_window
from tests.composedata import NOW, WEEK, add_papers, project_settings
from tests.regen_golden import build
from tests.support.browser import Browser, find_chromium

CHROMIUM = find_chromium()
OUTPUT = Path(__file__).parent / "output"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="headless chromium is not installed"),
]

LONG_WORD = "pneumonoultramicroscopicsilicovolcanoconiosis" * 3
LONG_URL = "https://example.org/" + "very-long-path-segment/" * 8


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM is not None
    with Browser(CHROMIUM) as opened:
        yield opened


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("golden-browser")
    files = build(folder)
    out: dict[str, Path] = {}
    for name in ("email.html", "issue.html"):
        path = folder / name
        path.write_text(files[name], encoding="utf-8")
        out[name] = path
    return out


@pytest.fixture(scope="module")
def stress(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An issue of awkward papers: very long words, URLs and author lists."""
    root = tmp_path_factory.mktemp("stress")
    from newsletter.core.project import init_project

    init_project(root / "project", name="Stress")
    settings = project_settings(
        root / "project", {"SLICE_SECRET_KEY": "stress-secret-key-0123456789"}
    )
    with Store.open(settings.database_url) as store:
        add_papers(store, [{
            "title": f"Deep learning radiology {LONG_WORD} on CT",
            "authors": [f"Author{'x' * 40} {i}" for i in range(30)],
            "abstract": f"Background: {LONG_WORD}. See {LONG_URL} for data. " + "Deep learning CT. " * 60,
            "source": "pubmed", "kind": "paper", "published": date(2026, 5, 27), "pmid": "40000100",
            "journal": "Journal of " + LONG_WORD,
        }])  # fmt: skip
        add_papers(store)
        result = compose_issue(settings, store, window=week_window(WEEK), now=NOW)
    return result.folder.email_html


def page_width(browser: Browser) -> tuple[int, int]:
    scroll, inner = browser.js("[document.documentElement.scrollWidth, window.innerWidth]")
    return int(scroll), int(inner)


@pytest.mark.parametrize("width", [375, 640])
@pytest.mark.parametrize("copy", ["email.html", "issue.html"])
def test_golden_issue_fits_the_viewport(
    browser: Browser, golden: dict[str, Path], width: int, copy: str
) -> None:
    browser.viewport(width, 800, mobile=width < 480)
    browser.open(golden[copy].as_uri())
    shot = browser.screenshot(OUTPUT / f"compose-{copy.split('.')[0]}-{width}.png")
    assert page_width(browser) == (width, width), f"horizontal overflow; see {shot}"
    assert browser.overflowing() == []
    if width == 375:
        # single column on phones: the story text spans the sheet
        sheet = browser.js("document.querySelector('.sheet').getBoundingClientRect().width")
        assert sheet == pytest.approx(width, abs=1)


@pytest.mark.parametrize("width", [375, 640])
def test_awkward_papers_do_not_overflow(browser: Browser, stress: Path, width: int) -> None:
    browser.viewport(width, 800, mobile=width < 480)
    browser.open(stress.as_uri())
    shot = browser.screenshot(OUTPUT / f"compose-stress-{width}.png")
    assert page_width(browser) == (width, width), f"horizontal overflow; see {shot}"


def test_the_preview_reads_as_a_reader_sees_it(browser: Browser, stress: Path) -> None:
    browser.viewport(640, 800)
    browser.open(stress.with_name("preview.html").as_uri())
    browser.screenshot(OUTPUT / "compose-preview-640.png")
    text = str(browser.js("document.body.innerText"))
    assert "Good morning, Sam," in text
    hrefs = browser.js("[...document.links].map(a => a.getAttribute('href')).join(' ')")
    assert "__SLICE_" not in text + str(hrefs)


def test_dark_mode_turns_the_sheet_dark(browser: Browser, golden: dict[str, Path]) -> None:
    browser.viewport(375, 800, mobile=True)
    browser.send(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
    )
    try:
        browser.open(golden["email.html"].as_uri())
        browser.screenshot(OUTPUT / "compose-email-375-dark.png")
        background = browser.js(
            "getComputedStyle(document.querySelector('.sheet td')).backgroundColor"
        )
        text = browser.js("getComputedStyle(document.querySelector('.sheet div')).color")
    finally:
        browser.send("Emulation.setEmulatedMedia", {"features": []})
    assert background == "rgb(21, 24, 28)"
    assert text == "rgb(230, 232, 235)"
