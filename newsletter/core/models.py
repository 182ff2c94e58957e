"""The tables, as SQLModel classes.

The schema itself is created and changed only by the ordered migrations in
`newsletter.core.migrations`; a test checks that these classes and the migrated
schema agree column for column.
"""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Integer, Table, UniqueConstraint
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
    COMPOSED = "composed"
    SENDING = "sending"
    SENT = "sent"


class Paper(SQLModel, table=True):
    """One work, however many sources reported it."""

    __tablename__ = "papers"

    id: int | None = Field(default=None, primary_key=True)
    title: str
    authors: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    abstract: str = ""
    source: str = Field(index=True)
    kind: str = Field(default=PaperKind.PAPER.value, index=True)
    published: date = Field(index=True)
    url: str = ""
    journal: str = ""
    doi: str | None = Field(default=None, unique=True)
    arxiv_id: str | None = Field(default=None, unique=True)
    pmid: str | None = Field(default=None, unique=True)
    pmcid: str | None = Field(default=None, unique=True)
    # normalized title, for the last-resort duplicate check
    title_key: str = Field(default="", index=True)
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
    """A composed issue; its files live in outbox/<id>/."""

    __tablename__ = "issues"

    id: str = Field(primary_key=True)
    number: int = Field(index=True)
    subject: str = ""
    window_start: date
    window_end: date
    status: str = Field(default=IssueStatus.COMPOSED.value)
    composed_at: datetime = Field(default_factory=utcnow)
    send_started_at: datetime | None = None
    sent_at: datetime | None = None


class Delivery(SQLModel, table=True):
    """The ledger: one row per (issue, subscriber), frozen when a send starts."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("issue_id", "subscriber_id", name="uq_delivery_issue_subscriber"),
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
    last_error: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
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


def table(model: type[SQLModel]) -> Table:
    """A model's table, for the statements that run below the ORM (the ledger's, say)."""
    return cast(Table, getattr(model, "__table__"))  # noqa: B009 - set by SQLModel for table=True
