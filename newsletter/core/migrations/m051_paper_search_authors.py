"""Search authors by their names as written, not as JSON escapes.

The authors column holds a JSON list, and JSON may spell "Fernández" as
"Fern\\u00e1ndez"; m050 indexed that raw text, so such names could not be
found. SQLite: the FTS5 table is now contentless (it keeps only the index; the
text stays in ``papers``), filled and kept in step by triggers that decode the
list with json_each, which an external-content table could not read back.
PostgreSQL: the index expression reads the list through jsonb, whose text form
is decoded.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

# Every statement below is fixed text: only column names are filled in.


def _names(column: str) -> str:
    """The author names of a JSON list as '; '-separated text (the raw text if not a list)."""
    return (
        f"CASE WHEN json_valid({column}) AND json_type({column}) = 'array' "  # noqa: S608
        f"THEN coalesce((SELECT group_concat(value, '; ') FROM json_each({column})), '') "
        f"ELSE coalesce({column}, '') END"
    )


# Repeated verbatim by newsletter.papers.search (a test checks the index is used).
PG_DOCUMENT = (
    "(setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('english'::regconfig, coalesce((authors::jsonb)::text, '')), 'B') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(abstract, '')), 'C'))"
)

_SQLITE = [
    "DROP TRIGGER IF EXISTS papers_fts_insert",
    "DROP TRIGGER IF EXISTS papers_fts_delete",
    "DROP TRIGGER IF EXISTS papers_fts_update",
    "DROP TABLE IF EXISTS papers_fts",
    """
    CREATE VIRTUAL TABLE papers_fts USING fts5(
        title, abstract, authors,
        content='',
        tokenize='porter unicode61 remove_diacritics 2'
    )
    """,
    f"""
    CREATE TRIGGER papers_fts_insert AFTER INSERT ON papers BEGIN
        INSERT INTO papers_fts(rowid, title, abstract, authors)
        VALUES (new.id, new.title, new.abstract, {_names("new.authors")});
    END
    """,  # noqa: S608
    f"""
    CREATE TRIGGER papers_fts_delete AFTER DELETE ON papers BEGIN
        INSERT INTO papers_fts(papers_fts, rowid, title, abstract, authors)
        VALUES ('delete', old.id, old.title, old.abstract, {_names("old.authors")});
    END
    """,  # noqa: S608
    f"""
    CREATE TRIGGER papers_fts_update AFTER UPDATE OF title, abstract, authors ON papers BEGIN
        INSERT INTO papers_fts(papers_fts, rowid, title, abstract, authors)
        VALUES ('delete', old.id, old.title, old.abstract, {_names("old.authors")});
        INSERT INTO papers_fts(rowid, title, abstract, authors)
        VALUES (new.id, new.title, new.abstract, {_names("new.authors")});
    END
    """,  # noqa: S608
    f"""
    INSERT INTO papers_fts(rowid, title, abstract, authors)
    SELECT id, title, abstract, {_names("papers.authors")} FROM papers
    """,  # noqa: S608
]


def upgrade(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        for statement in _SQLITE:
            conn.exec_driver_sql(statement)
    elif conn.dialect.name == "postgresql":
        conn.exec_driver_sql("DROP INDEX IF EXISTS ix_papers_search")
        conn.exec_driver_sql(f"CREATE INDEX ix_papers_search ON papers USING GIN ({PG_DOCUMENT})")
