"""An issue's life: draft -> sending -> sent, or a draft discarded.

Only sending and sent issues use up papers and issue numbers: drafts may overlap
(an experiment with a custom window does not take the week's papers), and a
discarded draft leaves no gap in the numbers. Every status change here is a
conditional write (``UPDATE ... WHERE status IN (...)``, its row count checked), so
a compose that races a send can never turn a sent issue back into a draft.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from newsletter.core.errors import ComposeError, IssueNotFoundError, SendError
from newsletter.core.models import (
    Delivery,
    DeliveryStatus,
    Issue,
    IssueStatus,
    issue_choices,
    table,
)
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.issue.outbox import IssueFolder

I = table(Issue)  # noqa: E741
D = table(Delivery)

# statuses whose papers and numbers are taken
USED = (IssueStatus.SENDING.value, IssueStatus.SENT.value)
# statuses a compose may (re)write as a draft
REWRITABLE = (IssueStatus.DRAFT.value, IssueStatus.DISCARDED.value)


def next_number(conn: Connection) -> int:
    """The number the next sent issue gets: one more than the highest sending or sent one."""
    top = conn.execute(select(func.max(I.c.number)).where(I.c.status.in_(USED))).scalar()
    return int(top or 0) + 1


def used_papers(conn: Connection, issue_id: str) -> set[int]:
    """Papers that other sending or sent issues carried (pinned or kept): not news any more."""
    query = (
        select(issue_choices.c.paper_id)
        .join(I, I.c.id == issue_choices.c.issue_id)
        .where(
            issue_choices.c.issue_id != issue_id,
            issue_choices.c.choice.in_(("pinned", "kept")),
            I.c.status.in_(USED),
        )
    )
    return {int(row[0]) for row in conn.execute(query)}


@dataclass(frozen=True)
class DraftRow:
    issue_id: str
    number: int
    subject: str
    window_start: date
    window_end: date
    composed_at: datetime


def save_draft(conn: Connection, row: DraftRow) -> None:
    """Create the issue's row as a draft, or rewrite it if it is one (or was discarded).

    Raises ComposeError when the issue is sending or sent: the row is left as it is.
    """
    values = {
        "number": row.number,
        "subject": row.subject,
        "window_start": row.window_start,
        "window_end": row.window_end,
        "status": IssueStatus.DRAFT.value,
        "composed_at": row.composed_at,
    }
    changed = conn.execute(
        update(I).where(I.c.id == row.issue_id, I.c.status.in_(REWRITABLE)).values(**values)
    ).rowcount
    if changed:
        return
    status = conn.execute(select(I.c.status).where(I.c.id == row.issue_id)).scalar()
    if status is None:
        try:
            with conn.begin_nested():
                conn.execute(insert(I).values(id=row.issue_id, **values))
            return
        except IntegrityError:  # another process made the row meanwhile
            status = conn.execute(select(I.c.status).where(I.c.id == row.issue_id)).scalar()
    raise ComposeError(
        f"issue {row.issue_id} is {status}; a sent issue is not composed again "
        "(compose another week with --week)."
    )


def claim_for_sending(conn: Connection, issue_id: str, now: datetime) -> int:
    """Turn a draft into a sending issue, keeping the number it was composed with.

    Returns that number, or 0 when the issue is not a draft any more (another process
    claimed it first). Raises SendError when a sending or sent issue has taken the
    number (it was composed before another issue went out): composing it again
    renumbers it. A number above the next one is kept (a list that starts at #12).
    """
    taken = next_number(conn) - 1
    current = conn.execute(select(I.c.number).where(I.c.id == issue_id)).scalar()
    if current is not None and int(current) <= taken:
        raise SendError(
            f"issue {issue_id} was composed as #{current}, but #{taken} has gone out since; "
            f"run `slice compose` for it again so that it becomes #{taken + 1}."
        )
    changed = conn.execute(
        update(I)
        .where(I.c.id == issue_id, I.c.status == IssueStatus.DRAFT.value)
        .values(status=IssueStatus.SENDING.value, send_started_at=now)
    ).rowcount
    return int(current or 0) if changed else 0


@dataclass(frozen=True)
class IssueSummary:
    """One line of `slice issues`."""

    id: str
    number: int
    status: str
    window_start: date
    window_end: date
    subject: str
    papers: int
    sent: int
    open: int
    failed: int
    composed_at: datetime
    sent_at: datetime | None


def list_issues(store: Store, *, include_discarded: bool = False) -> list[IssueSummary]:
    """Every issue, newest window first, with its papers and deliveries counted."""
    papers = (
        select(issue_choices.c.issue_id, func.count().label("n"))
        .where(issue_choices.c.choice.in_(("pinned", "kept")))
        .group_by(issue_choices.c.issue_id)
        .subquery()
    )
    deliveries = (
        select(D.c.issue_id, D.c.status, func.count().label("n"))
        .group_by(D.c.issue_id, D.c.status)
        .subquery()
    )
    query = select(I, func.coalesce(papers.c.n, 0)).outerjoin(papers, papers.c.issue_id == I.c.id)
    if not include_discarded:
        query = query.where(I.c.status != IssueStatus.DISCARDED.value)
    out: list[IssueSummary] = []
    with store.read() as session:
        conn = session.connection()
        counts: dict[str, dict[str, int]] = {}
        for issue_id, status, n in conn.execute(select(deliveries)):
            counts.setdefault(issue_id, {})[status] = int(n)
        rows = conn.execute(query.order_by(I.c.window_start.desc(), I.c.id.desc())).all()
    for row in rows:
        mine = counts.get(row.id, {})
        out.append(
            IssueSummary(
                id=row.id,
                number=row.number,
                status=row.status,
                window_start=row.window_start,
                window_end=row.window_end,
                subject=row.subject,
                papers=int(row[-1]),
                sent=mine.get(DeliveryStatus.SENT.value, 0),
                open=sum(
                    mine.get(s.value, 0)
                    for s in (
                        DeliveryStatus.PENDING,
                        DeliveryStatus.SENDING,
                        DeliveryStatus.DEFERRED,
                    )
                ),
                failed=mine.get(DeliveryStatus.FAILED.value, 0),
                composed_at=row.composed_at,
                sent_at=row.sent_at,
            )
        )
    return out


def discard(settings: Settings, store: Store, issue_id: str, *, now: datetime) -> Path | None:
    """Discard a draft: its row says discarded, its choices go, its folder moves aside.

    Returns where the folder went (outbox/.discarded/<id>-<time>), or None if it had
    none. A sending or sent issue is refused with a ComposeError.
    """
    folder = IssueFolder.of(settings.outbox_dir, issue_id)
    with store.write() as session:
        conn = session.connection()
        changed = conn.execute(
            update(I)
            .where(I.c.id == issue_id, I.c.status == IssueStatus.DRAFT.value)
            .values(status=IssueStatus.DISCARDED.value)
        ).rowcount
        if not changed:
            status = conn.execute(select(I.c.status).where(I.c.id == issue_id)).scalar()
            if status is None:
                raise IssueNotFoundError(
                    f"no issue {issue_id}; `slice issues` lists the drafts and sent issues."
                )
            if status == IssueStatus.DISCARDED.value:
                raise ComposeError(f"issue {issue_id} is discarded already.")
            raise ComposeError(
                f"issue {issue_id} is {status}: only a draft can be discarded "
                "(what was sent stays in the archive)."
            )
        conn.execute(issue_choices.delete().where(issue_choices.c.issue_id == issue_id))
        if not folder.root.is_dir():
            return None
        target = settings.outbox_dir / ".discarded" / f"{issue_id}-{now:%Y%m%dT%H%M%S}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(folder.root), str(target))
        return target
