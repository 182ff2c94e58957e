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

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
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
            status = conn.execute(select(I.c.status).where(I.c.id == self.issue_id)).scalar_one()
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
                created = conn.execute(insert(D).from_select(columns, snapshot)).rowcount
                return StartInfo(created=created, resumed_in_flight=0)
            # A row a stopped run left 'sending' may or may not have reached the relay.
            # It goes again (same Message-ID); its attempt was counted when it was claimed.
            stale = conn.execute(
                update(D)
                .where(D.c.issue_id == self.issue_id, D.c.status == DeliveryStatus.SENDING)
                .values(status=DeliveryStatus.PENDING.value, updated_at=now)
            ).rowcount
            if status == IssueStatus.SENT:
                conn.execute(
                    update(I)
                    .where(I.c.id == self.issue_id)
                    .values(status=IssueStatus.SENDING.value)
                )
            return StartInfo(created=0, resumed_in_flight=stale)

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

    def due(self, *, after_id: int, now: datetime, limit: int | None = None) -> list[Row]:
        """The next rows to send, in id order: pending, and deferred ones whose time has come."""
        query = (
            select(D.c.id, D.c.subscriber_id, D.c.attempts, S.c.uid, S.c.email, S.c.name)
            .join(S, S.c.id == D.c.subscriber_id)
            .where(
                D.c.issue_id == self.issue_id,
                D.c.id > after_id,
                or_(
                    D.c.status == DeliveryStatus.PENDING,
                    and_(D.c.status == DeliveryStatus.DEFERRED, D.c.next_attempt_at <= now),
                ),
            )
            .order_by(D.c.id)
            .limit(limit or self.batch_size)
        )
        with self.store.read() as session:
            return [
                Row(r.id, r.subscriber_id, r.attempts, Reader(r.uid, r.email, r.name or ""))
                for r in session.connection().execute(query)
            ]

    def next_retry_at(self) -> datetime | None:
        """When the earliest deferred row is due, or None if none is deferred."""
        with self.store.read() as session:
            value = (
                session.connection()
                .execute(
                    select(func.min(D.c.next_attempt_at)).where(
                        D.c.issue_id == self.issue_id, D.c.status == DeliveryStatus.DEFERRED
                    )
                )
                .scalar_one()
            )
        return as_utc(value)

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

    def claim(
        self, rows: Sequence[Row], *, now: datetime, message_ids: dict[int, str]
    ) -> tuple[list[Row], list[Row]]:
        """Mark rows 'sending' (committed); returns (claimed, skipped).

        A row whose reader is no longer confirmed (unsubscribed, bounced,
        complained since the snapshot) is marked 'skipped' instead.
        """
        if not rows:
            return [], []
        ids = [r.delivery_id for r in rows]
        with self._write() as conn:
            live = {
                int(delivery_id): str(status)
                for delivery_id, status in conn.execute(
                    select(D.c.id, S.c.status)
                    .join(S, S.c.id == D.c.subscriber_id)
                    .where(
                        D.c.id.in_(ids),
                        D.c.status.in_([DeliveryStatus.PENDING, DeliveryStatus.DEFERRED]),
                    )
                )
            }
            claimed = [r for r in rows if live.get(r.delivery_id) == SubscriberStatus.CONFIRMED]
            skipped = [
                r for r in rows if live.get(r.delivery_id) not in (None, SubscriberStatus.CONFIRMED)
            ]
            if claimed:
                conn.execute(
                    update(D)
                    .where(D.c.id == bindparam("b_id"))
                    .values(
                        status=DeliveryStatus.SENDING.value,
                        attempts=D.c.attempts + 1,
                        message_id=bindparam("b_mid"),
                        updated_at=now,
                    ),
                    [{"b_id": r.delivery_id, "b_mid": message_ids[r.delivery_id]} for r in claimed],
                )
            if skipped:
                conn.execute(
                    update(D)
                    .where(D.c.id == bindparam("b_id"))
                    .values(
                        status=DeliveryStatus.SKIPPED.value,
                        last_error=bindparam("b_error"),
                        updated_at=now,
                    ),
                    [
                        {
                            "b_id": r.delivery_id,
                            "b_error": f"reader {live[r.delivery_id]} before their turn",
                        }
                        for r in skipped
                    ],
                )
        return claimed, skipped

    def record(self, outcomes: Sequence[Outcome], *, now: datetime) -> None:
        """Commit what happened to claimed rows (one transaction for the lot)."""
        if not outcomes:
            return
        params: list[dict[str, Any]] = []
        for o in outcomes:
            untried = o.status == DeliveryStatus.PENDING
            params.append(
                {
                    "b_id": o.delivery_id,
                    "b_status": o.status.value,
                    "b_code": o.code,
                    "b_error": o.error[:1000],
                    "b_next": o.next_attempt_at,
                    "b_sent": now if o.status == DeliveryStatus.SENT else None,
                    "b_back": 1 if untried else 0,
                }
            )
        suppress = [
            {"b_sid": o.subscriber_id, "b_reason": f"bounced: {o.code} {o.error}"[:500]}
            for o in outcomes
            if o.suppress
        ]
        with self._write() as conn:
            conn.execute(
                update(D)
                .where(D.c.id == bindparam("b_id"), D.c.status == DeliveryStatus.SENDING)
                .values(
                    status=bindparam("b_status"),
                    last_code=bindparam("b_code"),
                    last_error=bindparam("b_error"),
                    next_attempt_at=bindparam("b_next"),
                    sent_at=bindparam("b_sent"),
                    attempts=D.c.attempts - bindparam("b_back", type_=Integer),
                    updated_at=now,
                ),
                params,
            )
            if suppress:
                conn.execute(
                    update(S)
                    .where(
                        S.c.id == bindparam("b_sid"),
                        # not IN (...): an expanding list cannot be part of an executemany
                        or_(
                            S.c.status == SubscriberStatus.CONFIRMED.value,
                            S.c.status == SubscriberStatus.PENDING.value,
                        ),
                    )
                    .values(
                        status=SubscriberStatus.BOUNCED.value,
                        status_reason=bindparam("b_reason"),
                        updated_at=now,
                    ),
                    suppress,
                )

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
