"""Mail that came back: one row per inbound message and what it did; a bounce mark per delivery.

``deliveries.bounce`` says how the message of that delivery came back ("soft",
"hard", "complaint" or empty), so soft bounces in a row can be counted across
issues from the ledger itself.
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
    text,
)
from sqlalchemy.engine import Connection


def upgrade(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE deliveries ADD COLUMN bounce VARCHAR NOT NULL DEFAULT ''"))
    meta = MetaData()
    Table("subscribers", meta, Column("id", Integer, primary_key=True))
    Table("deliveries", meta, Column("id", Integer, primary_key=True))
    inbound = Table(
        "inbound_messages",
        meta,
        Column("id", Integer, primary_key=True),
        Column("received_at", DateTime(timezone=True), nullable=False),
        Column("source", String, nullable=False),
        Column("message_id", String, nullable=False),
        Column("sender", String, nullable=False),
        Column("outcome", String, nullable=False),
        Column(
            "subscriber_id",
            Integer,
            ForeignKey("subscribers.id", ondelete="SET NULL"),
            nullable=True,
        ),
        Column(
            "delivery_id",
            Integer,
            ForeignKey("deliveries.id", ondelete="SET NULL"),
            nullable=True,
        ),
        Column("detail", String, nullable=False),
        Index("ix_inbound_messages_outcome", "outcome"),
        Index("ix_inbound_messages_received_at", "received_at"),
    )
    inbound.create(conn)
