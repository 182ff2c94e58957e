"""The tables, as SQLModel classes.

The schema itself is created and changed only by the ordered migrations in
`newsletter.core.migrations`; tests/test_schema.py checks that these classes and
the migrated schema agree on columns, types, nullability, keys and indexes, on
SQLite and PostgreSQL. Long free text is ``Text`` (as the migrations made it),
short codes and keys are ``String``.
"""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Now, in UTC (timestamps are stored and read back as aware UTC datetimes)."""
    return datetime.now(UTC)


def new_uid() -> str:
    """An opaque, random public identifier (never a database id)."""
    return secrets.token_urlsafe(16)


class PaperKind(StrEnum):
    PAPER = "paper"
    PREPRINT = "preprint"


class SubscriberStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


SUPPRESSED = frozenset(
    {SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED}
)


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    SKIPPED = "skipped"  # the reader left or was suppressed before their turn


class IssueStatus(StrEnum):
    """draft -> sending -> sent; a draft may be discarded (and composed again later)."""

    DRAFT = "draft"
    SENDING = "sending"
    SENT = "sent"
    DISCARDED = "discarded"
    COMPOSED = "draft"  # the draft's former name (an alias), kept for callers that use it


class Paper(SQLModel, table=True):
    """One work, however many sources reported it."""

    __tablename__ = "papers"

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(sa_type=Text)
    authors: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    abstract: str = Field(default="", sa_type=Text)
    source: str = Field(index=True)
    kind: str = Field(default=PaperKind.PAPER.value, index=True)
    published: date = Field(index=True)
    url: str = Field(default="", sa_type=Text)
    journal: str = Field(default="", sa_type=Text)
    doi: str | None = Field(default=None, unique=True)
    arxiv_id: str | None = Field(default=None, unique=True)
    pmid: str | None = Field(default=None, unique=True)
    pmcid: str | None = Field(default=None, unique=True)
    # normalized title, for the last-resort duplicate check
    title_key: str = Field(default="", index=True, sa_type=Text)
    # every source that reported this work, and when
    seen_in: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # a preprint points at its journal version (linked, never merged)
    published_version_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("papers.id", ondelete="SET NULL"), nullable=True),
    )
    # the journal DOI a preprint server reports for this preprint (m010)
    published_doi: str | None = Field(default=None, index=True)
    extra: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    first_seen: datetime = Field(default_factory=utcnow, index=True)
    # the profile score with the store's IDF, whether it clears the floor, and the
    # profile it was scored with (m091; kept by newsletter.issue.relevance)
    relevance: float | None = None
    on_topic: bool | None = Field(default=None, index=True)
    relevance_key: str | None = Field(default=None, index=True)
    updated_at: datetime = Field(default_factory=utcnow)


class Subscriber(SQLModel, table=True):
    """A reader, or someone who asked to be one."""

    __tablename__ = "subscribers"

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(default_factory=new_uid, unique=True)
    email: str
    # lower-cased address: unique, so one person is one row whatever the case
    email_key: str = Field(unique=True)
    name: str = ""
    status: str = Field(default=SubscriberStatus.PENDING.value, index=True)
    consent_source: str = ""  # web, import, cli
    confirm_ip: str | None = None
    # changes whenever a new confirmation link is sent; a link works only with the current one
    confirm_nonce: str | None = None
    confirm_sent_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    confirmed_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    status_reason: str = ""


class Issue(SQLModel, table=True):
    """A composed issue (a draft until it is sent); its files live in outbox/<id>/."""

    __tablename__ = "issues"

    id: str = Field(primary_key=True)
    number: int = Field(index=True)
    subject: str = Field(default="", sa_type=Text)
    window_start: date
    window_end: date
    status: str = Field(default=IssueStatus.DRAFT.value)
    composed_at: datetime = Field(default_factory=utcnow)
    send_started_at: datetime | None = None
    sent_at: datetime | None = None


class Delivery(SQLModel, table=True):
    """The ledger: one row per (issue, subscriber), frozen when a send starts."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("issue_id", "subscriber_id", name="uq_delivery_issue_subscriber"),
        # a worker's claim reads one issue's open rows in id order (m060)
        Index("ix_deliveries_issue_status_id", "issue_id", "status", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    issue_id: str = Field(
        sa_column=Column(
            "issue_id", ForeignKey("issues.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    subscriber_id: int = Field(
        sa_column=Column(
            "subscriber_id",
            Integer,
            ForeignKey("subscribers.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )
    status: str = Field(default=DeliveryStatus.PENDING.value, index=True)
    message_id: str = ""
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_code: int | None = None
    last_error: str = Field(default="", sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
    # how the message came back (m080): "soft", "hard", "complaint", or "" for not at all
    bounce: str = ""

    # the worker sending this row and until when it holds it (see newsletter.send.claims)
    worker_id: str = ""
    lease_until: datetime | None = None


class SendWorker(SQLModel, table=True):
    """A running send worker: its heartbeat shows it alive (``slice send --status``)."""

    __tablename__ = "send_workers"

    id: str = Field(primary_key=True)
    issue_id: str = Field(index=True)
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    sent: int = 0
    rate: float = 0.0


class SendPace(SQLModel, table=True):
    """The global rate's next free slot (epoch seconds), shared by every worker."""

    __tablename__ = "send_pace"

    name: str = Field(primary_key=True)
    next_at: float = 0.0
    seeded: int = 0


class SendPaceSecond(SQLModel, table=True):
    """Slots granted in one second (epoch), counted for the hourly and daily caps."""

    __tablename__ = "send_pace_seconds"

    second: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    granted: int = 0


class InboundOutcome(StrEnum):
    """What one inbound message did (`slice inbound`, `slice bounces import`)."""

    BOUNCED = "bounced"  # a permanent failure: the reader is suppressed
    SOFT_BOUNCE = "soft_bounce"  # a temporary failure, counted
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"  # an emailed unsubscribe with a valid token
    ALREADY = "already"  # attributed, but the reader was suppressed before
    UNATTRIBUTED = "unattributed"  # a report with no valid token nor a Message-ID we sent
    UNSIGNED = "unsigned"  # an unsubscribe request without a valid token
    AUTO_REPLY = "auto_reply"  # out-of-office and other automatic answers
    NOT_REPORT = "not_report"
    UNREADABLE = "unreadable"


class InboundMessage(SQLModel, table=True):
    """One message that came back to the list's bounce or unsubscribe address (m080)."""

    __tablename__ = "inbound_messages"

    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime = Field(default_factory=utcnow, index=True)
    source: str  # lmtp, smtp, imap, file
    message_id: str = ""
    sender: str = ""
    outcome: str = Field(index=True)
    subscriber_id: int | None = Field(
        default=None,
        sa_column=Column(
            "subscriber_id",
            Integer,
            ForeignKey("subscribers.id", ondelete="SET NULL"),
            nullable=True,
        ),
    )
    delivery_id: int | None = Field(
        default=None,
        sa_column=Column(
            "delivery_id",
            Integer,
            ForeignKey("deliveries.id", ondelete="SET NULL"),
            nullable=True,
        ),
    )
    detail: str = ""


# What the editor chose in each issue (m020): a plain table, read and written by
# newsletter.issue.choices below the ORM.
issue_choices = Table(
    "issue_choices",
    SQLModel.metadata,
    Column("issue_id", String, ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True),
    Column("paper_id", Integer, ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True),
    Column("choice", String, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Index("ix_issue_choices_paper", "paper_id"),
)

# Counters that triggers keep (m071): ``papers`` goes up with every change to the papers
# table, so each `slice serve` worker knows when its cached archive pages are stale.
slice_counters = Table(
    "slice_counters",
    SQLModel.metadata,
    Column("name", String(40), primary_key=True),
    Column("value", BigInteger, nullable=False),
)


class MailKind(StrEnum):
    CONFIRM = "confirm"
    WELCOME = "welcome"


class QueuedMail(SQLModel, table=True):
    """A confirmation or welcome email still to send (migration m070).

    Written in the same transaction as the change that needs it, deleted once the
    relay took it, so a relay that is down or a killed process loses nothing.
    At most one of each kind per subscriber: a newer request replaces the row.
    """

    __tablename__ = "mail_queue"
    __table_args__ = (
        UniqueConstraint("kind", "subscriber_uid", name="uq_mail_queue_kind_subscriber"),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str
    subscriber_uid: str = Field(
        sa_column=Column(
            "subscriber_uid",
            String,
            ForeignKey("subscribers.uid", ondelete="CASCADE"),
            nullable=False,
        )
    )
    queued_at: datetime = Field(default_factory=utcnow)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, index=True)
    lease_until: datetime | None = None  # a sender has claimed it until then
    last_error: str = Field(default="", sa_type=Text)


class SignupHit(SQLModel, table=True):
    """One accepted signup form, counted for the limits (migration m070).

    ``key`` is a hash of the client network or of the address, never the value itself;
    rows older than the limits' window are deleted as new ones come in.
    """

    __tablename__ = "signup_hits"
    __table_args__ = (Index("ix_signup_hits_scope_key_at", "scope", "key", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    scope: str
    key: str
    at: datetime = Field(index=True)


relevance_stats = Table(
    "relevance_stats",
    SQLModel.metadata,
    Column("profile_key", String, primary_key=True),
    Column("docs", Integer, nullable=False),
    Column("length", Integer, nullable=False),
    Column("df", JSON, nullable=False),
)  # per profile: the store's document count, total length and term document frequencies


def table(model: type[SQLModel]) -> Table:
    """A model's table, for the statements that run below the ORM (the ledger's, say)."""
    return cast(Table, getattr(model, "__table__"))  # noqa: B009 - set by SQLModel for table=True
