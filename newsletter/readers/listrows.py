"""The list's rows: finding a subscriber, queueing their email, and the one-line answers.

Small helpers the subscriber operations (`newsletter.readers.subscribers`,
`newsletter.readers.leaving`, `newsletter.readers.listtools`) share; each works
inside a session its caller holds.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session, select

from newsletter.core.errors import SubscriberError, SubscriberNotFoundError
from newsletter.core.models import MailKind, QueuedMail, Subscriber, SubscriberStatus


def check_status(status: str) -> str:
    """A status name, checked. Raises SubscriberError naming the valid ones."""
    valid = [s.value for s in SubscriberStatus]
    if status not in valid:
        raise SubscriberError(f"unknown status {status!r}; use one of: {', '.join(valid)}.")
    return status


def suppressed_message(sub: Subscriber) -> str:
    when = sub.unsubscribed_at or sub.updated_at
    return (
        f"{sub.email} is {sub.status} (since {when:%Y-%m-%d}) and stays off the list: only the "
        "person can come back, by subscribing and confirming; "
        "run `slice subscribers add` without --confirmed to send them a confirmation email."
    )


def by_key(session: Session, key: str, *, lock: bool = False) -> Subscriber | None:
    query = select(Subscriber).where(Subscriber.email_key == key)
    if lock:
        query = query.with_for_update()
    return session.exec(query).first()


def by_uid(session: Session, uid: str, *, lock: bool = False) -> Subscriber | None:
    query = select(Subscriber).where(Subscriber.uid == uid)
    if lock:
        query = query.with_for_update()
    return session.exec(query).first()


def as_utc(value: datetime | None) -> datetime:
    """An aware UTC datetime (SQLite gives naive ones back); the distant past for None."""
    if value is None:
        return datetime.min.replace(tzinfo=UTC)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def not_found(email: str) -> SubscriberNotFoundError:
    return SubscriberNotFoundError(
        f"no subscriber has the address {email.strip()!r}; "
        "`slice subscribers list` shows who is on the list."
    )


def queue_mail(
    session: Session, kind: MailKind, uid: str, now: datetime, *, new: bool = False
) -> None:
    """Queue an email for a subscriber; a row already queued is due again now (and unclaimed).

    ``new``: the subscriber is being inserted in this transaction, so nothing is queued yet.
    """
    found = None
    if not new:
        query = select(QueuedMail).where(
            QueuedMail.kind == kind.value, QueuedMail.subscriber_uid == uid
        )
        found = session.exec(query).first()
    if found is None:
        if new:
            session.flush()  # the subscriber's row first: the queue row refers to it
        session.add(
            QueuedMail(kind=kind.value, subscriber_uid=uid, queued_at=now, next_attempt_at=now)
        )
        return
    found.queued_at = now
    found.attempts = 0
    found.next_attempt_at = now
    found.lease_until = None
    found.last_error = ""
