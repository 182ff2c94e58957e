"""Eight consecutive weeks as an editor runs them, against a real SMTP server and the real app.

Drafts (one discarded), pins and exclusions, a draft composed ahead, readers who join
late and one who leaves with the one-click link. Afterwards: no paper went out twice,
the issue numbers run 1 to 8, every link of every email works, and every issue's papers
clear the relevance floor.
"""

from __future__ import annotations

import asyncio
import json
import random
import urllib.parse
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from newsletter.core.config import load_settings
from newsletter.core.models import Issue, Paper, Subscriber, SubscriberStatus
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.issue.compose import compose_issue
from newsletter.issue.issuefile import read_issue_file
from newsletter.issue.lifecycle import discard
from newsletter.issue.linkcheck import links_in
from newsletter.issue.outbox import IssueFolder
from newsletter.issue.window import Window, week_window
from newsletter.send.service import SendOptions, send_issue
from newsletter.web import create_app
from tests.composedata import add_papers
from tests.send_support import add_reader, parse
from tests.support.liveserver import LiveServer
from tests.support.smtpd import RecordingSMTPServer
from tests.test_relevance import GENERAL_AI, PROFILE, RADIOLOGY

PAPER_LINKS = (
    "https://doi.org/10.5555/",
    "https://arxiv.org/",
    "https://www.medrxiv.org/content/10.5555/",
)
FAST = SendOptions(rate=0.0, concurrency=2, retry_base_seconds=0.02)
EXTRA = [
    ("Breast ultrasound lesion detection with deep learning",
     "A deep learning model detected breast lesions on ultrasound in 4 100 women; radiology "
     "readers with its assistance recalled fewer benign lesions."),
    ("Knee MRI cartilage segmentation for osteoarthritis trials",
     "Deep learning segmentation of knee cartilage on MRI matched expert readers across "
     "three trials and reduced reading time."),
]  # fmt: skip


def _week(n: int) -> Window:
    return week_window(f"2026-W{14 + n:02d}")  # week 1 is 2026-W15 (6 to 12 April)


def _papers_for(n: int) -> list[dict[str, Any]]:
    """A realistic week: five imaging papers, six general-AI ones, one old paper indexed late."""
    window = _week(n)
    seen = datetime.combine(window.start + timedelta(days=3), datetime.min.time(), UTC)
    out = []
    for i, (title, abstract) in enumerate(RADIOLOGY + EXTRA + GENERAL_AI + GENERAL_AI):
        out.append(
            {"title": f"{title}, week {n} ({i})", "abstract": abstract, "authors": ["Ana Silva"],
             "source": ("pubmed", "arxiv", "medrxiv")[i % 3], "kind": "preprint",
             "published": window.start + timedelta(days=i % 7), "first_seen": seen,
             "doi": f"10.5555/w{n}.{i}"}
        )  # fmt: skip
    out.append(
        {"title": f"Old chest CT radiology paper indexed in week {n}", "authors": ["Old Author"],
         "abstract": "Deep learning on chest CT for radiology, published long ago.",
         "source": "pubmed", "kind": "paper", "published": window.start - timedelta(days=200),
         "first_seen": seen, "doi": f"10.5555/old.{n}"}
    )  # fmt: skip
    return out


def _open(url: str, data: bytes | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    with urllib.request.urlopen(request) as answer:
        return int(answer.status), answer.read().decode()


def _send(settings: Settings, store: Store, issue_id: str) -> None:
    report = asyncio.run(send_issue(settings, store, issue_id, options=FAST, rng=random.Random(1)))
    assert report.finished, report


@pytest.fixture
def weekly(project: Path, smtp_environ: dict[str, str]) -> Settings:
    (project / "slice.toml").write_text(PROFILE.replace("max_papers = 6", "max_papers = 4"))
    return load_settings(config=project / "slice.toml", environ=smtp_environ)


def test_eight_weeks_of_an_editor(weekly: Settings, smtp_server: RecordingSMTPServer) -> None:
    settings = weekly
    with Store.open(settings.database_url) as store:
        server = LiveServer(create_app(settings, store=store)).start()
        settings.web.base_url = server.url  # the app and the sends share this settings object
        try:
            _run_weeks(settings, store, smtp_server, server.url)
        finally:
            server.stop()


def _run_weeks(settings: Settings, store: Store, smtp: RecordingSMTPServer, site: str) -> None:
    for address in ("ada@example.com", "bob@example.com", "cy@example.com"):
        add_reader(store, address)
    sent: list[str] = []
    received: dict[str, list[str]] = defaultdict(list)  # reader -> issue ids, in order
    weekly_ids = {n: add_papers(store, _papers_for(n)) for n in range(1, 9)}  # as fetch stores them
    for n in range(1, 9):
        window = _week(n)
        ids = weekly_ids[n]
        now = datetime.combine(window.end + timedelta(days=1), datetime.min.time(), UTC)
        if n == 1:  # an experiment with a custom window, then thrown away
            trial = compose_issue(
                settings,
                store,
                window=Window(window.start, window.start + timedelta(days=2)),
                now=now,
            )
            discard(settings, store, trial.issue_id, now=now)
        if n == 3:
            add_reader(store, "late@example.com")  # joins before the third issue
        pins: list[int] = []
        excludes: list[int] = []
        if n in (2, 6):  # the editor swaps the top paper for the fifth imaging paper
            first = compose_issue(settings, store, window=window, now=now)
            excludes = [first.issue.papers[0].id]
            pins = [ids[f"{EXTRA[1][0]}, week {n} (4)"]]
            if pins[0] in [p.id for p in first.issue.papers]:
                pins = [ids[f"{EXTRA[0][0]}, week {n} (3)"]]
        if n == 4:  # next week's draft composed early: it takes no papers or number
            ahead = compose_issue(settings, store, window=_week(5), now=now)
            assert ahead.issue.number == 4
        model = settings.outbox_dir / ".cache" / "editor-model.json"
        cached = model.read_bytes() if n == 3 else b""
        result = compose_issue(
            settings, store, window=window, pins=pins, excludes=excludes, now=now
        )
        if n == 3:
            # the send of week 2 (the editor's swap) trained the model this compose uses:
            # it learns from the swap and trains nothing itself
            assert result.selection.learned_from > 0
            assert model.read_bytes() == cached
        listed = [p.id for p in result.issue.papers]
        assert all(p in listed for p in pins) and not set(excludes) & set(listed)
        assert ids[f"Old chest CT radiology paper indexed in week {n}"] not in listed
        before = len(smtp.messages)
        _send(settings, store, result.issue_id)
        sent.append(result.issue_id)
        for message in smtp.messages[before:]:
            received[message.rcpt_tos[0]].append(result.issue_id)
        if n == 5:  # bob leaves with the one-click link of the issue he just got
            (bobs,) = [m for m in smtp.messages[before:] if m.rcpt_tos == ["bob@example.com"]]
            header = str(parse(bobs.data)["List-Unsubscribe"])
            url = header.split("<", 1)[1].split(">", 1)[0]
            assert url.startswith(f"{site}/unsubscribe/")
            status, _ = _open(
                url, urllib.parse.urlencode({"List-Unsubscribe": "One-Click"}).encode()
            )
            assert status == 200

    _check(settings, store, smtp, site, sent, received)


def _check(
    settings: Settings,
    store: Store,
    smtp: RecordingSMTPServer,
    site: str,
    sent: list[str],
    received: dict[str, list[str]],
) -> None:
    with store.read() as session:
        issues = session.exec(select(Issue).order_by(col(Issue.number))).all()
        bob = session.exec(select(Subscriber).where(Subscriber.email == "bob@example.com")).one()
        papers = {p.id: p for p in session.exec(select(Paper)).all()}
    by_status = {i.id: (i.number, i.status) for i in issues}
    assert [by_status[i] for i in sent] == [(n, "sent") for n in range(1, 9)]  # 1 to 8, no gap
    assert [i.id for i in issues if i.status == "discarded"] == ["2026-04-06_2026-04-08"]
    assert bob.status == SubscriberStatus.UNSUBSCRIBED

    # no paper in two sent issues; every paper on topic (the pins were on-topic too)
    seen: dict[int, str] = {}
    for issue_id in sent:
        issue = read_issue_file(IssueFolder.of(settings.outbox_dir, issue_id).selection)
        assert 1 <= len(issue.papers) <= 4
        for entry in issue.papers:
            assert entry.id not in seen, f"paper {entry.id} in {seen.get(entry.id)} and {issue_id}"
            seen[entry.id] = issue_id
            assert papers[entry.id].on_topic is True, papers[entry.id].title

    # who got what: everyone from when they joined, bob until he left
    assert received["ada@example.com"] == sent and received["cy@example.com"] == sent
    assert received["late@example.com"] == sent[2:]
    assert received["bob@example.com"] == sent[:5]

    # every link of every email: the site's work, the papers' go to their DOI
    checked: set[str] = set()
    for message in smtp.messages:
        msg = parse(message.data)
        html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
        text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        for url in links_in(html, text):
            assert "__SLICE" not in url and "127.0.0.1:8000" not in url, url
            if url.startswith(site):
                if "/unsubscribe/" in url or url in checked:
                    continue  # each reader's own: GET shows a page with a button
                status, _body = _open(url)
                assert status == 200, url
                checked.add(url)
            else:
                assert url.startswith(PAPER_LINKS), url
    assert {f"{site}/issues/{i}" for i in sent} <= checked
    status, archive = _open(f"{site}/issues")
    assert all(f"/issues/{i}" in archive for i in sent)
    listing = json.dumps(sorted(checked))
    assert f"{site}/issues" in listing and f"{site}/" in listing
