"""The editor's choices per issue, kept so that selection can learn from them.

Each compose records, for its issue, every paper the editor touched or kept:

- ``pinned``   the editor added it (``--pin``, or by hand in issue.json)
- ``excluded`` the editor removed it (``--exclude``, or deleted from issue.json)
- ``kept``     proposed by the profile and left in
- ``passed``   ranked by the profile but not proposed (the nearest runners-up)

Pins and exclusions are the strong signals; kept and passed papers are weak ones
that let a model learn from pins alone or from removals alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    insert,
    select,
)
from sqlmodel import Session

from newsletter.core.models import Paper, utcnow
from newsletter.issue.select import Choice, paper_tokens

metadata = MetaData()

issue_choices = Table(
    "issue_choices",
    metadata,
    Column("issue_id", String, primary_key=True),
    Column("paper_id", Integer, primary_key=True),
    Column("choice", String, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)  # created by migration m020_issue_choices (with its foreign keys)

CHOICES = ("pinned", "excluded", "kept", "passed")
# How much each kind of choice counts when training (pins and removals are what the editor did).
WEIGHTS = {"pinned": 2.0, "excluded": 2.0, "kept": 0.5, "passed": 0.25}


@dataclass(frozen=True)
class RecordedChoice:
    issue_id: str
    paper_id: int
    choice: str


def record(session: Session, issue_id: str, choices: Iterable[tuple[int, str]]) -> None:
    """Replace the recorded choices of ``issue_id`` (the issue row must exist)."""
    session.execute(delete(issue_choices).where(issue_choices.c.issue_id == issue_id))
    rows = [
        {"issue_id": issue_id, "paper_id": pid, "choice": choice, "recorded_at": utcnow()}
        for pid, choice in dict(choices).items()
        if choice in CHOICES
    ]
    if rows:
        session.execute(insert(issue_choices), rows)


def recorded(session: Session, issue_id: str | None = None) -> list[RecordedChoice]:
    query = select(issue_choices.c.issue_id, issue_choices.c.paper_id, issue_choices.c.choice)
    if issue_id is not None:
        query = query.where(issue_choices.c.issue_id == issue_id)
    return [RecordedChoice(*row) for row in session.execute(query.order_by("issue_id", "paper_id"))]


def in_other_issues(session: Session, issue_id: str) -> set[int]:
    """Papers that earlier issues carried (pinned or kept): they are not news any more."""
    query = select(issue_choices.c.paper_id).where(
        issue_choices.c.issue_id != issue_id, issue_choices.c.choice.in_(("pinned", "kept"))
    )
    return {row[0] for row in session.execute(query)}


def training_set(session: Session, *, except_issue: str) -> list[Choice]:
    """The editor's past choices (other issues than ``except_issue``) as training examples."""
    query = (
        select(Paper, issue_choices.c.choice)
        .join(issue_choices, issue_choices.c.paper_id == Paper.id)  # type: ignore[arg-type]
        .where(issue_choices.c.issue_id != except_issue)
    )
    out: list[Choice] = []
    for paper, choice in session.execute(query):
        wanted = choice in ("pinned", "kept")
        out.append(Choice(paper_tokens(paper), wanted, WEIGHTS[choice]))
    return out
