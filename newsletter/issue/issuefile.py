"""issue.json: the editable selection of one issue.

Compose writes it the first time, then reads it back on every run and keeps what the
editor changed (order, intro, subject, per-paper fields, hand-written items) unless
``--reselect``. Featured papers get a story draft (`newsletter.issue.stories`) marked
``draft`` until the editor edits its words or deletes the mark. It is validated on reading, so a typo in a hand edit is a one-line
error naming the field, not a broken email.

    {
      "format": 1,
      "id": "2026-W22", "number": 46, "date": "2026-06-02",
      "window": {"start": "2026-05-25", "end": "2026-05-31"},
      "subject": "",            // empty: the featured headlines that fit in 70 characters
      "preheader": "",          // empty: the intro, or what the subject leaves out
      "intro": "…",             // paragraphs separated by a blank line
      "editor_note": "",        // printed after the papers
      "papers": [ {"id": 12, "score": 7.1, "title": "(for orientation; not rendered)",
                   "featured": true, "headline": "", "why_it_matters": "",
                   "details": [], "takeaway": "", "note": "",
                   "draft": {"by": "extractive", "digest": "…"}} ],  // null once reviewed
      "items": [ {"kind": "dataset", "title": "…", "url": "https://…", "text": "…"} ],
      "pinned": [], "excluded": [], "proposed": [12, …]
    }
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from newsletter.core.errors import ComposeError

FORMAT = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WindowDates(_Model):
    start: date
    end: date


class DraftMark(_Model):
    """A story compose drafted and nobody has reviewed: edit its words, or delete the mark."""

    by: str = Field(description='"extractive", or "model:<name>" for a language model.')
    digest: str = Field(description="Fingerprint of the drafted words; an edit changes them.")


class PaperEntry(_Model):
    """One selected paper and the editor's words about it."""

    id: int
    score: float = 0.0
    title: str = Field("", description="The paper's title, for the editor's orientation only.")
    featured: bool = False
    headline: str = ""
    why_it_matters: str = ""
    details: list[str] = Field(default_factory=list)
    takeaway: str = ""
    note: str = ""
    draft: DraftMark | None = Field(
        None, description="Set while the story is an unreviewed draft (see issue.stories)."
    )


# Kinds of hand-written item: (singular, plural) as the "Plus:" line counts them,
# and the heading of their section. Other kinds work too, named by their own word.
ITEM_KINDS: dict[str, tuple[str, str, str]] = {
    "dataset": ("new dataset", "new datasets", "New datasets"),
    "device": ("cleared device", "cleared devices", "Cleared devices"),
    "clearance": ("cleared device", "cleared devices", "Cleared devices"),
    "tool": ("new tool", "new tools", "New tools"),
    "event": ("event", "events", "Events"),
    "job": ("job", "jobs", "Jobs"),
    "news": ("news item", "news items", "In the news"),
}


class Item(_Model):
    """A hand-written entry that is not a paper: a dataset, a cleared device, an event."""

    kind: str
    title: str
    url: str = ""
    text: str = ""
    source: str = ""

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        value = value.strip().lower()
        if not value or not value.replace("-", "").replace("_", "").isalnum():
            raise ValueError("a kind is one word, like dataset or device")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("https://", "http://")):
            raise ValueError("links must be absolute (https://...)")
        return value


class IssueFile(_Model):
    format: int = FORMAT
    id: str
    number: int = Field(ge=1)
    date: date
    window: WindowDates
    subject: str = ""
    preheader: str = ""
    intro: str = ""
    editor_note: str = ""
    papers: list[PaperEntry] = Field(default_factory=list)
    items: list[Item] = Field(default_factory=list)
    pinned: list[int] = Field(default_factory=list)
    excluded: list[int] = Field(default_factory=list)
    proposed: list[int] = Field(
        default_factory=list, description="What the profile proposed (to tell the editor's edits)."
    )

    @field_validator("papers")
    @classmethod
    def _unique(cls, value: list[PaperEntry]) -> list[PaperEntry]:
        seen: set[int] = set()
        for entry in value:
            if entry.id in seen:
                raise ValueError(f"paper {entry.id} is listed twice")
            seen.add(entry.id)
        return value

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def read_issue_file(path: Path) -> IssueFile:
    """issue.json, validated. Raises ComposeError with the field and how to fix it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ComposeError(
            f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}; "
            "fix it, or run `slice compose --reselect` to start the selection again."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ComposeError(f"{path}: cannot read: {exc}") from None
    if isinstance(data, dict) and data.get("format", FORMAT) != FORMAT:
        raise ComposeError(
            f"{path}: format {data.get('format')!r} is not one this Slice reads ({FORMAT}); "
            "run `slice compose --reselect`."
        )
    try:
        return IssueFile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ComposeError(
            f"{path}: '{_where(tuple(err['loc']))}': {err['msg']}; fix it, or run "
            "`slice compose --reselect` to start the selection again."
        ) from None
