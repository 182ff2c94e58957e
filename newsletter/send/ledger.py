"""The delivery ledger: one row per (issue, reader), and every change to it committed at once.

States: ``pending`` → ``sending`` → ``sent`` | ``deferred`` | ``failed``,
and ``skipped`` for a reader who left (or was suppressed) before their turn.

- `Ledger.start` freezes the audience: one ``pending`` row per confirmed
  subscriber, in the same transaction that marks the issue ``sending``.
- `Ledger.claim` marks rows ``sending`` (committed) before they are handed to a
  connection; `Ledger.record` commits each outcome. A row left ``sending`` by a
  killed run may or may not have reached the relay: the next run sends it again,
  with the same Message-ID.
- Rows are read in id order, a batch at a time: memory does not grow with the audience.

All methods are synchronous and short; the sender runs them on one thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import cast

from sqlalchemy import (
    Connection,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.types import DateTime, Integer, String

from newsletter.core.errors import SendError
from newsletter.core.models import (
    Delivery,
    DeliveryStatus,
    Issue,
    IssueStatus,
    Subscriber,
    SubscriberStatus,
    table,
)
from newsletter.core.store import Store
from newsletter.issue import lifecycle
from newsletter.issue.outbox import RenderedIssue
from newsletter.send.message import Reader

D = table(Delivery)
S = table(Subscriber)
I = table(Issue)  # noqa: E741

OPEN = (DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.DEFERRED)


def as_utc(value: datetime | None) -> datetime | None:
    """Datetimes from SQLite come back naive; they are UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Row:
    """A ledger row that is due, with what is needed to write the reader's message."""

    delivery_id: int
    subscriber_id: int
    attempts: int
    reader: Reader


@dataclass(frozen=True)
class Outcome:
    """What happened to one claimed row."""

    delivery_id: int
    subscriber_id: int
    status: DeliveryStatus  # SENT, DEFERRED, FAILED, or PENDING to hand a row back untried
    code: int | None = None
    error: str = ""
    next_attempt_at: datetime | None = None
    suppress: bool = False  # the address bounced: mark the subscriber so
    message_id: str = ""  # the Message-ID the message went (or would go) with


@dataclass(frozen=True)
class StartInfo:
    created: int  # rows the snapshot made (0 on a resume)
    resumed_in_flight: int  # rows a stopped run left 'sending'


class Ledger:
    """The ledger of one issue."""

    def __init__(self, store: Store, issue_id: str, *, batch_size: int = 500) -> None:
        self.store = store
        self.issue_id = issue_id
        self.batch_size = batch_size
        # plain connections (no ORM session) for the many small writes of a send;
        # on SQLite they take the write lock at BEGIN, like Store.write()
        self._writer = store.engine.execution_options(slice_write=True)

    def _write(self) -> AbstractContextManager[Connection]:
        return self._writer.begin()

    # --- the issue row --------------------------------------------------

    def issue(self) -> Issue | None:
        with self.store.read() as session:
            return session.get(Issue, self.issue_id)

    def ensure_issue(self, rendered: RenderedIssue) -> Issue:
        """The issue's row; made from message.json when compose did not record one."""
        try:
            return self._ensure_issue(rendered)
        except IntegrityError:  # another worker made it at the same instant
            issue = self.issue()
            assert issue is not None
            return issue

    def _ensure_issue(self, rendered: RenderedIssue) -> Issue:
        with self.store.write() as session:
            issue = session.get(Issue, self.issue_id)
            if issue is None:
                issue = Issue(
                    id=self.issue_id,
                    number=rendered.number,
                    subject=rendered.subject,
                    window_start=date.fromisoformat(rendered.window_start),
                    window_end=date.fromisoformat(rendered.window_end),
                )
                session.add(issue)
            return issue

    def start(self, now: datetime) -> StartInfo:
        """Freeze the audience (first run) or pick up where a stopped run left off."""
        with self._write() as conn:
            # the issue row, locked: a second worker starting at the same instant waits here,
            # then sees the snapshot made (on SQLite, BEGIN IMMEDIATE did the same)
            status = conn.execute(
                select(I.c.status).where(I.c.id == self.issue_id).with_for_update()
            ).scalar_one()
            if status == IssueStatus.COMPOSED:
                columns = ["issue_id", "subscriber_id", "status", "message_id", "attempts"]
                columns += ["last_error", "created_at", "updated_at"]
                ts = literal(now, DateTime(timezone=True))
                exists = select(D.c.id).where(
                    D.c.issue_id == self.issue_id, D.c.subscriber_id == S.c.id
                )
                snapshot = select(
                    literal(self.issue_id, String),
                    S.c.id,
                    literal(DeliveryStatus.PENDING.value, String),
                    literal("", String),
                    literal(0, Integer),
                    literal("", String),
                    ts,
                    ts,
                ).where(S.c.status == SubscriberStatus.CONFIRMED, ~exists.exists())
                if not lifecycle.claim_for_sending(conn, self.issue_id, now):
                    raise SendError(f"issue {self.issue_id} changed status meanwhile; run again.")
                mine = select(func.count()).select_from(D).where(D.c.issue_id == self.issue_id)
                before = conn.execute(mine).scalar_one()
                conn.execute(insert(D).from_select(columns, snapshot))
                # counted: the rowcount of an INSERT ... SELECT is -1 here (SQLAlchemy, psycopg)
                created = conn.execute(mine).scalar_one() - before
                return StartInfo(created=created, resumed_in_flight=0)
            # Rows a stopped run left 'sending' are taken back by the worker that starts
            # next (`Claims.release_dead`): on PostgreSQL other workers may still hold theirs.
            if status == IssueStatus.SENT:
                conn.execute(
                    update(I)
                    .where(I.c.id == self.issue_id)
                    .values(status=IssueStatus.SENDING.value)
                )
            return StartInfo(created=0, resumed_in_flight=0)

    def finish_if_done(self, now: datetime) -> bool:
        """Mark the issue sent when no row is left open."""
        with self._write() as conn:
            left = conn.execute(
                select(func.count())
                .select_from(D)
                .where(D.c.issue_id == self.issue_id, D.c.status.in_(OPEN))
            ).scalar_one()
            if left:
                return False
            conn.execute(
                update(I)
                .where(I.c.id == self.issue_id)
                .values(status=IssueStatus.SENT.value, sent_at=now)
            )
            return True

    # --- reading --------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Rows per state (every state present, zero when none)."""
        with self.store.read() as session:
            rows = session.connection().execute(
                select(D.c.status, func.count())
                .where(D.c.issue_id == self.issue_id)
                .group_by(D.c.status)
            )
            found = {str(status): int(n) for status, n in rows}
        return {s.value: found.get(s.value, 0) for s in DeliveryStatus}

    def sent_since(self, since: datetime) -> Iterator[datetime]:
        """Send times of every message since ``since`` (all issues): for a quota's window."""
        with self.store.read() as session:
            result = (
                session.connection()
                .execution_options(yield_per=1000)
                .execute(select(D.c.sent_at).where(D.c.sent_at >= since).order_by(D.c.sent_at))
            )
            for (value,) in result:
                yield cast(datetime, as_utc(value))

    def failures(self, limit: int = 20) -> list[tuple[str, str, int | None, str]]:
        """(address, status, code, error) of the latest failed and deferred rows."""
        query = (
            select(S.c.email, D.c.status, D.c.last_code, D.c.last_error)
            .join(S, S.c.id == D.c.subscriber_id)
            .where(
                D.c.issue_id == self.issue_id,
                D.c.status.in_([DeliveryStatus.FAILED, DeliveryStatus.DEFERRED]),
            )
            .order_by(D.c.updated_at.desc(), D.c.id.desc())
            .limit(limit)
        )
        with self.store.read() as session:
            return [(r[0], r[1], r[2], r[3]) for r in session.connection().execute(query)]

    # --- changing -------------------------------------------------------

    def retry_failed(self, now: datetime) -> int:
        """Queue failed and deferred rows again with a fresh count of tries."""
        with self._write() as conn:
            count = conn.execute(
                update(D)
                .where(
                    D.c.issue_id == self.issue_id,
                    D.c.status.in_([DeliveryStatus.FAILED, DeliveryStatus.DEFERRED]),
                )
                .values(
                    status=DeliveryStatus.PENDING.value,
                    attempts=0,
                    next_attempt_at=None,
                    updated_at=now,
                )
            ).rowcount
            if count:
                conn.execute(
                    update(I)
                    .where(I.c.id == self.issue_id)
                    .values(status=IssueStatus.SENDING.value, sent_at=None)
                )
            return int(count)


def backoff_delay(attempts: int, *, base: float, jitter: float) -> timedelta:
    """Exponential backoff with jitter: base·2^(attempts-1), times ``jitter`` (0.5-1.5), capped at 6 h."""
    seconds = min(base * (2 ** max(0, attempts - 1)), 6 * 3600.0) * jitter
    return timedelta(seconds=seconds)
