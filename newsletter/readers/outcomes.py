"""What the list's operations take and return: consent sources, actions and results.

`newsletter.readers.subscribers.Subscribers` returns these; the web pages, the CLI and
the emails read them. They hold no database objects, so they outlive the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from newsletter.readers.addresses import EmailAddress


class ConsentSource(StrEnum):
    """How a subscriber's consent was obtained (``Subscriber.consent_source``)."""

    WEB = "web"  # the signup form, then the confirmation link
    CLI = "cli"  # `subscribers add`, then the confirmation link
    IMPORT = "import"  # `subscribers import`, then the confirmation link
    CLI_HELD = "cli-consent-held"  # `subscribers add --confirmed`: the editor holds consent
    IMPORT_HELD = "import-consent-held"  # `subscribers import --confirmed`


# --- results -----------------------------------------------------------------


class SubscribeAction(StrEnum):
    CREATED = "created"  # a new pending subscriber; confirmation to send
    RESENT = "resent"  # still pending; a new confirmation link to send
    RECONFIRM = "reconfirm"  # suppressed, asked to come back; confirmation to send
    THROTTLED = "throttled"  # a confirmation went out less than the resend interval ago
    ALREADY_CONFIRMED = "already-confirmed"  # nothing to do


@dataclass(frozen=True)
class Confirmation:
    """A confirmation email to send: to whom, and the signed token for the link."""

    email: str
    uid: str
    token: str


@dataclass(frozen=True)
class SubscribeResult:
    action: SubscribeAction
    email: str
    confirmation: Confirmation | None = None
    next_send_at: datetime | None = None  # when throttled: when a new link may go out


class ConfirmStatus(StrEnum):
    CONFIRMED = "confirmed"
    ALREADY_CONFIRMED = "already-confirmed"
    USED = "used"  # a newer link was sent, or the person left since
    EXPIRED = "expired"
    INVALID = "invalid"  # forged, truncated, or a token for another purpose
    UNKNOWN = "unknown"  # genuine, but the subscriber is gone (pruned or forgotten)


@dataclass(frozen=True)
class Welcome:
    """A welcome email to send after a confirmation."""

    email: str
    name: str
    uid: str
    latest_issue: str | None  # id of the latest sent issue, if any


@dataclass(frozen=True)
class ConfirmResult:
    status: ConfirmStatus
    welcome: Welcome | None = None


@dataclass(frozen=True)
class UnsubscribeResult:
    changed: bool  # False when already unsubscribed (or suppressed, or gone)
    email: str | None  # None when the subscriber no longer exists
    status: str | None = None
    spooled: bool = False  # recorded in the spool, applied once the database answers


class AddAction(StrEnum):
    ADDED = "added"
    CONFIRMED = "confirmed"  # was pending, now confirmed with consent held
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class AddResult:
    action: AddAction
    email: str


@dataclass(frozen=True)
class ImportRow:
    """One good row of an import file."""

    line: int
    address: EmailAddress
    name: str
    # a later row of an address already imported from this file (on that line), bringing
    # the name its first row lacked: it fills the name in and is not counted again
    merge_into: int | None = None


@dataclass
class ImportOutcome:
    """What an import changed. Rows it could not use are reported by the reader."""

    added: list[str] = field(default_factory=list)
    confirmed: list[str] = field(default_factory=list)  # were pending, consent now held
    updated: list[str] = field(default_factory=list)  # a missing name filled in
    unchanged: list[str] = field(default_factory=list)
    suppressed: list[tuple[int, str, str]] = field(default_factory=list)  # line, email, status
    confirmations: list[Confirmation] = field(default_factory=list)
    throttled: list[str] = field(default_factory=list)


@dataclass
class PruneResult:
    removed: list[str] = field(default_factory=list)
    cutoff: datetime | None = None
