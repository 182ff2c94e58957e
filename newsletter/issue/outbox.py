"""The outbox: the contract between `slice compose` and `slice send`.

``outbox/<issue-id>/`` holds:

- ``issue.json``    the editable selection (compose reads it back and keeps edits)
- ``message.json``  what compose rendered last (see `RenderedIssue`): subject, preheader,
                    number, dates; ``send`` takes the subject from here, not from issue.json
- ``email.html``    the email's HTML, with per-reader placeholders and the base URL as
                    ``BASE_URL`` (so links follow SLICE_BASE_URL at send time)
- ``issue.txt``     the plain-text part, with per-reader placeholders
- ``issue.html``    the web copy: no reader's data, no placeholders
- ``preview.html``  email.html filled in for a sample reader, for the editor to look at;
                    never sent (send reads only email.html and issue.txt)
- ``dry-run/``      ``slice send --dry-run`` writes one .eml per reader here

The issue is rendered once; at send time each reader's values replace the
placeholders below and nothing is rendered again. Placeholders use only
``[A-Z_]``, so HTML escaping, MJML, CSS inlining and URL contexts leave them
alone. Text from papers never contains them (compose removes the marker).
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from newsletter.core.errors import IssueNotFoundError

# Per-reader values filled in at send time.
UNSUBSCRIBE_URL = "__SLICE_UNSUBSCRIBE_URL__"
FIRST_NAME = "__SLICE_FIRST_NAME__"  # the reader's first name, or the fallback ("there")
# The whole greeting line: [newsletter] greeting with the first name, or greeting_no_name.
GREETING = "__SLICE_GREETING__"
PLACEHOLDERS = (UNSUBSCRIBE_URL, FIRST_NAME, GREETING)
PLACEHOLDER_MARK = "__SLICE_"
# The site's base URL, the same for every reader: resolved when the message is built
# at send time (and when the archive serves the web copy), never frozen at compose time.
BASE_URL = "__SLICE_BASE_URL__"

ISSUE_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$")


def resolve_links(text: str, base_url: str) -> str:
    """The outbox's links made absolute with the base URL in use now."""
    return text.replace(BASE_URL, base_url.rstrip("/"))


# What preview.html shows in a reader's place: a sample name, and an unsubscribe link
# that goes nowhere (each reader's real link is signed for them at send time).
PREVIEW_FIRST_NAME = "Sam"
PREVIEW_UNSUBSCRIBE_URL = "#unsubscribe-link-preview"


def preview_html(email_html: str, message: RenderedIssue, base_url: str) -> str:
    """email.html as a sample reader sees it: every placeholder filled, links absolute."""
    greeting = message.greeting.replace("{name}", PREVIEW_FIRST_NAME)
    values = {
        GREETING: greeting,
        FIRST_NAME: PREVIEW_FIRST_NAME,
        UNSUBSCRIBE_URL: PREVIEW_UNSUBSCRIBE_URL,
    }
    for mark, value in values.items():
        email_html = email_html.replace(mark, html.escape(value))
    return resolve_links(email_html, base_url)


def strip_placeholders(text: str) -> str:
    """Make untrusted text unable to pose as a placeholder."""
    return text.replace(PLACEHOLDER_MARK, "__SLICE\u200b_")


@dataclass(frozen=True)
class RenderedIssue:
    """The contents of message.json: what send needs besides the HTML and text."""

    issue_id: str
    number: int
    subject: str
    preheader: str
    date: str  # ISO date printed on the issue
    window_start: str  # ISO date
    window_end: str  # ISO date
    web_url: str  # the web copy's link: BASE_URL + /issues/<id> (see `resolve_links`)
    paper_count: int
    rendered_at: str  # ISO timestamp
    greeting: str = "Good morning, {name},"  # {name}: the reader's first name
    greeting_no_name: str = "Good morning,"  # for a reader without a name

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> RenderedIssue:
        data = json.loads(text)
        optional = ("greeting", "greeting_no_name")  # message.json written before them
        return cls(
            **{k: data[k] for k in cls.__dataclass_fields__ if k in data or k not in optional}
        )


@dataclass(frozen=True)
class IssueFolder:
    """Paths of one issue's files in the outbox."""

    root: Path
    issue_id: str

    @classmethod
    def of(cls, outbox: Path, issue_id: str) -> IssueFolder:
        if not ISSUE_ID.match(issue_id):
            raise IssueNotFoundError(
                f"{issue_id!r} is not an issue id (like 2025-W24); `ls outbox/` lists composed issues."
            )
        return cls(outbox / issue_id, issue_id)

    @property
    def selection(self) -> Path:
        return self.root / "issue.json"

    @property
    def message(self) -> Path:
        return self.root / "message.json"

    @property
    def email_html(self) -> Path:
        return self.root / "email.html"

    @property
    def preview(self) -> Path:
        return self.root / "preview.html"

    @property
    def text(self) -> Path:
        return self.root / "issue.txt"

    @property
    def web_html(self) -> Path:
        return self.root / "issue.html"

    @property
    def dry_run(self) -> Path:
        return self.root / "dry-run"

    def read_rendered(self) -> RenderedIssue:
        """message.json, read back; raises IssueNotFoundError if compose has not run."""
        self.require_rendered()
        return RenderedIssue.from_json(self.message.read_text(encoding="utf-8"))

    def require_rendered(self) -> None:
        """Raise a helpful error unless compose has rendered this issue."""
        missing = [p.name for p in (self.message, self.email_html, self.text) if not p.is_file()]
        if missing:
            raise IssueNotFoundError(
                f"issue {self.issue_id} is not composed ({', '.join(missing)} missing in {self.root}); "
                f"run `slice compose` first."
            )
