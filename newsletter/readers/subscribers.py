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

`Subscribers` is one class in four modules: joining and confirming here, the list
read and written in `newsletter.readers.listbase`, leaving in
`newsletter.readers.leaving`, the editor's tools in `newsletter.readers.listtools`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from newsletter.core.errors import TokenError, TokenExpiredError
from newsletter.core.models import MailKind, Subscriber, SubscriberStatus
from newsletter.readers.addresses import EmailAddress, clean_name, normalize_email
from newsletter.readers.leaving import UNSUBSCRIBE_WAIT_SECONDS, Leaving
from newsletter.readers.listbase import Clock
from newsletter.readers.listrows import by_key, by_uid, check_status, queue_mail
from newsletter.readers.listtools import IMPORT_CHUNK, ListTools
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

__all__ = [
    "IMPORT_CHUNK",
    "UNSUBSCRIBE_WAIT_SECONDS",
    "AddAction",
    "AddResult",
    "Clock",
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
    "check_status",
    "clean_name",
    "normalize_email",
]


class Subscribers(Leaving, ListTools):
    """Subscriber operations over a store, with an injectable clock."""

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
            sub = by_key(session, address.key, lock=True)
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
            sub = by_uid(session, claim.uid)
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
            sub = by_uid(session, claim.uid, lock=True)
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
