"""An issue is called the same thing wherever a reader meets it: the email, its web copy,
the list of past issues and the feed."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

from newsletter.core.models import Issue, IssueStatus
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.issue.compose import compose_issue
from newsletter.issue.window import week_window
from newsletter.web import create_app
from tests.archive_support import get
from tests.composedata import NOW, WEEK, add_papers

LABEL = re.compile(r"\bIssue\s*#?\s*\d+")


def _labels(markup: str) -> set[str]:
    text = html.unescape(re.sub(r"<[^>]+>", " ", markup))
    return {" ".join(found.split()) for found in LABEL.findall(text)}


def test_the_email_and_the_web_name_an_issue_alike(csettings: Settings, cstore: Store) -> None:
    add_papers(cstore)
    result = compose_issue(csettings, cstore, window=week_window(WEEK), now=NOW)
    with cstore.write() as session:
        row = session.get(Issue, WEEK)
        assert row is not None
        row.status = IssueStatus.SENT.value
        row.sent_at = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
        row.subject = ""  # the list and the feed fall back to the label
        session.add(row)

    email = _labels(result.folder.text.read_text(encoding="utf-8"))
    email |= _labels(result.folder.email_html.read_text(encoding="utf-8"))
    assert email == {"Issue #1"}

    app = create_app(csettings, store=cstore)
    for url in (f"/issues/{WEEK}", "/issues", "/feed.xml"):
        page = get(app, url)
        assert page.status_code == 200, url
        assert _labels(page.text) == {"Issue #1"}, url
