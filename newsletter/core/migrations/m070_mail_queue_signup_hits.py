"""The web's durable parts: the queue of confirmation and welcome emails, and signup counts.

``mail_queue`` holds the emails still to send, written with the change that needs
them, so a relay that is down or a killed process loses none. ``signup_hits``
counts accepted signup forms per client and per address, so every worker of
`slice serve` shares the limits.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Connection


def upgrade(conn: Connection) -> None:
    meta = MetaData()
    Table("subscribers", meta, Column("uid", String, unique=True))
    Table(
        "mail_queue",
        meta,
        Column("id", Integer, primary_key=True),
        Column("kind", String, nullable=False),
        Column(
            "subscriber_uid",
            String,
            ForeignKey("subscribers.uid", ondelete="CASCADE"),
            nullable=False,
        ),
        Column("queued_at", DateTime(timezone=True), nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("next_attempt_at", DateTime(timezone=True), nullable=False),
        Column("lease_until", DateTime(timezone=True), nullable=True),
        Column("last_error", Text, nullable=False),
        UniqueConstraint("kind", "subscriber_uid", name="uq_mail_queue_kind_subscriber"),
        Index("ix_mail_queue_next_attempt_at", "next_attempt_at"),
    )
    Table(
        "signup_hits",
        meta,
        Column("id", Integer, primary_key=True),
        Column("scope", String, nullable=False),
        Column("key", String, nullable=False),
        Column("at", DateTime(timezone=True), nullable=False),
        Index("ix_signup_hits_scope_key_at", "scope", "key", "at"),
        Index("ix_signup_hits_at", "at"),
    )
    meta.tables["mail_queue"].create(conn)
    meta.tables["signup_hits"].create(conn)
