"""Paper rows below the ORM, for ingest: read, inserted and updated a chunk at a time.

Ingest touches tens of thousands of papers per file. Building an ORM object per
record and letting the session flush them was most of its time, so ingest
works on `StoredPaper`, a plain slotted object with the ``papers`` columns, and
writes with SQLAlchemy Core: one multi-row ``INSERT ... RETURNING id`` per
chunk for new papers, and one executemany ``UPDATE`` per set of changed columns.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.engine import Connection

from newsletter.core.models import Paper, table

PAPERS = table(Paper)

COLUMNS = (
    "id",
    "title",
    "authors",
    "abstract",
    "source",
    "kind",
    "published",
    "url",
    "journal",
    "doi",
    "arxiv_id",
    "pmid",
    "pmcid",
    "title_key",
    "seen_in",
    "published_version_id",
    "published_doi",
    "extra",
    "first_seen",
    "updated_at",
)
_MUTABLE = COLUMNS[1:]  # everything but the id may change on a merge


class StoredPaper:
    """One row of ``papers``: new (no id yet) or read from the database."""

    __slots__ = (*COLUMNS, "_saved")

    id: int | None
    title: str
    authors: list[str]
    abstract: str
    source: str
    kind: str
    published: date
    url: str
    journal: str
    doi: str | None
    arxiv_id: str | None
    pmid: str | None
    pmcid: str | None
    title_key: str
    seen_in: list[str]
    published_version_id: int | None
    published_doi: str | None
    extra: dict[str, Any]
    first_seen: datetime
    updated_at: datetime
    _saved: tuple[Any, ...] | None  # the values as stored, to find what changed

    def __init__(self, **values: Any) -> None:
        for name in COLUMNS:
            setattr(self, name, values.get(name))
        self._saved = None

    @classmethod
    def loaded(cls, row: Any) -> StoredPaper:
        paper = cls(**dict(zip(COLUMNS, row, strict=True)))
        paper.mark_saved()
        return paper

    def values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _MUTABLE}

    def mark_saved(self) -> None:
        # lists and dicts are replaced, never changed in place, by the merger;
        # copies keep a change in place from going unnoticed all the same
        self._saved = tuple(_copy(getattr(self, name)) for name in _MUTABLE)

    def changed(self) -> tuple[str, ...]:
        """The columns that differ from the stored row (all of them for a new paper)."""
        if self._saved is None:
            return _MUTABLE
        return tuple(
            name
            for name, old in zip(_MUTABLE, self._saved, strict=True)
            if getattr(self, name) != old
        )


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


def read_matching(conn: Connection, column: str, values: Iterable[str]) -> list[StoredPaper]:
    """The stored papers whose ``column`` is one of ``values``."""
    wanted = list(values)
    found: list[StoredPaper] = []
    for start in range(0, len(wanted), 500):
        query = select(*(PAPERS.c[name] for name in COLUMNS)).where(
            PAPERS.c[column].in_(wanted[start : start + 500])
        )
        found.extend(StoredPaper.loaded(row) for row in conn.execute(query))
    return found


def insert_new(conn: Connection, papers: list[StoredPaper]) -> None:
    """Insert papers that have no id yet, in one statement; sets their ids."""
    if not papers:
        return
    if conn.dialect.name == "sqlite":
        # The transaction holds SQLite's write lock (BEGIN IMMEDIATE), so nobody else
        # inserts until it ends: number the rows here and insert them with a plain
        # executemany. (RETURNING in insertmanyvalues mode runs one statement per
        # row on SQLite to keep the order, which cost more than the insert itself.)
        last = conn.execute(select(func.max(PAPERS.c.id))).scalar() or 0
        rows = []
        for number, paper in enumerate(papers, start=last + 1):
            paper.id = number
            rows.append({"id": number, **paper.values()})
        conn.execute(insert(PAPERS), rows)
    else:
        statement = insert(PAPERS).returning(PAPERS.c.id, sort_by_parameter_order=True)
        ids = conn.execute(statement, [p.values() for p in papers]).scalars().all()
        for paper, new_id in zip(papers, ids, strict=True):
            paper.id = new_id
    for paper in papers:
        paper.mark_saved()


def update_changed(conn: Connection, papers: Iterable[StoredPaper]) -> int:
    """Write the changed columns of stored papers, one executemany per set of columns."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for paper in papers:
        names = paper.changed()
        if paper.id is None or not names:
            continue
        params = {f"v_{name}": getattr(paper, name) for name in names}
        params["k_id"] = paper.id
        groups.setdefault(names, []).append(params)
        paper.mark_saved()
    for names, rows in groups.items():
        statement = (
            update(PAPERS)
            .where(PAPERS.c.id == bindparam("k_id"))
            .values({name: bindparam(f"v_{name}") for name in names})
        )
        conn.execute(statement, rows)
    return sum(len(rows) for rows in groups.values())
