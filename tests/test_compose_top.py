"""The first screen a reader sees: subject, preview line, greeting, the "need to know" links;
and what every paper brings: its Results kept, a link, TeX made readable."""

from __future__ import annotations

import email
import email.policy
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import lxml.html
import pytest

from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.issue.compose import compose_issue
from newsletter.issue.outbox import BASE_URL, IssueFolder
from newsletter.issue.window import week_window
from newsletter.papers.ingest import ingest_files
from newsletter.send.message import Reader
from newsletter.send.setup import issue_message
from tests.composedata import NOW, PAPERS, WEEK, add_papers

# Real titles are long: these are the length of the ones that made a 371-character subject.
LONG_TITLES = [
    "Diagnostic performance of a deep learning algorithm for the detection of pulmonary "
    "nodules on low-dose chest CT in a national lung cancer screening programme: a "
    "prospective multicentre cohort study",
    "Artificial intelligence as an independent second reader in population-based "
    "mammography screening: results from a randomised, controlled, non-inferiority trial",
]


def compose(settings: Settings, store: Store, **kw: Any):  # type: ignore[no-untyped-def]
    return compose_issue(settings, store, window=week_window(WEEK), now=NOW, **kw)


def long_papers() -> list[dict[str, Any]]:
    papers = [dict(p) for p in PAPERS]
    papers[1]["title"], papers[2]["title"] = LONG_TITLES
    return papers


# --- subject and preview ----------------------------------------------------------------


def test_the_default_subject_fits_a_phone(csettings: Settings, cstore: Store) -> None:
    add_papers(cstore, long_papers())
    csettings.stories.drafts = False  # the titles themselves, not drafted headlines
    subject = compose(csettings, cstore).rendered.message.subject
    assert subject == ("Diagnostic performance of a deep learning algorithm for the detection")
    assert len(subject) <= 70


def test_two_short_headlines_share_the_subject_and_the_limit_is_a_setting(
    csettings: Settings, cstore: Store
) -> None:
    add_papers(cstore)
    result = compose(csettings, cstore)
    issue = json.loads(result.folder.selection.read_text())
    issue["papers"][0]["headline"] = "Chest X-ray AI with 1% of the labels"
    issue["papers"][1]["headline"] = "AI finds 4% more breast cancers"
    result.folder.selection.write_text(json.dumps(issue))
    again = compose(csettings, cstore)
    assert again.rendered.message.subject == (
        "Chest X-ray AI with 1% of the labels + AI finds 4% more breast cancers"
    )
    csettings.compose.subject_chars = 40
    assert (
        compose(csettings, cstore).rendered.message.subject
        == "Chest X-ray AI with 1% of the labels"
    )


def test_the_preview_line_does_not_repeat_the_subject(csettings: Settings, cstore: Store) -> None:
    add_papers(cstore)
    message = compose(csettings, cstore).rendered.message
    assert message.subject == "A foundation model for chest radiograph interpretation"
    assert message.preheader == (
        "Mammography AI as second reader: a prospective multicentre study · Plus: 3 new papers"
    )
    # with only one story, what it matters for stands in for the second headline
    csettings.compose.featured = 1
    lone = compose(csettings, cstore, reselect=True).rendered.message
    assert (
        lone.preheader
        == "We present a foundation model for chest radiography. · Plus: 4 new papers"
    )
    assert message.subject not in lone.preheader


def test_the_preview_line_does_not_repeat_a_headline_the_subject_shortened(
    csettings: Settings, cstore: Store
) -> None:
    papers = long_papers()
    papers[1]["title"] = (
        "Deep learning (DL) reconstruction of accelerated knee MRI in 312 patients with knee pain"
    )
    add_papers(cstore, papers)
    csettings.stories.drafts = False  # the titles themselves, not drafted headlines
    message = compose(csettings, cstore).rendered.message
    assert message.subject == "Deep learning reconstruction of accelerated knee MRI in 312 patients"
    # the subject is the first title without its "(DL)": the preview line goes on from there
    assert message.preheader.startswith("Artificial intelligence as an independent second reader")
    assert "knee" not in message.preheader


# --- greeting ------------------------------------------------------------------------


def greeting_of(settings: Settings, reader: Reader) -> tuple[str, str]:
    """The greeting line of the text part and of the HTML part that ``reader`` gets."""
    folder = IssueFolder.of(settings.outbox_dir, WEEK)
    raw = issue_message(settings, folder).render(reader, now=datetime(2026, 6, 1, 8, tzinfo=UTC))
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    line = text.split("View in your browser:", 1)[1].splitlines()[2]
    first_paragraph = lxml.html.fromstring(html).xpath("//p")[0].text_content()
    return line, first_paragraph


def test_a_reader_without_a_name_is_not_called_there(csettings: Settings, cstore: Store) -> None:
    add_papers(cstore)
    folder = compose(csettings, cstore).folder
    assert greeting_of(csettings, Reader("u1", "ada@example.com", "Dr. Ada Lovelace")) == (
        "Good morning, Ada,",
        "Good morning, Ada,",
    )
    assert greeting_of(csettings, Reader("u2", "anon@example.com", "")) == (
        "Good morning,",
        "Good morning,",
    )
    hostile = greeting_of(csettings, Reader("u3", "e@example.com", "<b>Eve</b> X"))
    assert hostile == ("Good morning, <b>Eve</b>,", "Good morning, <b>Eve</b>,")  # text, not markup
    assert "there" not in folder.web_html.read_text().split("Good morning")[1][:20]


def test_the_greetings_are_settings(csettings: Settings, cstore: Store) -> None:
    add_papers(cstore)
    csettings.newsletter.greeting = "Hello {name}!"
    csettings.newsletter.greeting_no_name = "Hello!"
    folder = compose(csettings, cstore).folder
    assert greeting_of(csettings, Reader("u1", "ada@example.com", "Ada"))[0] == "Hello Ada!"
    assert greeting_of(csettings, Reader("u2", "b@example.com", ""))[0] == "Hello!"
    assert "<p>Hello!</p>" in folder.web_html.read_text()
    with pytest.raises(ValueError, match=r"the greeting needs \{name\}"):
        csettings.newsletter.greeting = "Hello"
    with pytest.raises(ValueError, match=r"for readers without a name: leave \{name\} out"):
        csettings.newsletter.greeting_no_name = "Hello {name}!"


# --- the "need to know" links ---------------------------------------------------------


def test_need_to_know_links_go_to_the_web_copy_anchors(csettings: Settings, cstore: Store) -> None:
    add_papers(cstore)
    result = compose(csettings, cstore)
    ids = [p.id for p in result.issue.papers if p.featured]

    def need_to_know(html: str) -> list[str]:
        (intro_list,) = lxml.html.fromstring(html).xpath("//ul[li/a[contains(@href, '#paper-')]]")
        return [a.get("href") for a in intro_list.xpath(".//a")]

    # the outbox holds the site's address as a placeholder, resolved when a message is built
    for copy in (result.folder.email_html, result.folder.web_html):
        assert need_to_know(copy.read_text()) == [
            f"{BASE_URL}/issues/{WEEK}#paper-{i}" for i in ids
        ]
    folder = IssueFolder.of(csettings.outbox_dir, WEEK)
    raw = issue_message(csettings, folder).render(
        Reader("u1", "ada@example.com", "Ada"), now=datetime(2026, 6, 1, 8, tzinfo=UTC)
    )
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    sent = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert need_to_know(sent) == [
        f"https://weekly.example.org/issues/{WEEK}#paper-{i}" for i in ids
    ]
    web = lxml.html.fromstring(result.folder.web_html.read_text())
    assert all(web.xpath(f"//*[@id='paper-{i}']") for i in ids)


# --- abstracts, links, TeX ---------------------------------------------------------------

LONG_STRUCTURED = (
    "Background: " + "Screening programmes read millions of mammograms every year. " * 6 + "\n\n"
    "Methods: " + "We enrolled 1,204 women at 4 sites and read each study twice. " * 6 + "\n\n"
    "Results: AI found 31% of interval cancers at a recall rate of 2.1%; readers agreed "
    "with 78% of its flags.\n\n"
    "Conclusion: AI second reading could find interval cancers earlier.\n\n"
    "Funding: National Cancer Fund."
)


def test_a_trimmed_structured_abstract_keeps_results_and_conclusion(
    csettings: Settings, cstore: Store
) -> None:
    add_papers(cstore, [{
        "title": "Interval cancers and AI in mammography", "authors": ["A B"], "abstract": LONG_STRUCTURED,
        "source": "pubmed", "kind": "paper", "published": date(2026, 5, 27), "pmid": "40000200",
    }])  # fmt: skip
    csettings.compose.featured = 0
    csettings.compose.abstract_chars = 600
    result = compose(csettings, cstore)
    text = " ".join(result.folder.text.read_text().split())
    assert "Results: AI found 31% of interval cancers at a recall rate of 2.1%" in text
    assert "Conclusion: AI second reading could find interval cancers earlier." in text
    assert "Background: Screening programmes read millions of mammograms every year." in text
    assert "National Cancer Fund" not in text
    assert "Read more: https://pubmed.ncbi.nlm.nih.gov/40000200/" in text
    html = result.folder.email_html.read_text()
    assert "<b>Results:</b> AI found 31%" in html and "<b>Conclusion:</b>" in html
    # tighter still: Background and Methods go whole before a word of the Results is cut
    csettings.compose.abstract_chars = 200
    tight = " ".join(compose(csettings, cstore).folder.text.read_text().split())
    assert "Background:" not in tight and "Methods:" not in tight
    assert (
        "Results: AI found 31% of interval cancers at a recall rate of 2.1%; readers agreed "
        "with 78% of its flags. Conclusion: AI second reading could find interval cancers "
        "earlier."
    ) in tight


def test_a_paper_without_identifiers_links_to_a_search_and_compose_warns(
    csettings: Settings, cstore: Store
) -> None:
    ids = add_papers(cstore, [{
        "title": "Radiology workflow with deep learning", "authors": ["A B"],
        "abstract": "Deep learning in radiology.", "source": "rss", "kind": "paper",
        "published": date(2026, 5, 27),
    }])  # fmt: skip
    result = compose(csettings, cstore)
    pid = ids["Radiology workflow with deep learning"]
    search = (
        "https://pubmed.ncbi.nlm.nih.gov/?term=Radiology+workflow+with+deep+learning%5BTitle%5D"
    )
    assert f'href="{search.replace("&", "&amp;")}"' in result.folder.email_html.read_text()
    assert result.warnings == [
        f"paper {pid} has no DOI, PubMed, PMC or arXiv id and no URL: its title links to a "
        "search; add its DOI or url to the record and ingest it again."
    ]


def test_a_superscript_reads_as_a_power_in_the_text_part(
    csettings: Settings, cstore: Store
) -> None:
    add_papers(cstore, [{
        "title": "Deep learning on 10<sup>5</sup> radiographs", "authors": ["A B"],
        "abstract": "Radiology AI at a dose of 10<sup>-3</sup> Gy.", "source": "pubmed",
        "kind": "paper", "published": date(2026, 5, 27), "pmid": "40000300",
    }])  # fmt: skip
    csettings.stories.drafts = False
    result = compose(csettings, cstore)
    text = result.folder.text.read_text()
    assert "Deep learning on 10⁵ radiographs" in text and "10⁻³ Gy" in text
    assert "105" not in text and "10-3" not in text
    assert result.rendered.message.subject == "Deep learning on 10⁵ radiographs"
    assert "10<sup>5</sup>" in result.folder.email_html.read_text()


def test_tex_is_made_readable_from_json_csv_and_rss(store: Store, tmp_path: Path) -> None:
    record = {
        "title": "VO$_2$max after \\textit{in vivo} training",
        "abstract": "Mean age was $64.38\\pm13.63$ years; costs fell from $5 to $3.",
        "authors": ["A B"], "source": "pubmed", "kind": "paper", "published": "2026-05-27",
    }  # fmt: skip
    (tmp_path / "a.json").write_text(json.dumps([{**record, "pmid": "1"}]), encoding="utf-8")
    (tmp_path / "b.csv").write_text(
        "title,abstract,authors,source,kind,published,pmid\n"
        f'"{record["title"]} (CSV)","{record["abstract"]}",A B,pubmed,paper,2026-05-27,2\n',
        encoding="utf-8",
    )
    (tmp_path / "c.xml").write_text(
        '<?xml version="1.0"?><rss version="2.0"><channel><title>J</title><link>https://j.example</link>'
        "<description>j</description><item><title>VO$_2$max (RSS)</title>"
        "<link>https://j.example/3</link><description>Mean age was $64.38\\pm13.63$ years.</description>"
        "<pubDate>Wed, 27 May 2026 00:00:00 GMT</pubDate></item></channel></rss>",
        encoding="utf-8",
    )
    results = ingest_files(store, [tmp_path / "a.json", tmp_path / "b.csv", tmp_path / "c.xml"])
    assert [r.error for r in results] == [None, None, None]
    assert [r.new for r in results] == [1, 1, 1]
    from sqlmodel import select

    from newsletter.core.models import Paper

    with store.read() as session:
        stored = {p.title: p.abstract for p in session.exec(select(Paper))}
    assert stored == {
        "VO<sub>2</sub>max after <i>in vivo</i> training": (
            "Mean age was 64.38±13.63 years; costs fell from $5 to $3."
        ),
        "VO<sub>2</sub>max after <i>in vivo</i> training (CSV)": (
            "Mean age was 64.38±13.63 years; costs fell from $5 to $3."
        ),
        "VO<sub>2</sub>max (RSS)": "Mean age was 64.38±13.63 years.",
    }


def test_tex_stored_before_ingest_cleaned_it_renders_readable(
    csettings: Settings, cstore: Store
) -> None:
    add_papers(cstore, [{
        "title": "Deep learning VO$_2$max estimation from CT", "authors": ["A B"],
        "abstract": "Mean age was $64.38\\pm13.63$ years.", "source": "rss", "kind": "paper",
        "published": date(2026, 5, 27), "doi": "10.1/x",
    }])  # fmt: skip
    csettings.stories.drafts = False
    result = compose(csettings, cstore)
    html = result.folder.email_html.read_text()
    assert "VO<sub>2</sub>max" in html and "64.38±13.63" in html and "\\pm" not in html
    assert "Mean age was 64.38±13.63 years." in result.folder.text.read_text()
