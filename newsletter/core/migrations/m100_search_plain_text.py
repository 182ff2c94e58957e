"""Search the papers' plain text, find words by their first letters, rebuild the index.

Titles and abstracts are stored as escaped HTML with a few inline tags
(``VO<sub>2</sub>max``, ``p &lt; 0.05``). m050-m052 indexed that text as it was,
so ``sub`` or ``lt`` matched every paper with a subscript or a p-value, and
``VO2max`` did not find ``VO<sub>2</sub>max``. The index now holds the text a
reader sees: the four inline tags the records allow are removed (a subscript
joins its word) and the entities are decoded, by the same SQL on both backends,
so any writer's rows (a script, plain SQL) are indexed the same way.

SQLite: the FTS5 table is made again with prefix indexes of 2 and 3 letters,
so ``mammo*`` and ``ca*`` answer from the index instead of walking every term.
Both backends stem English words (FTS5 ``porter``; PostgreSQL ``english``).
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

# The tags newsletter.papers.text.ALLOWED_TAGS keeps, and the entities its sanitizer writes
# (a migration never changes, so the lists are spelled out here, not imported).
_TAGS = ("i", "b", "sub", "sup")
_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#39;", "'"), ("&nbsp;", " "))


def plain(expr: str) -> str:
    """SQL (SQLite and PostgreSQL alike) for the plain text of a stored title or abstract."""
    out = f"coalesce({expr}, '')"
    for tag in _TAGS:
        out = f"replace(replace({out}, '<{tag}>', ''), '</{tag}>', '')"
    for entity, char in (*_ENTITIES, ("&amp;", "&")):  # &amp; last: "&amp;lt;" stays "&lt;"
        out = f"replace({out}, '{entity}', '{char.replace(chr(39), chr(39) * 2)}')"
    return out


def _names(column: str) -> str:
    """The author names of a JSON list as '; '-separated text (the raw text if not a list)."""
    return (
        f"CASE WHEN json_valid({column}) AND json_type({column}) = 'array' "  # noqa: S608
        f"THEN coalesce((SELECT group_concat(value, '; ') FROM json_each({column})), '') "
        f"ELSE coalesce({column}, '') END"
    )


def _values(row: str) -> str:
    return f"{plain(row + '.title')}, {plain(row + '.abstract')}, {_names(row + '.authors')}"


_SQLITE = [
    "DROP TRIGGER IF EXISTS papers_fts_insert",
    "DROP TRIGGER IF EXISTS papers_fts_delete",
    "DROP TRIGGER IF EXISTS papers_fts_update",
    "DROP TABLE IF EXISTS papers_fts",
    """
    CREATE VIRTUAL TABLE papers_fts USING fts5(
        title, abstract, authors,
        content='',
        prefix='2 3',
        tokenize='porter unicode61 remove_diacritics 2'
    )
    """,
    f"""
    CREATE TRIGGER papers_fts_insert AFTER INSERT ON papers BEGIN
        INSERT INTO papers_fts(rowid, title, abstract, authors)
        VALUES (new.id, {_values("new")});
    END
    """,  # noqa: S608
    f"""
    CREATE TRIGGER papers_fts_delete AFTER DELETE ON papers BEGIN
        INSERT INTO papers_fts(papers_fts, rowid, title, abstract, authors)
        VALUES ('delete', old.id, {_values("old")});
    END
    """,  # noqa: S608
    f"""
    CREATE TRIGGER papers_fts_update AFTER UPDATE OF title, abstract, authors ON papers BEGIN
        INSERT INTO papers_fts(papers_fts, rowid, title, abstract, authors)
        VALUES ('delete', old.id, {_values("old")});
        INSERT INTO papers_fts(rowid, title, abstract, authors)
        VALUES (new.id, {_values("new")});
    END
    """,  # noqa: S608
    f"""
    INSERT INTO papers_fts(rowid, title, abstract, authors)
    SELECT id, {_values("papers")} FROM papers
    """,  # noqa: S608
]


def _document(row: str) -> str:
    """The weighted tsvector of a papers row (``row`` is a table alias or NEW)."""
    return (
        f"setweight(to_tsvector('english'::regconfig, {plain(row + '.title')}), 'A') || "
        f"setweight(to_tsvector('english'::regconfig, "
        f"coalesce(({row}.authors::jsonb)::text, '')), 'B') || "
        f"setweight(to_tsvector('english'::regconfig, {plain(row + '.abstract')}), 'C')"
    )


_POSTGRES = [
    f"""
    CREATE OR REPLACE FUNCTION slice_paper_search_sync() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO paper_search (paper_id, document) VALUES (NEW.id, {_document("NEW")})
        ON CONFLICT (paper_id) DO UPDATE SET document = EXCLUDED.document;
        RETURN NULL;
    END
    $$
    """,  # noqa: S608
    f"UPDATE paper_search s SET document = {_document('p')} FROM papers p WHERE p.id = s.paper_id",  # noqa: S608
]


def upgrade(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        for statement in _SQLITE:
            conn.exec_driver_sql(statement)
    elif conn.dialect.name == "postgresql":
        for statement in _POSTGRES:
            conn.exec_driver_sql(statement)
