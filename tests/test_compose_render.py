"""What the rendered issue looks like to a reader: links, hostile paper text, size, editor items."""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

import lxml.html
import pytest

from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.issue.compose import compose_issue
from newsletter.issue.outbox import GREETING, UNSUBSCRIBE_URL, resolve_links
from newsletter.issue.render import plus_line
from newsletter.issue.window import week_window
from tests.composedata import NOW, STRUCTURED, WEEK, add_papers


def compose(settings: Settings, store: Store, **kw: Any):  # type: ignore[no-untyped-def]
    return compose_issue(settings, store, window=week_window(WEEK), now=NOW, **kw)


def links(html: str) -> list[str]:
    doc = lxml.html.fromstring(html)
    return [el.get(attr) for attr in ("href", "src") for el in doc.xpath(f"//*[@{attr}]")]


def assert_links_absolute(html: str) -> None:
    """Every link absolute once the base URL is resolved (as send and the archive do)."""
    html = resolve_links(html, "https://weekly.example.org")
    doc = lxml.html.fromstring(html)
    ids = set(doc.xpath("//@id"))
    found = links(html)
    assert found
    for link in found:
        if link.startswith("#"):
            assert link[1:] in ids, f"anchor {link} points nowhere"
        else:
            assert re.match(r"^(https?://[^\s<>\"]+|__SLICE_UNSUBSCRIBE_URL__)$", link), link


HOSTILE_TITLE = (
    '<script>alert(1)</script>Nodules "><img src=x onerror=alert(1)> '
    "__SLICE_UNSUBSCRIBE_URL__ {{ 7*7 }} {% raw %} deep learning CT\r\nBcc: victim@example.org"
)
HOSTILE_ABSTRACT = (
    "Subject: you won\r\nBcc: everyone@example.org\r\n\r\n"
    "We show $\\alpha < 0.05$ and <math><mi>x</mi><mo>=</mo><msup><mi>y</mi><mn>2</mn></msup></math> "
    'with <i>in vivo</i> H<sub>2</sub>O. <a href="javascript:alert(1)">click</a> '
    '<style>body{display:none}</style><iframe src="https://evil.example"></iframe> '
    + "Deep learning on CT improves detection. "
    * 250  # ~10,000 characters
)


def test_hostile_paper_text_renders_harmless(csettings: Settings, cstore: Store) -> None:
    add_papers(cstore, [{
        "title": HOSTILE_TITLE, "authors": ['<b onmouseover="x()">Eve</b>', "__SLICE_FIRST_NAME__"],
        "abstract": HOSTILE_ABSTRACT, "source": "pubmed", "kind": "paper", "published": date(2026, 5, 27),
        "journal": "<iframe>J</iframe>", "url": "javascript:alert(1)", "pmid": "40000099",
    }])  # fmt: skip
    csettings.stories.drafts = False  # the abstract itself, not a story draft, is under test
    result = compose(csettings, cstore)
    for html in (result.folder.email_html.read_text(), result.folder.web_html.read_text()):
        doc = lxml.html.fromstring(html)
        assert doc.xpath("//script | //iframe | //img | //math | //body//style") == []
        assert [a for a in doc.xpath("//@*") if a.attrname.startswith("on")] == []
        assert not any("javascript" in link.lower() for link in links(html))
        assert_links_absolute(html)
        # the markup shows as text, safe tags kept
        assert (
            "&lt;script&gt;alert(1)&lt;/script&gt;" in html or "alert(1)" not in doc.text_content()
        )
        assert "<i>in vivo</i>" in html and "H<sub>2</sub>O" in html
        assert "&#123;&#123; 7*7 &#125;&#125;" in html
        assert "and x=y2 with" in html  # MathML kept as its text
        assert len(html.encode()) < 80_000
    email = result.folder.email_html.read_text()
    # placeholders only where the template put them: the paper's fake ones are defused
    assert email.count(UNSUBSCRIBE_URL) == 1 and email.count(GREETING) == 1
    assert "__SLICE_FIRST_NAME__" not in email
    text = result.folder.text.read_text()
    assert text.count(UNSUBSCRIBE_URL) == 1 and text.count(GREETING) == 1
    assert "__SLICE\u200b_UNSUBSCRIBE_URL__" in text
    # the 10,000-character abstract is cut at a sentence, with a link to read on
    assert re.search(
        r'<a href="https://pubmed.ncbi.nlm.nih.gov/40000099/"[^>]*>Read more</a>', email
    )
    assert "Read more: https://pubmed.ncbi.nlm.nih.gov/40000099/" in text
    assert text.count("Deep learning on CT improves detection.") < 40
    # a header-looking first line stays body text; the subject is one clean line
    subject = json.loads(result.folder.message.read_text())["subject"]
    assert "\n" not in subject and "\r" not in subject and "<" not in subject
    assert len(subject) <= 70 and subject.endswith("deep…")  # cut to fit a phone
    assert subject.startswith('alert(1)Nodules ">') or subject.startswith("Nodules")


def test_every_link_is_absolute(csettings: Settings, cstore: Store) -> None:
    add_papers(cstore)
    result = compose(csettings, cstore)
    assert_links_absolute(result.folder.email_html.read_text())
    assert_links_absolute(result.folder.web_html.read_text())
    for url in re.findall(r"https?://\S+", result.folder.text.read_text()):
        assert url.startswith(("https://weekly.example.org", "https://doi.org/", "https://arxiv.org/",
                               "https://pubmed.ncbi.nlm.nih.gov/", "https://www.medrxiv.org/"))  # fmt: skip


def _long_abstract(i: int) -> str:
    sentence = (
        f"In cohort {i}, the deep learning model was evaluated on CT and MRI examinations "
        "from several hospitals, and radiologists compared its output with their reports. "
    )
    return STRUCTURED + "\n\n" + sentence * 8


def ten_papers() -> list[dict[str, Any]]:
    return [
        {
            "title": f"Deep learning study {i} of radiology CT workflows across European hospitals",
            "authors": [f"Author {j} Surname" for j in range(12)],
            "abstract": _long_abstract(i), "source": ["pubmed", "arxiv", "medrxiv"][i % 3],
            "kind": "paper", "published": date(2026, 5, 25 + i % 7), "doi": f"10.1000/study.{i}",
            "journal": "European Radiology",
        }
        for i in range(10)
    ]  # fmt: skip


def test_ten_papers_with_full_abstracts_stay_under_80_kb(
    csettings: Settings, cstore: Store
) -> None:
    csettings.compose.max_papers = 10
    csettings.compose.per_source_cap = 10
    csettings.compose.abstract_chars = 3000  # no trimming: every abstract in full
    add_papers(cstore, ten_papers())
    result = compose(csettings, cstore)
    assert len(result.issue.papers) == 10
    assert "Read more" not in result.folder.email_html.read_text()
    size = result.sizes["email.html"]
    print(f"\nemail.html for 10 papers with full abstracts: {size} bytes ({size / 1024:.1f} KB)")
    assert size < 80 * 1024
    assert result.sizes["issue.html"] < 80 * 1024


def test_structured_labels_bold_and_authors_shortened(csettings: Settings, cstore: Store) -> None:
    add_papers(cstore)
    html = compose(csettings, cstore).folder.email_html.read_text()
    for label in ("Background:", "Methods:", "Results:", "Conclusion:"):
        assert f"<b>{label}</b>" in html
    assert "Ana Silva, Ben Okafor, Chen Wei et al." in html
    assert "Gus Berg" not in html
    assert ">arXiv</span>" in html and ">PubMed</span>" in html and ">medRxiv</span>" in html


def test_editor_items_get_sections_and_the_plus_line(csettings: Settings, cstore: Store) -> None:
    add_papers(cstore)
    result = compose(csettings, cstore)
    issue = json.loads(result.folder.selection.read_text())
    issue["items"] = [
        {"kind": "dataset", "title": "CT-RATE 2", "url": "https://example.org/ctrate", "text": "50,000 chest CTs with reports."},
        {"kind": "dataset", "title": "BraTS 2026", "url": "https://example.org/brats"},
        {"kind": "device", "title": "LungScan AI", "source": "FDA 510(k) K261234", "text": "Nodule triage on CT."},
    ]  # fmt: skip
    issue["papers"][0]["headline"] = "A chest X-ray foundation model"
    result.folder.selection.write_text(json.dumps(issue))
    again = compose(csettings, cstore)
    html = again.folder.email_html.read_text()
    text = again.folder.text.read_text()
    assert "Plus: 2 new datasets, 1 cleared device &amp; 3 new papers" in html
    assert "Plus: 2 new datasets, 1 cleared device & 3 new papers" in text
    assert (
        html.index("New datasets")
        < html.index("Cleared devices")
        < html.index("More papers this week")
    )
    assert "NEW DATASETS" in text and "https://example.org/brats" in text
    # the two featured headlines do not fit in 70 characters together: the first alone
    assert again.rendered.message.subject == "A chest X-ray foundation model"


@pytest.mark.parametrize(
    ("counts", "papers", "expected"),
    [
        ({"dataset": 4, "device": 6}, 4, "Plus: 4 new datasets, 6 cleared devices & 4 new papers"),
        ({}, 1, "Plus: 1 new paper"),
        ({"event": 1}, 0, "Plus: 1 event"),
        ({"webinar": 2}, 2, "Plus: 2 webinars & 2 new papers"),
        ({}, 0, ""),
    ],
)
def test_plus_line(counts: dict[str, int], papers: int, expected: str) -> None:
    assert plus_line(counts, papers) == expected
