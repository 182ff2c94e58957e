"""One hostile record must not break the week: every source's text is cleaned at ingest,
and compose names the paper (never the template) when a paper still breaks the email."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlmodel import select

from newsletter.core.errors import ComposeError
from newsletter.core.models import Paper
from newsletter.core.store import Store
from newsletter.issue.compose import compose_issue
from newsletter.issue.outbox import UNSUBSCRIBE_URL
from newsletter.issue.window import week_window
from newsletter.papers.ingest import ingest
from newsletter.papers.sources import arxiv, biorxiv, pubmed, rss
from newsletter.papers.sources.base import PaperRecord
from newsletter.papers.sources.files import read_file
from newsletter.papers.text import MAX_NESTING
from tests.composedata import NOW, WEEK, add_papers, project_settings
from tests.conftest import FIXTURES

HERE = FIXTURES / "sources"
# What JSON can carry: U+0001, an ANSI escape sequence, DEL, a C1 control.
JSON_HOSTILE = "\u0001\u001b[31m\u007f\u009b"
# What XML 1.0 can carry (it forbids most C0 characters): DEL and C1 controls.
XML_HOSTILE = "\u007f\u0085\u009b"
NESTED = "<i>" * 300 + "deep" + "</i>" * 300
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _depth(fragment: str) -> int:
    depth = deepest = 0
    for closing in re.findall(r"<(/?)(?:i|b|sub|sup)>", fragment):
        depth += -1 if closing else 1
        deepest = max(deepest, depth)
    return deepest


def _arxiv() -> list[PaperRecord]:
    feed = (HERE / "arxiv_new.xml").read_text(encoding="utf-8")
    feed = feed.replace("Segmenting livers", f"Segmenting{XML_HOSTILE} livers")
    feed = feed.replace("Few labels suffice.", f"Few{XML_HOSTILE} labels suffice.")
    feed = feed.replace("<name>Sara Ito</name>", f"<name>Sara{XML_HOSTILE} Ito</name>")
    return arxiv.parse_feed(feed.encode())[0]


def _arxiv_rss() -> list[PaperRecord]:
    feed = (HERE / "arxiv_rss.xml").read_text(encoding="utf-8")
    feed = feed.replace("Self-supervised pretraining", f"Self-supervised{XML_HOSTILE} pretraining")
    feed = feed.replace("Mei Tanaka", f"Mei{XML_HOSTILE} Tanaka")
    return rss.parse_feed(feed.encode())


def _rss() -> list[PaperRecord]:
    nested = NESTED.replace("<", "&lt;").replace(">", "&gt;")
    feed = f"""<?xml version="1.0"?><rss version="2.0"><channel><title>J</title>
    <item><title>A{XML_HOSTILE} journal paper {nested}</title><link>https://j.example/1</link>
    <description>&lt;p&gt;Some {nested} abstract{XML_HOSTILE}.&lt;/p&gt;</description>
    <pubDate>Tue, 10 Jun 2025 08:00:00 GMT</pubDate><author>Ann{XML_HOSTILE} Lee</author>
    </item></channel></rss>"""
    return rss.parse_feed(feed.encode(), label="journal-rss")


def _pubmed() -> list[PaperRecord]:
    xml = (HERE / "pubmed_traps.xml").read_text(encoding="utf-8")
    xml = xml.replace("Deep learning for <i>de novo</i>", f"Deep{XML_HOSTILE} learning {NESTED}")
    xml = xml.replace("AUC was 0.91.", f"AUC{XML_HOSTILE} was {NESTED} 0.91.")
    xml = xml.replace("<LastName>Müller</LastName>", f"<LastName>Mül{XML_HOSTILE}ler</LastName>")
    xml = xml.replace("Radiology: Artificial intelligence", f"Radiology{XML_HOSTILE}: AI")
    return list(pubmed.iter_articles(io.BytesIO(xml.encode())))[:1]


def _medrxiv() -> list[PaperRecord]:
    page = json.loads((HERE / "medrxiv_page.json").read_text(encoding="utf-8"))
    post = page["collection"][2]
    post["title"] = f"Ultrasound{JSON_HOSTILE} for everyone"
    post["abstract"] = f"Short{JSON_HOSTILE}.\u0000"
    post["authors"] = f"Bruce{JSON_HOSTILE}, E. A."
    page["collection"] = [post]
    return list(biorxiv.read_file(io.BytesIO(json.dumps(page).encode()), label="page"))


def _file(name: str, text: str) -> Callable[[Path], list[PaperRecord]]:
    def read(tmp: Path) -> list[PaperRecord]:
        path = tmp / name
        path.write_text(text, encoding="utf-8")
        return list(read_file(path))

    return read


_RECORD = {
    "title": f"File{JSON_HOSTILE} paper {NESTED}",
    "abstract": f"An{JSON_HOSTILE} abstract {NESTED}",
    "authors": [f"Doe{JSON_HOSTILE}, J."],
    "journal": f"Journal{JSON_HOSTILE}",
    "source": "editor",
    "kind": "paper",
    "published": "2025-06-10",
    "url": f"https://example.org/{JSON_HOSTILE}1",
}
_CSV = (
    "title,authors,source,kind,published,abstract\n"
    f'"CSV{JSON_HOSTILE} paper {NESTED}","Doe{JSON_HOSTILE}, J.",editor,paper,2025-06-11,'
    f'"Abstract{JSON_HOSTILE} {NESTED}"\n'
)

SOURCES: dict[str, Callable[[Path], list[PaperRecord]]] = {
    "arxiv": lambda _tmp: _arxiv(),
    "arxiv-rss": lambda _tmp: _arxiv_rss(),
    "rss": lambda _tmp: _rss(),
    "pubmed": lambda _tmp: _pubmed(),
    "medrxiv": lambda _tmp: _medrxiv(),
    "json": _file("papers.json", json.dumps([_RECORD])),
    "jsonl": _file("papers.jsonl", json.dumps(_RECORD) + "\n"),
    "csv": _file("papers.csv", _CSV),
}


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_every_source_is_stored_without_control_characters_or_deep_markup(
    source: str, store: Store, tmp_path: Path
) -> None:
    records = SOURCES[source](tmp_path)
    assert records, "the payload parsed to no record"
    result = ingest(store, records, origin=source)
    assert not result.rejected, result.rejected
    with store.read() as session:
        papers = session.exec(select(Paper)).all()
    assert papers
    for paper in papers:
        texts = [paper.title, paper.abstract, paper.journal, paper.url, *paper.authors]
        for text in texts:
            assert not CONTROL.search(text), f"{source}: {text!r}"
        assert _depth(paper.title) <= MAX_NESTING and _depth(paper.abstract) <= MAX_NESTING
        # the words themselves survive
        assert re.search(r"[A-Za-z]{3} ", paper.title), paper.title


def test_one_control_character_anywhere_in_a_record_is_removed_where_it_is(store: Store) -> None:
    # records are checked whole, in one pass: a single hostile character in a keyword,
    # an extra key or one author, with every other text clean, is still found and removed
    def record(n: int, **changes: object) -> PaperRecord:
        base = PaperRecord(
            title=f"Clean title number {n}",
            source="editor",
            published=date(2025, 6, 10),
            authors=["Ann Lee", "Bo Kim"],
            abstract="Clean &lt; abstract with <i>markup</i>.",
            extra={"keywords": ["ct", "mri"], "note": {"a": "b"}},
        )
        for name, value in changes.items():
            setattr(base, name, value)
        return base

    records = [
        record(1, extra={"keywords": ["ct", f"mri{JSON_HOSTILE}"], "note": {"a": "b"}}),
        record(2, extra={f"no{JSON_HOSTILE}te": "x"}),
        record(3, authors=["Ann Lee", f"Bo{JSON_HOSTILE} Kim"]),
        record(4),
    ]
    result = ingest(store, records, origin="editor")
    assert result.new == 4, result
    with store.read() as session:
        papers = {p.title: p for p in session.exec(select(Paper)).all()}
    assert papers["Clean title number 1"].extra["keywords"] == ["ct", "mri[31m"]
    assert papers["Clean title number 2"].extra["no[31mte"] == "x"
    assert papers["Clean title number 3"].authors == ["Ann Lee", "Bo[31m Kim"]
    assert papers["Clean title number 4"].extra == {"keywords": ["ct", "mri"], "note": {"a": "b"}}
    assert papers["Clean title number 4"].abstract == "Clean &lt; abstract with <i>markup</i>."


def _week_papers(store: Store, title: str, abstract: str) -> int:
    return add_papers(
        store,
        [
            {
                "title": title,
                "abstract": abstract,
                "authors": ["Eve \u001b[2J Mallory"],
                "source": "medrxiv",
                "kind": "preprint",
                "published": date(2026, 5, 27),
                "first_seen": datetime(2026, 5, 27, tzinfo=UTC),
            }
        ],
    )[title]


def test_a_stored_hostile_record_still_gives_a_whole_email(
    project: Path, environ: dict[str, str]
) -> None:
    """Records stored before ingest cleaned them: the email keeps its footer and unsubscribe."""
    settings = project_settings(project, environ)
    with Store.open(settings.database_url) as store:
        add_papers(store)
        _week_papers(
            store,
            "Deep learning \u0001 radiology " + NESTED,
            "CT \u001b[31m segmentation " + "<b>" * 300 + "x" + "</b>" * 300,
        )
        result = compose_issue(settings, store, window=week_window(WEEK), now=NOW)
    html = result.rendered.email_html
    assert UNSUBSCRIBE_URL in html and UNSUBSCRIBE_URL in result.rendered.text
    assert ">Unsubscribe</a>" in html and "Past issues" in html  # the footer
    assert not CONTROL.search(html.replace("\n", "").replace("\r", ""))
    assert "\u001b" not in result.rendered.text and "\u0001" not in result.rendered.text
    # the hostile paper is in the email, and so is every paper listed after it
    assert "Deep learning  radiology" in html or "Deep learning radiology" in html
    for entry in result.issue.papers:
        assert f'id="paper-{entry.id}"' in html or entry.title[:30] in html


def test_a_paper_that_breaks_the_email_is_named(
    project: Path, environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """When one paper's text breaks the email, the error names it, not the package template."""
    settings = project_settings(project, environ)
    with Store.open(settings.database_url) as store:
        add_papers(store)
        bad = _week_papers(store, "Deep learning radiology BREAKME", "CT segmentation")
        # a project template that cannot print this one title (as mjml once could not)
        templates = settings.templates_dir / "email"
        templates.mkdir(parents=True, exist_ok=True)
        from newsletter.issue.templating import PACKAGE_TEMPLATES

        for name in ("_paper.mjml", "_story.mjml"):
            card = (PACKAGE_TEMPLATES / "email" / name).read_text(encoding="utf-8")
            (templates / name).write_text(
                "{% if 'BREAKME' in card.title_text %}"
                '<mj-text><a href="javascript:alert(1)">x</a></mj-text>{% endif %}' + card,
                encoding="utf-8",
            )
        with pytest.raises(ComposeError) as caught:
            compose_issue(settings, store, window=week_window(WEEK), now=NOW)
    message = str(caught.value)
    assert message.startswith(f"paper {bad} ('Deep learning radiology BREAKME') breaks the email")
    assert f"--exclude {bad}" in message
    assert "issue.mjml" not in message and "templates" not in message
