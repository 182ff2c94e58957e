"""Subscribers: double opt-in, confirmation, unsubscribe, and the editor's list tools.

The rules this module keeps:

- An address is validated and stored normalized (email-validator, no DNS
  lookups): the domain in its ASCII (IDNA) form, so ``bob@bücher.de`` and
  ``bob@xn--bcher-kva.de`` are one person; ``email_key`` is the lower-cased
  address and is unique.
- Nobody is mailed an issue without confirming: a new address is ``pending``
  until its confirmation link is followed (or the editor adds it with consent
  already held, which is recorded as the consent source).
- A pending address gets at most one confirmation email per
  ``web.resend_interval_minutes``, however often it is submitted.
- A confirmation link is signed, expires after ``web.confirm_ttl_hours`` and works
  once: it carries the subscriber's current ``confirm_nonce``, which confirming
  clears and every new link replaces.
- ``unsubscribed``, ``bounced`` and ``complained`` addresses are suppressed: only
  the person subscribing *and* confirming again brings them back.
- An unsubscribe is never lost: when the database stays busy (or is down) it is
  written to the unsubscribe spool (`newsletter.readers.spool`) and applied
  later with the time it was asked for.

Database work happens here; sending happens in `newsletter.readers.mail`. A
change that needs an email returns what to send (the results are in
`newsletter.readers.outcomes`, and importable from here too), so callers send it
after the transaction has committed.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from sqlalchemy import bindparam, delete, func, or_, update
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlmodel import Session, col, select

from newsletter.core.errors import (
    StoreBusyError,
    StoreError,
    SubscriberError,
    SubscriberNotFoundError,
    TokenError,
    TokenExpiredError,
)
from newsletter.core.models import (
    SUPPRESSED,
    Issue,
    IssueStatus,
    MailKind,
    QueuedMail,
    Subscriber,
    SubscriberStatus,
    table,
    utcnow,
)
from newsletter.core.settings import Settings
from newsletter.core.store import Store, busy_message, retry_busy
from newsletter.readers.addresses import EmailAddress, clean_name, normalize_email
from newsletter.readers.outcomes import (
    AddAction,
    AddResult,
    Confirmation,
    ConfirmResult,
    ConfirmStatus,
    ConsentSource,
    ImportOutcome,
    ImportRow,
    PruneResult,
    SubscribeAction,
    SubscribeResult,
    UnsubscribeResult,
    Welcome,
)
from newsletter.readers.spool import SpooledUnsubscribe, UnsubscribeSpool
from newsletter.readers.tokens import Tokens

Clock = Callable[[], datetime]
_T = TypeVar("_T")
log = logging.getLogger(__name__)

IMPORT_CHUNK = 1000  # rows of `slice subscribers import` per transaction
# How long a one-click unsubscribe waits for a busy database before it is spooled
UNSUBSCRIBE_WAIT_SECONDS = 5.0

__all__ = [
    "AddAction",
    "AddResult",
    "ConfirmResult",
    "ConfirmStatus",
    "Confirmation",
    "ConsentSource",
    "EmailAddress",
    "ImportOutcome",
    "ImportRow",
    "PruneResult",
    "SubscribeAction",
    "SubscribeResult",
    "Subscribers",
    "UnsubscribeResult",
    "Welcome",
    "clean_name",
    "normalize_email",
]


# --- the service --------------------------------------------------------------


class Subscribers:
    """Subscriber operations over a store, with an injectable clock."""

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
        # instead of polling in SQLite's busy handler (which gives up after busy_timeout).
        self._write_lock = threading.Lock() if store.engine.dialect.name == "sqlite" else None
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
            raise StoreBusyError(busy_message(wait))
        try:
            with self.store.write(busy_seconds=wait) as session:
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
            return _by_key(session, key)

    def require(self, email: str) -> Subscriber:
        found = self.get(email)
        if found is None:
            raise _not_found(email)
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

    # --- double opt-in -----------------------------------------------------

    def subscribe(
        self,
        email: str,
        *,
        name: str = "",
        source: ConsentSource = ConsentSource.WEB,
        ip: str | None = None,
        admit: Callable[[Session], str | None] | None = None,
    ) -> SubscribeResult:
        """Create or refresh a pending subscriber; say whether a confirmation is due.

        ``admit`` runs first in the same write transaction (the web's signup limits:
        they count and check in one step with the change); a non-empty answer refuses.
        Raises InvalidAddressError or InvalidNameError and then changes nothing.
        """
        address = normalize_email(email)
        clean = clean_name(name)
        # Two requests for a new address may race to insert it: the loser retries
        # once and then finds the winner's row.
        for attempt in range(2):
            try:
                return self._retrying(lambda: self._subscribe(address, clean, source, admit))
            except IntegrityError:
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _subscribe(
        self,
        address: EmailAddress,
        name: str,
        source: ConsentSource,
        admit: Callable[[Session], str | None] | None = None,
    ) -> SubscribeResult:
        now = self.clock()
        with self._write() as session:
            refused = admit(session) if admit is not None else None
            if refused:
                return SubscribeResult(SubscribeAction.REFUSED, address.email, refused=refused)
            sub = _by_key(session, address.key, lock=True)
            if sub is None:
                sub = Subscriber(
                    email=address.email,
                    email_key=address.key,
                    name=name,
                    consent_source=source.value,
                    created_at=now,
                    updated_at=now,
                )
                session.add(sub)
                action = SubscribeAction.CREATED
            elif sub.status == SubscriberStatus.CONFIRMED:
                return SubscribeResult(SubscribeAction.ALREADY_CONFIRMED, sub.email)
            else:
                if self._link_outstanding(sub, now):
                    sent = sub.confirm_sent_at or now
                    return SubscribeResult(
                        SubscribeAction.THROTTLED,
                        sub.email,
                        next_send_at=sent + self.resend_interval,
                    )
                # The name stays the one first given: anyone can submit an address,
                # and a later form must not rename a stranger's pending signup.
                if sub.status == SubscriberStatus.PENDING:
                    action = SubscribeAction.RESENT
                else:
                    action = SubscribeAction.RECONFIRM
                sub.consent_source = source.value
            confirmation = self._start_confirmation(session, sub, now)
            session.flush()
            return SubscribeResult(action, sub.email, confirmation)

    def check_confirm(self, token: str) -> tuple[ConfirmStatus, str]:
        """What following this link would do, and the address, changing nothing.

        ``CONFIRMED`` here means the link is current and would confirm.
        """
        try:
            claim = self.tokens.read_confirm(token, max_age=self.settings.confirm_ttl)
        except TokenExpiredError:
            return ConfirmStatus.EXPIRED, ""
        except TokenError:
            return ConfirmStatus.INVALID, ""
        with self.store.read() as session:
            sub = _by_uid(session, claim.uid)
        if sub is None:
            return ConfirmStatus.UNKNOWN, ""
        if sub.confirm_nonce is None or not secrets.compare_digest(sub.confirm_nonce, claim.nonce):
            if sub.status == SubscriberStatus.CONFIRMED:
                return ConfirmStatus.ALREADY_CONFIRMED, sub.email
            return ConfirmStatus.USED, ""
        return ConfirmStatus.CONFIRMED, sub.email

    def confirm(self, token: str, *, ip: str | None = None) -> ConfirmResult:
        """Follow a confirmation link. Anything but a current, genuine link changes nothing."""
        try:
            claim = self.tokens.read_confirm(token, max_age=self.settings.confirm_ttl)
        except TokenExpiredError:
            return ConfirmResult(ConfirmStatus.EXPIRED)
        except TokenError:
            return ConfirmResult(ConfirmStatus.INVALID)
        now = self.clock()
        with self._write() as session:
            sub = _by_uid(session, claim.uid, lock=True)
            if sub is None:
                return ConfirmResult(ConfirmStatus.UNKNOWN)
            if sub.confirm_nonce is None or not secrets.compare_digest(
                sub.confirm_nonce, claim.nonce
            ):
                if sub.status == SubscriberStatus.CONFIRMED:
                    return ConfirmResult(ConfirmStatus.ALREADY_CONFIRMED)
                return ConfirmResult(ConfirmStatus.USED)
            sub.status = SubscriberStatus.CONFIRMED.value
            sub.confirmed_at = now
            sub.confirm_ip = ip
            sub.confirm_nonce = None
            sub.unsubscribed_at = None
            sub.status_reason = ""
            sub.updated_at = now
            email, name, uid = sub.email, sub.name, sub.uid
            queue_mail(session, MailKind.WELCOME, uid, now)
        # read after the commit: the latest issue is not worth holding the write lock for
        return ConfirmResult(
            ConfirmStatus.CONFIRMED, Welcome(email, name, uid, self.latest_issue())
        )

    # --- leaving -----------------------------------------------------------

    def unsubscribe_url(self, uid: str) -> str:
        return f"{self.settings.web.base_url}/unsubscribe/{self.tokens.unsubscribe_token(uid)}"

    def read_unsubscribe(self, token: str) -> Subscriber | None:
        """The subscriber an unsubscribe token names (None if gone). Raises TokenError."""
        return self.by_uid(self.tokens.read_unsubscribe(token))

    def unsubscribe(self, token: str, *, reason: str = "one-click") -> UnsubscribeResult:
        """Unsubscribe the token's subscriber. Idempotent. Raises TokenError for a bad token.

        A database that stays busy for `UNSUBSCRIBE_WAIT_SECONDS`, or does not
        answer, gets the request spooled instead (``spooled`` in the result).
        Raises StoreError only when neither the database nor the spool can take it.
        """
        uid = self.tokens.read_unsubscribe(token)
        wait = min(self.store.busy_seconds, UNSUBSCRIBE_WAIT_SECONDS)
        try:
            with self._write(busy_seconds=wait) as session:
                return _unsubscribe_uid(session, uid, reason, self.clock())
        except (StoreError, OperationalError) as exc:
            return self._spool_unsubscribe(uid, reason, exc)

    def _spool_unsubscribe(self, uid: str, reason: str, cause: Exception) -> UnsubscribeResult:
        try:
            self.spool.add(uid, reason=reason, at=self.clock())
        except OSError as exc:
            raise StoreError(
                f"an unsubscribe could not be recorded: the database did not take it ({cause}) "
                f"and {self.spool.path} cannot be written ({exc.strerror or exc})."
            ) from cause
        log.warning("database busy or down (%s): unsubscribe spooled to %s", cause, self.spool.path)
        email: str | None = None
        try:  # reads go on while another program writes (WAL); if not, the page says less
            found = self.by_uid(uid)
            email = found.email if found is not None else None
        except SQLAlchemyError:
            pass
        return UnsubscribeResult(
            changed=True, email=email, status=SubscriberStatus.UNSUBSCRIBED.value, spooled=True
        )

    def apply_spooled(self) -> int:
        """Apply the spooled unsubscribes, each with the time it was asked for; how many.

        Leaves the spool for the next call when the database is still busy.
        """
        applied = 0
        for path in self.spool.take():
            entries = self.spool.read(path)

            def apply(entries: list[SpooledUnsubscribe] = entries) -> None:
                with self._write() as session:
                    for entry in entries:
                        sub = _by_uid(session, entry.uid, lock=True)
                        if sub is not None and _utc(sub.confirmed_at) > _utc(entry.at):
                            continue  # they came back (subscribed and confirmed) after asking
                        self._unsubscribe(session, sub, entry.reason, now=entry.at)

            try:
                self._retrying(apply)
            except (StoreError, OperationalError) as exc:
                log.warning("spooled unsubscribes not applied yet (%s); trying again later", exc)
                break
            self.spool.done(path)
            applied += len(entries)
        return applied

    def remove(self, email: str, *, reason: str = "removed by the editor") -> UnsubscribeResult:
        """Unsubscribe an address (the editor's `remove`). Raises SubscriberNotFoundError."""
        key = normalize_email(email).key
        with self._write() as session:
            sub = _by_key(session, key, lock=True)
            if sub is None:
                raise _not_found(email)
            return self._unsubscribe(session, sub, reason)

    def _unsubscribe(
        self, session: Session, sub: Subscriber | None, reason: str, *, now: datetime | None = None
    ) -> UnsubscribeResult:
        if sub is None:
            return UnsubscribeResult(changed=False, email=None)
        if sub.status in SUPPRESSED:
            # Already suppressed; a pending re-confirmation link dies with this request.
            sub.confirm_nonce = None
            return UnsubscribeResult(changed=False, email=sub.email, status=sub.status)
        now = now or self.clock()
        sub.status = SubscriberStatus.UNSUBSCRIBED.value
        sub.unsubscribed_at = now
        sub.confirm_nonce = None
        sub.status_reason = reason
        sub.updated_at = now
        return UnsubscribeResult(changed=True, email=sub.email, status=sub.status)

    def forget(self, email: str) -> str:
        """Delete everything stored about an address (and its delivery records)."""
        key = normalize_email(email).key
        with self._write() as session:
            sub = _by_key(session, key, lock=True)
            if sub is None:
                raise _not_found(email)
            session.execute(delete(Subscriber).where(col(Subscriber.id) == sub.id))
            return sub.email

    # --- the editor's tools ---------------------------------------------------

    def add(self, email: str, *, name: str = "", source: ConsentSource) -> AddResult:
        """Add an address whose consent the editor already holds: confirmed at once.

        A suppressed address is refused: only the person can bring it back.
        """
        address = normalize_email(email)
        clean = clean_name(name)
        now = self.clock()
        with self._write() as session:
            sub = _by_key(session, address.key, lock=True)
            if sub is None:
                session.add(
                    Subscriber(
                        email=address.email,
                        email_key=address.key,
                        name=clean,
                        status=SubscriberStatus.CONFIRMED.value,
                        consent_source=source.value,
                        created_at=now,
                        updated_at=now,
                        confirmed_at=now,
                    )
                )
                return AddResult(AddAction.ADDED, address.email)
            if sub.status in SUPPRESSED:
                raise SubscriberError(suppressed_message(sub))
            if clean and clean != sub.name:
                sub.name = clean
                sub.updated_at = now
            if sub.status == SubscriberStatus.CONFIRMED:
                return AddResult(AddAction.UNCHANGED, sub.email)
            sub.status = SubscriberStatus.CONFIRMED.value
            sub.consent_source = source.value
            sub.confirmed_at = now
            sub.confirm_nonce = None
            sub.updated_at = now
            return AddResult(AddAction.CONFIRMED, sub.email)

    def import_rows(self, rows: list[ImportRow], *, confirmed: bool) -> ImportOutcome:
        """Add or merge validated rows in one transaction.

        Without ``confirmed`` new and pending addresses get a confirmation (returned,
        to be sent after the commit); suppressed addresses are never brought back.
        """
        now = self.clock()
        source = ConsentSource.IMPORT_HELD if confirmed else ConsentSource.IMPORT
        outcome = ImportOutcome()
        with self._write() as session:
            existing: dict[str, Subscriber] = {}
            keys = [row.address.key for row in rows]
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                query = select(Subscriber).where(col(Subscriber.email_key).in_(chunk))
                existing.update((sub.email_key, sub) for sub in session.exec(query).all())
            for row in rows:
                sub = existing.get(row.address.key)
                if row.merge_into is not None:  # a duplicate row that brings a missing name
                    if sub is not None and sub.status not in SUPPRESSED and not sub.name:
                        sub.name = row.name
                        sub.updated_at = now
                    continue
                if sub is None:
                    sub = Subscriber(
                        email=row.address.email,
                        email_key=row.address.key,
                        name=row.name,
                        consent_source=source.value,
                        created_at=now,
                        updated_at=now,
                    )
                    if confirmed:
                        sub.status = SubscriberStatus.CONFIRMED.value
                        sub.confirmed_at = now
                    else:
                        outcome.confirmations.append(self._start_confirmation(session, sub, now))
                    session.add(sub)
                    existing[row.address.key] = sub
                    outcome.added.append(sub.email)
                    continue
                if sub.status in SUPPRESSED:
                    outcome.suppressed.append((row.line, sub.email, sub.status))
                    continue
                named = bool(row.name) and not sub.name
                if named:
                    sub.name = row.name
                    sub.updated_at = now
                if sub.status == SubscriberStatus.CONFIRMED:
                    (outcome.updated if named else outcome.unchanged).append(sub.email)
                elif confirmed:
                    sub.status = SubscriberStatus.CONFIRMED.value
                    sub.consent_source = source.value
                    sub.confirmed_at = now
                    sub.confirm_nonce = None
                    sub.updated_at = now
                    outcome.confirmed.append(sub.email)
                elif self._link_outstanding(sub, now):
                    outcome.throttled.append(sub.email)
                else:
                    sub.consent_source = source.value
                    outcome.confirmations.append(self._start_confirmation(session, sub, now))
                    (outcome.updated if named else outcome.unchanged).append(sub.email)
        return outcome

    def import_stream(
        self, rows: Iterable[ImportRow], *, confirmed: bool, chunk: int = IMPORT_CHUNK
    ) -> Iterator[ImportOutcome]:
        """`import_rows` a chunk at a time, each in its own short transaction.

        Yields each chunk's outcome as it commits (its confirmations are then due),
        so an import of any size needs the memory of one chunk.
        """
        batch: list[ImportRow] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= chunk:
                yield self._import_chunk(batch, confirmed)
                batch = []
        if batch:
            yield self._import_chunk(batch, confirmed)

    def _import_chunk(self, batch: list[ImportRow], confirmed: bool) -> ImportOutcome:
        return self._retrying(lambda: self.import_rows(batch, confirmed=confirmed))

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

    def prune(self, *, dry_run: bool = False) -> PruneResult:
        """Delete pending subscribers whose last confirmation link has expired."""
        cutoff = self.clock() - self.settings.confirm_ttl
        stale = (col(Subscriber.status) == SubscriberStatus.PENDING.value) & or_(
            col(Subscriber.confirm_sent_at) < cutoff,
            col(Subscriber.confirm_sent_at).is_(None) & (col(Subscriber.created_at) < cutoff),
        )
        with self._write() as session:
            emails = list(session.exec(select(Subscriber.email).where(stale)).all())
            if emails and not dry_run:
                session.execute(delete(Subscriber).where(stale))
        return PruneResult(removed=sorted(emails), cutoff=cutoff)


# --- helpers -----------------------------------------------------------------


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


def _by_key(session: Session, key: str, *, lock: bool = False) -> Subscriber | None:
    query = select(Subscriber).where(Subscriber.email_key == key)
    if lock:
        query = query.with_for_update()
    return session.exec(query).first()


def _by_uid(session: Session, uid: str, *, lock: bool = False) -> Subscriber | None:
    query = select(Subscriber).where(Subscriber.uid == uid)
    if lock:
        query = query.with_for_update()
    return session.exec(query).first()


_SUBSCRIBERS = table(Subscriber)
# built once: a one-click POST only binds its values
_UNSUBSCRIBE = (
    update(_SUBSCRIBERS)
    .where(
        _SUBSCRIBERS.c.uid == bindparam("that_uid"),
        _SUBSCRIBERS.c.status.not_in(sorted(s.value for s in SUPPRESSED)),
    )
    .values(
        status=SubscriberStatus.UNSUBSCRIBED.value,
        unsubscribed_at=bindparam("at"),
        confirm_nonce=None,
        status_reason=bindparam("why"),
        updated_at=bindparam("at"),
    )
    .returning(_SUBSCRIBERS.c.email)
)
# already suppressed: a pending re-confirmation link dies with the request all the same
_FORGET_NONCE = (
    update(_SUBSCRIBERS)
    .where(_SUBSCRIBERS.c.uid == bindparam("that_uid"))
    .values(confirm_nonce=None)
    .returning(_SUBSCRIBERS.c.email, _SUBSCRIBERS.c.status)
)


def _unsubscribe_uid(session: Session, uid: str, reason: str, now: datetime) -> UnsubscribeResult:
    """`Subscribers._unsubscribe` by uid, written as one statement in the usual case.

    A one-click POST holds the write lock only for this one UPDATE; a second
    statement runs only for an address already suppressed (or gone).
    """
    conn = session.connection()
    changed = conn.execute(_UNSUBSCRIBE, {"that_uid": uid, "at": now, "why": reason}).first()
    if changed is not None:
        return UnsubscribeResult(
            changed=True, email=changed[0], status=SubscriberStatus.UNSUBSCRIBED.value
        )
    found = conn.execute(_FORGET_NONCE, {"that_uid": uid}).first()
    if found is None:
        return UnsubscribeResult(changed=False, email=None)
    return UnsubscribeResult(changed=False, email=found[0], status=found[1])


def _utc(value: datetime | None) -> datetime:
    """An aware UTC datetime (SQLite gives naive ones back); the distant past for None."""
    if value is None:
        return datetime.min.replace(tzinfo=UTC)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _not_found(email: str) -> SubscriberNotFoundError:
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
