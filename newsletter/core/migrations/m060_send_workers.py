"""Several send workers on one database: leases on ledger rows, a worker registry, shared pacing.

- ``deliveries.worker_id`` / ``lease_until``: who holds a row being sent, and until when;
  a worker renews its leases with its heartbeat, and a row whose lease ran out (its
  worker died) may be claimed by another worker.
- ``send_workers``: one row per running worker, with its heartbeat, for ``slice send --status``.
- ``send_pace``: the next free send slot of the global rate (one row, locked while taken).
- ``send_pace_seconds``: slots granted per second, for the hourly and daily caps.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    text,
)
from sqlalchemy.engine import Connection


def upgrade(conn: Connection) -> None:
    stamp = DateTime(timezone=True).compile(dialect=conn.dialect)
    # constant DDL: nothing here comes from input
    conn.execute(text("ALTER TABLE deliveries ADD COLUMN worker_id VARCHAR DEFAULT '' NOT NULL"))
    conn.execute(text(f"ALTER TABLE deliveries ADD COLUMN lease_until {stamp}"))
    meta = MetaData()
    deliveries = Table(
        "deliveries",
        meta,
        Column("id", Integer, primary_key=True),
        Column("issue_id", String),
        Column("status", String),
    )
    # the claim reads open rows of one issue in id order
    Index(
        "ix_deliveries_issue_status_id", deliveries.c.issue_id, deliveries.c.status, deliveries.c.id
    ).create(conn)
    Table(
        "send_workers",
        meta,
        Column("id", String, primary_key=True),
        Column("issue_id", String, nullable=False, index=True),
        Column("host", String, nullable=False),
        Column("pid", Integer, nullable=False),
        Column("started_at", DateTime(timezone=True), nullable=False),
        Column("heartbeat_at", DateTime(timezone=True), nullable=False),
        Column("sent", Integer, nullable=False),
        Column("rate", Float, nullable=False),
    ).create(conn)
    Table(
        "send_pace",
        meta,
        Column("name", String, primary_key=True),
        Column("next_at", Float, nullable=False),
        Column("seeded", Integer, nullable=False),
    ).create(conn)
    Table(
        "send_pace_seconds",
        meta,
        Column("second", BigInteger, primary_key=True, autoincrement=False),
        Column("granted", Integer, nullable=False),
    ).create(conn)
