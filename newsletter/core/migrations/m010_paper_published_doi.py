"""papers.published_doi: the journal DOI a preprint server reports for a preprint.

It links a preprint to its journal version when the two arrive in either
order (indexed: each new journal paper looks up the preprints that name it).
"""

from __future__ import annotations

from sqlalchemy.engine import Connection


def upgrade(conn: Connection) -> None:
    conn.exec_driver_sql("ALTER TABLE papers ADD COLUMN published_doi VARCHAR")
    conn.exec_driver_sql("CREATE INDEX ix_papers_published_doi ON papers (published_doi)")
