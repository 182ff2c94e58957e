"""Sending the queued confirmation and welcome emails, with retries.

`Subscribers` queues an email (a `QueuedMail` row) in the same transaction as the
change that needs it; `MailQueue.drain` sends what is due. A sender claims rows
with a lease (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: the write lock), sends
them after the claim has committed, and then deletes each row the relay took. A
refused or unreachable relay puts the row back with a growing delay
(`RetryPolicy`); a row is dropped only when it is no longer wanted (the link was
replaced or used, the person left) or after its last attempt, which frees the
address to ask again at once. A process killed in between leaves the rows to the
next sender once the lease runs out: nothing is lost, and at worst the chunk
of `SEND_CHUNK` emails it was sending goes twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from newsletter.core.models import (
    MailKind,
    QueuedMail,
    Subscriber,
    SubscriberStatus,
    table,
)
from newsletter.readers.mail import SubscriberMail
from newsletter.readers.subscribers import Confirmation, Welcome

log = logging.getLogger("newsletter.mailqueue")
SEND_CHUNK = 10  # messages sent on one relay connection before their outcomes are recorded


@dataclass(frozen=True)
class RetryPolicy:
    """When to try a failed email again: ``first``, doubling up to ``longest``."""

    first: timedelta = timedelta(seconds=30)
    longest: timedelta = timedelta(hours=1)
    attempts: int = 12  # about 7 hours in all with the defaults
    lease: timedelta = timedelta(minutes=5)

    def delay(self, attempts: int) -> timedelta:
        factor: int = 2 ** max(attempts - 1, 0)
        return min(self.first * factor, self.longest)


@dataclass(frozen=True)
class _Claimed:
    id: int
    kind: str
    lease: datetime
    attempts: int
    email: str
    name: str
    uid: str
    nonce: str | None
    status: str


@dataclass
class DrainReport:
    """What one drain did."""

    sent: list[str] = field(default_factory=list)  # addresses
    failed: list[tuple[str, str]] = field(default_factory=list)  # address, why (will retry)
    given_up: list[tuple[str, str]] = field(default_factory=list)  # address, last reason
    dropped: int = 0  # no longer wanted


class MailQueue:
    """Sends the queued emails through a `SubscriberMail` (its relay, templates and clock)."""

    def __init__(self, mail: SubscriberMail, *, retry: RetryPolicy | None = None) -> None:
        self.mail = mail
        self.subscribers = mail.subscribers
        self.store = mail.subscribers.store
        self.retry = retry or RetryPolicy()

    def _now(self) -> datetime:
        return self.subscribers.clock()

    # --- the database side (blocking; run in a thread from async code) --------------

    def due(self) -> bool:
        """Whether any email is due now (a read, so idle senders never take the write lock)."""
        now = self._now()
        query = (
            select(QueuedMail.id)
            .where(col(QueuedMail.next_attempt_at) <= now)
            .where((col(QueuedMail.lease_until).is_(None)) | (col(QueuedMail.lease_until) < now))
            .limit(1)
        )
        with self.store.read() as session:
            return session.exec(query).first() is not None

    def pending(self, uids: Iterable[str] | None = None) -> int:
        """How many emails are queued (for these subscribers), due or not."""
        query = select(QueuedMail.id)
        if uids is not None:
            query = query.where(col(QueuedMail.subscriber_uid).in_(list(uids)))
        with self.store.read() as session:
            return len(session.exec(query).all())

    def claim(
        self, *, batch: int = 50, uids: Sequence[str] | None = None, retry_now: bool = False
    ) -> list[_Claimed]:
        """Take up to ``batch`` due emails for this sender, for the lease's length.

        ``retry_now``: waiting ones too (the editor asked again, by hand).
        """
        now = self._now()
        lease = now + self.retry.lease
        due = now + timedelta(days=36500) if retry_now else now
        query = (
            select(QueuedMail, Subscriber)
            .join(Subscriber, col(Subscriber.uid) == col(QueuedMail.subscriber_uid))
            .where(col(QueuedMail.next_attempt_at) <= due)
            .where((col(QueuedMail.lease_until).is_(None)) | (col(QueuedMail.lease_until) < now))
            .order_by(col(QueuedMail.next_attempt_at), col(QueuedMail.id))
            .limit(batch)
        )
        if uids is not None:
            query = query.where(col(QueuedMail.subscriber_uid).in_(list(uids)))
        if self.store.engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True, of=table(QueuedMail))
        claimed: list[_Claimed] = []
        with self.store.write() as session:  # not the requests' turn: background work waits alone
            for row, sub in session.exec(query).all():
                row.lease_until = lease
                claimed.append(
                    _Claimed(
                        id=row.id or 0,
                        kind=row.kind,
                        lease=lease,
                        attempts=row.attempts,
                        email=sub.email,
                        name=sub.name,
                        uid=sub.uid,
                        nonce=sub.confirm_nonce,
                        status=sub.status,
                    )
                )
        return claimed

    def _settle(self, session: Session, item: _Claimed, problem: str | None) -> str:
        """Record one outcome: "sent", "retry" or "given-up"."""
        mine = (col(QueuedMail.id) == item.id) & (col(QueuedMail.lease_until) == item.lease)
        if problem is None:
            session.execute(delete(QueuedMail).where(mine))
            return "sent"
        attempts = item.attempts + 1
        if attempts >= self.retry.attempts:
            gone = session.execute(delete(QueuedMail).where(mine)).rowcount  # type: ignore[attr-defined]
            if gone and item.kind == MailKind.CONFIRM.value:
                # the address may ask again at once, instead of after the resend interval
                session.execute(
                    update(Subscriber)
                    .where(col(Subscriber.uid) == item.uid)
                    .where(col(Subscriber.confirm_nonce) == item.nonce)
                    .values(confirm_sent_at=None)
                )
            return "given-up"
        session.execute(
            update(QueuedMail)
            .where(mine)
            .values(
                attempts=attempts,
                next_attempt_at=self._now() + self.retry.delay(attempts),
                lease_until=None,
                last_error=problem[:500],
            )
        )
        return "retry"

    def _drop(self, session: Session, item: _Claimed) -> None:
        mine = (col(QueuedMail.id) == item.id) & (col(QueuedMail.lease_until) == item.lease)
        session.execute(delete(QueuedMail).where(mine))

    # --- sending -------------------------------------------------------------------

    def _message(self, item: _Claimed) -> EmailMessage | None:
        """The email for a claimed row, or None when it is no longer wanted."""
        if item.kind == MailKind.CONFIRM.value:
            if item.nonce is None or item.status == SubscriberStatus.CONFIRMED.value:
                return None
            token = self.subscribers.tokens.confirm_token(item.uid, item.nonce)
            return self.mail.confirmation(Confirmation(item.email, item.uid, token))
        if item.status != SubscriberStatus.CONFIRMED.value:
            return None
        latest = self.subscribers.latest_issue()
        return self.mail.welcome(Welcome(item.email, item.name, item.uid, latest))

    async def drain(
        self, *, uids: Sequence[str] | None = None, batch: int = 50, retry_now: bool = False
    ) -> DrainReport:
        """Send every email due now (only these subscribers' when ``uids`` is given).

        ``retry_now`` sends the ones waiting for a retry too (with ``uids`` only).
        """
        report = DrainReport()
        retry_now = retry_now and uids is not None
        while True:
            claimed = await asyncio.to_thread(
                self.claim, batch=batch, uids=uids, retry_now=retry_now
            )
            if not claimed:
                return report
            # built on the event loop one at a time, letting requests in between: a thread
            # would hold the GIL for its CPU-bound work and slow every request far more
            wanted: list[tuple[_Claimed, EmailMessage]] = []
            unwanted: list[_Claimed] = []
            for item in claimed:
                message = self._message(item)
                if message is None:
                    unwanted.append(item)
                else:
                    wanted.append((item, message))
                await asyncio.sleep(0)
            if unwanted:
                await asyncio.to_thread(self._record, [], [], unwanted)
                report.dropped += len(unwanted)
            for start in range(0, len(wanted), SEND_CHUNK):
                # recorded chunk by chunk: a sender killed mid-batch sends at most a chunk twice
                chunk = wanted[start : start + SEND_CHUNK]
                problems = await self.mail.mailer.send([m for _, m in chunk])
                outcomes = await asyncio.to_thread(self._record, chunk, problems, [])
                self._report(report, chunk, problems, outcomes)
            if len(claimed) < batch:
                return report

    def _report(
        self,
        report: DrainReport,
        chunk: list[tuple[_Claimed, EmailMessage]],
        problems: list[str | None],
        outcomes: list[str],
    ) -> None:
        for (item, _), problem, outcome in zip(chunk, problems, outcomes, strict=True):
            if outcome == "sent":
                report.sent.append(item.email)
            elif outcome == "retry":
                report.failed.append((item.email, problem or ""))
                log.warning("%s email to %s not sent yet: %s", item.kind, item.email, problem)
            else:
                report.given_up.append((item.email, problem or ""))
                log.warning("%s email to %s given up: %s", item.kind, item.email, problem)

    def _record(
        self,
        wanted: list[tuple[_Claimed, EmailMessage]],
        problems: list[str | None],
        unwanted: list[_Claimed],
    ) -> list[str]:
        with self.store.write() as session:  # not the requests' turn: background work waits alone
            for item in unwanted:
                self._drop(session, item)
            return [
                self._settle(session, item, problem)
                for (item, _), problem in zip(wanted, problems, strict=True)
            ]
