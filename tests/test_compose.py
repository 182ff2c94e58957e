"""`compose_issue`: the outbox files, issue.json edits, the Issue row, bad input."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from newsletter.core.errors import ComposeError, NoPapersError, TemplateError
from newsletter.core.models import Issue, IssueStatus
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.issue import choices, lifecycle
from newsletter.issue.compose import compose_issue
from newsletter.issue.outbox import (
    BASE_URL,
    GREETING,
    UNSUBSCRIBE_URL,
    IssueFolder,
    RenderedIssue,
)
from newsletter.issue.window import Window, week_window
from tests.composedata import NOW, WEEK, add_papers, project_settings


@pytest.fixture
def ids(cstore: Store) -> dict[str, int]:
    return add_papers(cstore)


def compose(settings: Settings, store: Store, week: str = WEEK, **kw: object):  # type: ignore[no-untyped-def]
    return compose_issue(settings, store, window=week_window(week), now=NOW, **kw)  # type: ignore[arg-type]


def read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def titles(issue: dict) -> list[str]:  # type: ignore[type-arg]
    return [p["title"] for p in issue["papers"]]


def test_compose_writes_the_outbox_and_the_issue_row(
    csettings: Settings, cstore: Store, ids: dict[str, int]
) -> None:
    result = compose(csettings, cstore)
    folder = IssueFolder.of(csettings.outbox_dir, WEEK)
    assert result.issue_id == WEEK
    for path in (folder.selection, folder.message, folder.email_html, folder.text, folder.web_html):
        assert path.is_file(), path
    message = folder.read_rendered()
    assert message == RenderedIssue(
        issue_id=WEEK,
        number=1,
        subject="A foundation model for chest radiograph interpretation",
        preheader=message.preheader,
        date="2026-06-01",
        window_start="2026-05-25",
        window_end="2026-05-31",
        web_url=f"{BASE_URL}/issues/2026-W22",  # resolved at send time
        paper_count=5,
        rendered_at="2026-06-01T07:30:00+00:00",
    )
    issue = read_json(folder.selection)
    assert issue["number"] == 1 and issue["intro"] == "" and issue["editor_note"] == ""
    assert [p["featured"] for p in issue["papers"]] == [True, True, False, False, False]
    assert all(p["score"] > 0 for p in issue["papers"])
    assert "Hospital parking and patient satisfaction" not in titles(issue)
    assert "Deep learning for fracture detection in canine radiographs" not in titles(issue)
    with cstore.read() as session:
        row = session.get(Issue, WEEK)
        assert row is not None
        assert (row.number, row.status, row.window_start, row.window_end) == (
            1, IssueStatus.DRAFT.value, date(2026, 5, 25), date(2026, 5, 31),
        )  # fmt: skip
        assert row.subject == message.subject


def test_issue_numbers_increment_and_stay(
    csettings: Settings, cstore: Store, ids: dict[str, int]
) -> None:
    add_papers(cstore, [{"title": "MRI in June", "authors": [], "source": "pubmed", "kind": "paper",
                         "published": date(2026, 6, 2), "first_seen": datetime(2026, 6, 2, tzinfo=UTC)}])  # fmt: skip
    assert compose(csettings, cstore).issue.number == 1
    # a draft takes no number: the next week's draft would also be #1
    assert compose(csettings, cstore, "2026-W23").issue.number == 1
    with cstore.write() as session:
        assert lifecycle.claim_for_sending(session.connection(), WEEK, NOW) == 1
    # once 2026-W22 went out, re-composing the draft of 2026-W23 makes it #2
    assert compose(csettings, cstore, "2026-W23").issue.number == 2


def test_no_papers_in_the_window_says_which_window_and_writes_nothing(
    csettings: Settings, cstore: Store, ids: dict[str, int]
) -> None:
    with pytest.raises(NoPapersError) as caught:
        compose(csettings, cstore, "2026-W30")
    assert str(caught.value) == (
        "no papers published or first seen in 2026-W30 (2026-07-20 to 2026-07-26); 7 papers are "
        "stored in all. Fetch papers with `slice fetch`, or choose another window with --week or "
        "--since/--until."
    )
    assert not (csettings.outbox_dir / "2026-W30").exists()
    with cstore.read() as session:
        assert session.exec(select(Issue)).all() == []


def test_rerun_keeps_the_editors_edits_and_reselect_drops_them(
    csettings: Settings, cstore: Store, ids: dict[str, int]
) -> None:
    result = compose(csettings, cstore)
    path = result.folder.selection
    issue = read_json(path)
    issue["intro"] = "A big week for screening.\n\nWhich of these will reach the clinic first?"
    issue["subject"] = "Screening AI grows up"
    issue["papers"].reverse()
    issue["papers"][0]["headline"] = "LLMs write impressions"
    issue["papers"][0]["why_it_matters"] = "Report drafting is the most asked-for use."
    issue["papers"][0]["details"] = ["800 reports", "3% significant errors"]
    issue["papers"][0]["takeaway"] = "Useful, with a reader."
    issue["papers"][0]["featured"] = True
    issue["items"] = [
        {
            "kind": "dataset",
            "title": "CT-RATE 2",
            "url": "https://example.org/ct",
            "text": "50k CTs.",
        }
    ]
    path.write_text(json.dumps(issue), encoding="utf-8")

    again = compose(csettings, cstore)
    kept = read_json(path)
    assert kept["intro"] == issue["intro"] and kept["subject"] == "Screening AI grows up"
    assert [p["id"] for p in kept["papers"]] == [p["id"] for p in issue["papers"]]
    assert kept["items"][0]["title"] == "CT-RATE 2"
    assert again.rendered.message.subject == "Screening AI grows up"
    html = result.folder.email_html.read_text(encoding="utf-8")
    assert "Which of these will reach the clinic first?" in html
    assert "LLMs write impressions" in html and "<b>Why it matters:</b>" in html
    assert "<b>The details:</b>" in html and "3% significant errors" in html
    assert "<b>Key takeaway:</b> Useful, with a reader." in html
    assert "New datasets" in html and 'href="https://example.org/ct"' in html
    assert "Plus: 1 new dataset &amp; 2 new papers" in html

    compose(csettings, cstore, reselect=True)
    fresh = read_json(path)
    assert fresh["intro"] == "" and fresh["items"] == [] and fresh["subject"] == ""


def test_pin_and_exclude_on_a_rerun(
    csettings: Settings, cstore: Store, ids: dict[str, int]
) -> None:
    first = compose(csettings, cstore, max_papers=3).selection
    ranking = [s.paper_id for s in first.ranked]
    parking = ids["Hospital parking and patient satisfaction"]
    dropped = ranking[2]
    compose(csettings, cstore, max_papers=3, excludes=[dropped])
    issue = read_json(csettings.outbox_dir / WEEK / "issue.json")
    # the freed place went to the next paper of the ranking
    assert [p["id"] for p in issue["papers"]] == [ranking[0], ranking[1], ranking[3]]
    compose(csettings, cstore, max_papers=3, pins=[parking])
    issue = read_json(csettings.outbox_dir / WEEK / "issue.json")
    listed = [p["id"] for p in issue["papers"]]
    assert listed == [ranking[0], ranking[1], ranking[3], parking]  # a pin may exceed --max
    assert issue["pinned"] == [parking] and issue["excluded"] == [dropped]
    # a later plain rerun keeps both decisions
    compose(csettings, cstore)
    assert [
        p["id"] for p in read_json(csettings.outbox_dir / WEEK / "issue.json")["papers"]
    ] == listed
    with cstore.read() as session:
        recorded = {c.paper_id: c.choice for c in choices.recorded(session, WEEK)}
    assert recorded[parking] == "pinned" and recorded[dropped] == "excluded"


def test_unknown_ids_and_contradictions_are_refused(
    csettings: Settings, cstore: Store, ids: dict[str, int]
) -> None:
    with pytest.raises(
        ComposeError,
        match=r"--pin 999: no paper with that id is stored; `slice papers` lists the ids\.",
    ):
        compose(csettings, cstore, pins=[999])
    with pytest.raises(ComposeError, match="both pinned and excluded"):
        compose(csettings, cstore, pins=[1], excludes=[1])


def test_a_broken_issue_json_is_a_one_line_error(
    csettings: Settings, cstore: Store, ids: dict[str, int]
) -> None:
    result = compose(csettings, cstore)
    path = result.folder.selection
    path.write_text('{"id": "2026-W22",', encoding="utf-8")
    with pytest.raises(ComposeError, match=r"issue.json: not valid JSON at line 1.*--reselect"):
        compose(csettings, cstore)
    issue = json.loads(result.issue.to_json())
    issue["papers"][0]["featured"] = "very"
    path.write_text(json.dumps(issue), encoding="utf-8")
    with pytest.raises(
        ComposeError, match=r"'papers\[0\].featured': Input should be a valid boolean"
    ):
        compose(csettings, cstore)
    issue["papers"][0]["featured"] = True
    issue["items"] = [{"kind": "dataset", "title": "x", "url": "/relative"}]
    path.write_text(json.dumps(issue), encoding="utf-8")
    with pytest.raises(ComposeError, match=r"'items\[0\].url'.*absolute"):
        compose(csettings, cstore)


def test_preprint_and_journal_version_appear_once_with_a_link_to_the_preprint(
    csettings: Settings, cstore: Store, ids: dict[str, int]
) -> None:
    journal = ids["Deep learning malignancy risk for pulmonary nodules at low-dose CT screening"]
    add_papers(cstore, [{
        "title": "Deep learning malignancy risk for pulmonary nodules (preprint)",
        "authors": ["Ana Silva"], "abstract": "Deep learning CT nodules radiology.", "source": "medrxiv",
        "kind": "preprint", "published": date(2026, 5, 26), "doi": "10.1101/2026.01.01.1",
        "url": "https://www.medrxiv.org/content/10.1101/2026.01.01.1v1", "published_version_id": journal,
    }])  # fmt: skip
    result = compose(csettings, cstore)
    listed = [p.id for p in result.issue.papers]
    assert listed.count(journal) == 1
    assert "Deep learning malignancy risk for pulmonary nodules (preprint)" not in [
        p.title for p in result.issue.papers
    ]
    html = result.folder.email_html.read_text(encoding="utf-8")
    assert 'href="https://doi.org/10.1148/radiol.260001"' in html
    assert (
        "preprint</a>" in html
        and 'href="https://www.medrxiv.org/content/10.1101/2026.01.01.1v1"' in html
    )
    assert (
        "Preprint: https://www.medrxiv.org/content/10.1101/2026.01.01.1v1"
        in result.folder.text.read_text()
    )


def test_a_draft_uses_up_no_papers_a_sent_issue_does(
    csettings: Settings, cstore: Store, ids: dict[str, int]
) -> None:
    """An experiment with a custom window leaves the week's papers to the week's issue."""
    nodules = ids["Deep learning malignancy risk for pulmonary nodules at low-dose CT screening"]
    experiment = compose_issue(
        csettings, cstore, window=Window(date(2026, 5, 20), date(2026, 5, 31)), now=NOW
    )
    assert nodules in [p.id for p in experiment.issue.papers]
    week = compose(csettings, cstore)
    assert nodules in [p.id for p in week.issue.papers]  # the draft did not take it
    with cstore.write() as session:
        assert lifecycle.claim_for_sending(session.connection(), WEEK, NOW) == 1
    again = compose_issue(
        csettings, cstore, window=Window(date(2026, 5, 20), date(2026, 5, 31)), now=NOW
    )
    assert nodules not in [p.id for p in again.issue.papers]  # the sent issue did
    assert again.issue.number == 2


def test_the_editor_teaches_the_selection(
    csettings: Settings, cstore: Store, ids: dict[str, int]
) -> None:
    parking = ids["Hospital parking and patient satisfaction"]
    llm = ids["Large language models draft radiology report impressions: a reader study"]
    compose(csettings, cstore, pins=[parking], excludes=[llm])
    new = add_papers(cstore, [
        {"title": "Parking shortages and patient satisfaction in radiology", "authors": [], "source": "pubmed",
         "kind": "paper", "published": date(2026, 6, 2), "first_seen": datetime(2026, 6, 2, tzinfo=UTC)},
        {"title": "Large language models draft radiology reports", "authors": [], "source": "pubmed",
         "kind": "paper", "published": date(2026, 6, 2), "first_seen": datetime(2026, 6, 2, tzinfo=UTC)},
    ])  # fmt: skip
    result = compose(csettings, cstore, "2026-W23")
    ranked = [s.paper_id for s in result.selection.ranked]
    assert ranked == [new["Parking shortages and patient satisfaction in radiology"],
                      new["Large language models draft radiology reports"]]  # fmt: skip
    assert result.selection.learned_from > 0 and result.model_terms

    csettings.profile.learn_from_editor = False
    plain = compose(csettings, cstore, "2026-W23", reselect=True)
    assert (
        plain.selection.ranked[0].paper_id == new["Large language models draft radiology reports"]
    )


# --- templates ----------------------------------------------------------------


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_jinja_error_names_file_and_line_and_keeps_the_previous_render(
    csettings: Settings, cstore: Store, ids: dict[str, int]
) -> None:
    result = compose(csettings, cstore)
    before = _snapshot(result.folder.root)
    custom = csettings.templates_dir / "email"
    custom.mkdir(parents=True, exist_ok=True)
    (custom / "issue.txt").write_text("Hello\n{{ newsletter.name }\n", encoding="utf-8")
    with pytest.raises(TemplateError) as caught:
        compose(csettings, cstore)
    assert str(caught.value).startswith(f"{custom / 'issue.txt'}, line 2: TemplateSyntaxError:")
    assert _snapshot(result.folder.root) == before

    (custom / "issue.txt").write_text("Hello\n\n{{ reader.last_name }}\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"issue.txt, line 3: UndefinedError: .*'last_name'"):
        compose(csettings, cstore)
    assert _snapshot(result.folder.root) == before


def test_an_mjml_error_names_the_template_line(
    csettings: Settings, cstore: Store, ids: dict[str, int]
) -> None:
    result = compose(csettings, cstore)
    before = _snapshot(result.folder.root)
    custom = csettings.templates_dir / "email"
    custom.mkdir(parents=True, exist_ok=True)
    source = (Path(__file__).parents[1] / "templates/email/_footer.mjml").read_text()
    lines = source.splitlines()
    lines.append('<mj-buton href="{{ links.web }}">Read online</mj-buton>')
    (custom / "_footer.mjml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(TemplateError) as caught:
        compose(csettings, cstore)
    message = str(caught.value)
    assert message.startswith(
        f"{custom / '_footer.mjml'}, line {len(lines)}: MJML error in the email: unknown tag <mj-buton>"
    )
    assert _snapshot(result.folder.root) == before


def test_project_templates_override_the_package(
    csettings: Settings, cstore: Store, ids: dict[str, int]
) -> None:
    custom = csettings.templates_dir / "email"
    custom.mkdir(parents=True, exist_ok=True)
    (custom / "issue.txt").write_text(
        "{{ newsletter.name }} #{{ issue.number }}\n{{ links.unsubscribe }}\n"
    )
    result = compose(csettings, cstore)
    assert result.folder.text.read_text() == f"Radiology AI Weekly #1\n{UNSUBSCRIBE_URL}\n"


# --- placeholders and copies ----------------------------------------------------


def test_placeholders_are_in_the_email_and_text_and_not_in_the_web_copy(
    csettings: Settings, cstore: Store, ids: dict[str, int]
) -> None:
    folder = compose(csettings, cstore).folder
    html = folder.email_html.read_text()
    text = folder.text.read_text()
    web = folder.web_html.read_text()
    assert re.search(rf'<a href="{UNSUBSCRIBE_URL}"[^>]*>Unsubscribe</a>', html)
    assert f"<p>{GREETING}</p>" in html
    assert f"Unsubscribe: {UNSUBSCRIBE_URL}" in text and f"\n{GREETING}\n" in text
    assert UNSUBSCRIBE_URL not in web and GREETING not in web and "<p>Good morning,</p>" in web
    # the only placeholder left is the site's base URL, which the archive resolves
    assert "__SLICE" not in web.replace(BASE_URL, "")
    assert "weekly.example.org" not in html + text + web  # no site URL frozen in the outbox
    assert "Every issue you receive ends with a link to unsubscribe" in web
    assert "12 Example Street, 1000 Brussels" in html and "12 Example Street" in text
    assert re.search(rf'href="{BASE_URL}/issues/2026-W22"[^>]*>View in browser</a>', html)
    assert html.startswith("<!doctype html>") and '<html lang="en"' in html
    assert "<script" not in html and "<link" not in html and "<img" not in html


def test_a_sent_issue_is_not_composed_again(
    csettings: Settings, cstore: Store, ids: dict[str, int]
) -> None:
    result = compose(csettings, cstore)
    before = _snapshot(result.folder.root)
    with cstore.write() as session:
        row = session.get(Issue, WEEK)
        assert row is not None
        row.status = IssueStatus.SENT.value
        session.add(row)
    with pytest.raises(
        ComposeError, match="issue 2026-W22 is sent; a sent issue is not composed again"
    ):
        compose(csettings, cstore)
    assert _snapshot(result.folder.root) == before


def test_compose_and_learning_on_every_backend(
    any_store: Store, project: Path, environ: dict[str, str]
) -> None:
    settings = project_settings(project, environ)
    ids = add_papers(any_store)
    parking = ids["Hospital parking and patient satisfaction"]
    llm = ids["Large language models draft radiology report impressions: a reader study"]
    first = compose_issue(
        settings, any_store, window=week_window(WEEK), pins=[parking], excludes=[llm], now=NOW
    )
    assert parking in [p.id for p in first.issue.papers] and llm not in [
        p.id for p in first.issue.papers
    ]
    add_papers(any_store, [{"title": "Parking and radiology satisfaction", "authors": [], "source": "pubmed",
                            "kind": "paper", "published": date(2026, 6, 2)}])  # fmt: skip
    second = compose_issue(settings, any_store, window=week_window("2026-W23"), now=NOW)
    assert second.issue.number == 1 and second.selection.learned_from > 0
    with any_store.read() as session:
        rows = session.exec(select(Issue).order_by(col(Issue.id))).all()
        assert [(r.id, r.number, r.status) for r in rows] == [
            (WEEK, 1, "draft"),
            ("2026-W23", 1, "draft"),
        ]
        recorded = {(c.issue_id, c.paper_id): c.choice for c in choices.recorded(session)}
    assert recorded[(WEEK, parking)] == "pinned" and recorded[(WEEK, llm)] == "excluded"


def test_a_hand_written_subject_cannot_break_the_header(
    csettings: Settings, cstore: Store, ids: dict[str, int]
) -> None:
    result = compose(csettings, cstore)
    issue = read_json(result.folder.selection)
    issue["subject"] = "Big week\r\nBcc: everyone@example.org"
    issue["preheader"] = "Line one\nline two"
    result.folder.selection.write_text(json.dumps(issue), encoding="utf-8")
    message = compose(csettings, cstore).rendered.message
    assert message.subject == "Big week Bcc: everyone@example.org"
    assert message.preheader == "Line one line two"
