"""Issues not yet sent are drafts: the status 'composed' becomes 'draft'."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection


def upgrade(conn: Connection) -> None:
    conn.execute(text("UPDATE issues SET status = 'draft' WHERE status = 'composed'"))
