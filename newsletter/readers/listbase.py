"""`ListBase`: what every subscriber operation stands on.

The store and its write turns (SQLite has one writer: this process's threads take
turns on a lock rather than in SQLite's busy handler), the token maker, reading
the list, and starting a confirmation link. `newsletter.readers.subscribers.Subscribers`
is built on it, with the leaving (`newsletter.readers.leaving`) and the editor's
tools (`newsletter.readers.listtools`).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import func
from sqlmodel import Session, col, select

from newsletter.core.errors import StoreBusyError
from newsletter.core.models import (
    Issue,
    IssueStatus,
    MailKind,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from newsletter.core.settings import Settings
from newsletter.core.store import Store, retry_busy, writer_turns
from newsletter.readers.addresses import normalize_email
from newsletter.readers.listrows import by_key, check_status, not_found, queue_mail
from newsletter.readers.outcomes import Confirmation
from newsletter.readers.spool import UnsubscribeSpool
from newsletter.readers.tokens import Tokens

Clock = Callable[[], datetime]
_T = TypeVar("_T")


class ListBase:
    """The list over a store, with an injectable clock: reading it and taking write turns."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        clock: Clock = utcnow,
        tokens: Tokens | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self._tokens = tokens
        # SQLite has one writer at a time: threads of this process take turns here
        # instead of polling in SQLite's busy handler (which gives up after busy_timeout),
        # and then processes (core.turns)
        self._write_lock = threading.Lock() if store.engine.dialect.name == "sqlite" else None
        self._turns = writer_turns(store.engine)
        self.spool = UnsubscribeSpool.of(settings)

    @property
    def tokens(self) -> Tokens:
        """The token maker; needs SLICE_SECRET_KEY, so it is made on first use (listing does not)."""
        if self._tokens is None:
            self._tokens = Tokens(self.settings.require_secret_key(), clock=self.clock)
        return self._tokens

    @contextmanager
    def _write(self, *, busy_seconds: float | None = None) -> Iterator[Session]:
        wait = self.store.busy_seconds if busy_seconds is None else busy_seconds
        if self._write_lock is not None and not self._write_lock.acquire(timeout=wait):
            raise StoreBusyError.after(wait)
        try:
            turn = self._turns.turn(wait) if self._turns else nullcontext()
            with turn, self.store.write(busy_seconds=wait) as session:
                yield session
        finally:
            if self._write_lock is not None:
                self._write_lock.release()

    def write(self) -> AbstractContextManager[Session]:
        """A write transaction that waits for this process's turn first (the mail queue's,
        the signup limits'), so threads queue here instead of in SQLite's busy handler."""
        return self._write()

    def _retrying(self, fn: Callable[[], _T]) -> _T:
        """``fn`` (one whole transaction) run again while the database is busy."""
        return retry_busy(fn, seconds=self.store.busy_seconds)

    @property
    def resend_interval(self) -> timedelta:
        return timedelta(minutes=self.settings.web.resend_interval_minutes)

    # --- reading -----------------------------------------------------------

    def get(self, email: str) -> Subscriber | None:
        """The subscriber with this address (any case, any IDNA form), or None."""
        key = normalize_email(email).key
        with self.store.read() as session:
            return by_key(session, key)

    def require(self, email: str) -> Subscriber:
        found = self.get(email)
        if found is None:
            raise not_found(email)
        return found

    def by_uid(self, uid: str) -> Subscriber | None:
        with self.store.read() as session:
            return session.exec(select(Subscriber).where(Subscriber.uid == uid)).first()

    def all(self, *, status: str | None = None) -> list[Subscriber]:
        """Subscribers, oldest first, optionally of one status."""
        query = select(Subscriber).order_by(col(Subscriber.created_at), col(Subscriber.id))
        if status is not None:
            query = query.where(Subscriber.status == check_status(status))
        with self.store.read() as session:
            return list(session.exec(query).all())

    def count(self) -> dict[str, int]:
        """How many subscribers of each status (every status listed, zeros included)."""
        counts = {s.value: 0 for s in SubscriberStatus}
        query = select(Subscriber.status, func.count()).group_by(Subscriber.status)
        with self.store.read() as session:
            for status, n in session.exec(query).all():
                counts[status] = int(n)
        return counts

    def latest_issue(self) -> str | None:
        """The id of the most recently sent issue, for the welcome email."""
        query = (
            select(Issue.id)
            .where(Issue.status == IssueStatus.SENT.value)
            .order_by(col(Issue.sent_at).desc(), col(Issue.number).desc())
        )
        with self.store.read() as session:
            return session.exec(query).first()

    # --- confirmation links ------------------------------------------------

    def _link_outstanding(self, sub: Subscriber, now: datetime) -> bool:
        """Whether a confirmation link went out less than the resend interval ago and is unused."""
        return (
            sub.confirm_nonce is not None
            and sub.confirm_sent_at is not None
            and now - sub.confirm_sent_at < self.resend_interval
        )

    def _start_confirmation(self, session: Session, sub: Subscriber, now: datetime) -> Confirmation:
        """A new confirmation link for ``sub``: a fresh nonce, the time it was asked for,
        and its email queued in the same transaction (`newsletter.readers.mailqueue` sends it).
        """
        nonce = secrets.token_urlsafe(12)
        new = sub.id is None
        sub.confirm_nonce = nonce
        sub.confirm_sent_at = now
        sub.updated_at = now
        if new:
            session.add(sub)
        queue_mail(session, MailKind.CONFIRM, sub.uid, now, new=new)
        return Confirmation(sub.email, sub.uid, self.tokens.confirm_token(sub.uid, nonce))
