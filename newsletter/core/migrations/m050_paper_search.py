"""Full-text search over papers: title, abstract and authors.

SQLite: an FTS5 table that borrows its text from ``papers`` (external content)
and is kept in step by triggers, so a paper inserted by anyone (ingest, a test,
a script) is searchable at once. PostgreSQL: a GIN index over a weighted
``tsvector`` expression; a query that repeats the expression uses the index.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

# Repeated verbatim by newsletter.papers.search (a test checks the index is used).
PG_DOCUMENT = (
    "(setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(authors::text, '')), 'B') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(abstract, '')), 'C'))"
)

_SQLITE = [
    """
    CREATE VIRTUAL TABLE papers_fts USING fts5(
        title, abstract, authors,
        content='papers', content_rowid='id',
        tokenize='porter unicode61 remove_diacritics 2'
    )
    """,
    """
    CREATE TRIGGER papers_fts_insert AFTER INSERT ON papers BEGIN
        INSERT INTO papers_fts(rowid, title, abstract, authors)
        VALUES (new.id, new.title, new.abstract, new.authors);
    END
    """,
    """
    CREATE TRIGGER papers_fts_delete AFTER DELETE ON papers BEGIN
        INSERT INTO papers_fts(papers_fts, rowid, title, abstract, authors)
        VALUES ('delete', old.id, old.title, old.abstract, old.authors);
    END
    """,
    """
    CREATE TRIGGER papers_fts_update AFTER UPDATE OF title, abstract, authors ON papers BEGIN
        INSERT INTO papers_fts(papers_fts, rowid, title, abstract, authors)
        VALUES ('delete', old.id, old.title, old.abstract, old.authors);
        INSERT INTO papers_fts(rowid, title, abstract, authors)
        VALUES (new.id, new.title, new.abstract, new.authors);
    END
    """,
    "INSERT INTO papers_fts(papers_fts) VALUES ('rebuild')",
]


def upgrade(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        for statement in _SQLITE:
            conn.exec_driver_sql(statement)
    elif conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"CREATE INDEX ix_papers_search ON papers USING GIN ({PG_DOCUMENT})")
