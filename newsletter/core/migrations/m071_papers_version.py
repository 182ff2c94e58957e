"""A counter of changes to the papers, so every web worker knows when its cached lists are stale.

``slice_counters`` holds one row per counted table; triggers on ``papers`` add one
to the ``papers`` row with every insert, update or delete, whoever writes (ingest,
a script, a future tool). The archive keeps what changes only with the papers
(the source list, counts, result pages) until the counter moves. PostgreSQL counts
once per statement; SQLite, which has only row triggers, once per row.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

_COMMON = [
    "CREATE TABLE slice_counters (name VARCHAR(40) NOT NULL PRIMARY KEY, value BIGINT NOT NULL)",
    "INSERT INTO slice_counters (name, value) VALUES ('papers', 0)",
]

_SQLITE = [
    f"""
    CREATE TRIGGER papers_version_{event.lower()} AFTER {event} ON papers
    BEGIN
        UPDATE slice_counters SET value = value + 1 WHERE name = 'papers';
    END
    """  # noqa: S608 - constant event names, no input
    for event in ("INSERT", "UPDATE", "DELETE")
]

_POSTGRES = [
    """
    CREATE FUNCTION slice_papers_version() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE slice_counters SET value = value + 1 WHERE name = 'papers';
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER papers_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON papers FOR EACH STATEMENT EXECUTE FUNCTION slice_papers_version()
    """,
]


def upgrade(conn: Connection) -> None:
    postgres = conn.dialect.name == "postgresql"
    for statement in _COMMON + (_POSTGRES if postgres else _SQLITE):
        conn.exec_driver_sql(statement)
