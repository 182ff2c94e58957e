"""papers.relevance, on_topic and relevance_key; relevance_stats.

Each paper's profile score, computed with the IDF of the whole store, and whether
it clears the relevance floor (the archive lists only those). ``relevance_key``
names the profile it was scored with, so a changed profile scores the store again.
``relevance_stats`` holds, per profile, the store's document count, total length
and each term's document frequency: the IDF that compose and the scores share.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection


def upgrade(conn: Connection) -> None:
    conn.exec_driver_sql("ALTER TABLE papers ADD COLUMN relevance FLOAT")
    conn.exec_driver_sql("ALTER TABLE papers ADD COLUMN on_topic BOOLEAN")
    conn.exec_driver_sql("ALTER TABLE papers ADD COLUMN relevance_key VARCHAR")
    conn.exec_driver_sql("CREATE INDEX ix_papers_on_topic ON papers (on_topic)")
    conn.exec_driver_sql("CREATE INDEX ix_papers_relevance_key ON papers (relevance_key)")
    conn.exec_driver_sql(
        "CREATE TABLE relevance_stats ("
        " profile_key VARCHAR NOT NULL PRIMARY KEY,"
        " docs INTEGER NOT NULL,"
        " length INTEGER NOT NULL,"
        " df JSON NOT NULL)"
    )
