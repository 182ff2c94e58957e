"""PostgreSQL: keep each paper's search document in a table of its own.

Ranking by relevance with only an expression index recomputed every match's
tsvector (1-2 s for a 20,000-hit query over 100,000 papers). The document now
lives in ``paper_search`` (one row per paper, GIN-indexed), written by a
trigger on ``papers`` whoever inserts or edits a paper, and removed with it.
The ``papers`` table itself keeps exactly the models' columns. SQLite is
unchanged (its FTS5 table already stores the index).
"""

from __future__ import annotations

from sqlalchemy.engine import Connection


def document(row: str) -> str:
    """The weighted tsvector of a papers row (``row`` is a table alias or NEW)."""
    return (
        f"setweight(to_tsvector('english'::regconfig, coalesce({row}.title, '')), 'A') || "
        f"setweight(to_tsvector('english'::regconfig, "
        f"coalesce(({row}.authors::jsonb)::text, '')), 'B') || "
        f"setweight(to_tsvector('english'::regconfig, coalesce({row}.abstract, '')), 'C')"
    )


_POSTGRES = [
    """
    CREATE TABLE paper_search (
        paper_id integer PRIMARY KEY REFERENCES papers (id) ON DELETE CASCADE,
        document tsvector NOT NULL
    )
    """,
    f"""
    CREATE FUNCTION slice_paper_search_sync() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO paper_search (paper_id, document) VALUES (NEW.id, {document("NEW")})
        ON CONFLICT (paper_id) DO UPDATE SET document = EXCLUDED.document;
        RETURN NULL;
    END
    $$
    """,  # noqa: S608
    """
    CREATE TRIGGER papers_search_sync AFTER INSERT OR UPDATE OF title, abstract, authors
    ON papers FOR EACH ROW EXECUTE FUNCTION slice_paper_search_sync()
    """,
    f"INSERT INTO paper_search (paper_id, document) SELECT p.id, {document('p')} FROM papers p",  # noqa: S608
    "CREATE INDEX ix_paper_search_document ON paper_search USING GIN (document)",
    "DROP INDEX IF EXISTS ix_papers_search",
]


def upgrade(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        for statement in _POSTGRES:
            conn.exec_driver_sql(statement)
