"""`ListTools`: the editor's list tools: add with consent held, CSV rows imported, prune.

A suppressed address is never brought back by the editor: only the person can,
by subscribing and confirming. Part of `newsletter.readers.subscribers.Subscribers`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sqlalchemy import delete, or_
from sqlmodel import col, select

from newsletter.core.errors import SubscriberError
from newsletter.core.models import SUPPRESSED, Subscriber, SubscriberStatus
from newsletter.readers.addresses import clean_name, normalize_email
from newsletter.readers.listbase import ListBase
from newsletter.readers.listrows import by_key, suppressed_message
from newsletter.readers.outcomes import (
    AddAction,
    AddResult,
    ConsentSource,
    ImportOutcome,
    ImportRow,
    PruneResult,
)

IMPORT_CHUNK = 1000  # rows of `slice subscribers import` per transaction


class ListTools(ListBase):
    """What the editor does to the list from the command line."""

    def add(self, email: str, *, name: str = "", source: ConsentSource) -> AddResult:
        """Add an address whose consent the editor already holds: confirmed at once.

        A suppressed address is refused: only the person can bring it back.
        """
        address = normalize_email(email)
        clean = clean_name(name)
        now = self.clock()
        with self._write() as session:
            sub = by_key(session, address.key, lock=True)
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
        outcome = self._retrying(lambda: self.import_rows(batch, confirmed=confirmed))
        self.store.give_way()  # between chunks, the signups and unsubscribes waiting go first
        return outcome

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
