"""Paper rows below the ORM, for ingest: read, inserted and updated a chunk at a time.

Ingest touches tens of thousands of papers per file. Building an ORM object per
record and letting the session flush them was most of its time, so ingest
works on `StoredPaper`, a plain slotted object with the ``papers`` columns. New
papers go in with one executemany per chunk (on SQLite as driver-level tuples,
converted by the columns' own bind processors; on PostgreSQL as Core's
``INSERT ... RETURNING id``), changed ones with one executemany ``UPDATE`` per set
of changed columns.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import date, datetime
from functools import cache
from json.encoder import encode_basestring_ascii
from operator import attrgetter
from typing import Any

from sqlalchemy import JSON, Text, any_, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql import Select

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
# what newsletter.issue.relevance scores a paper by
_SCORED_TEXT = frozenset({"title", "abstract"})
_MUTABLE = COLUMNS[1:]  # everything but the id may change on a merge
_MUTABLE_VALUES = attrgetter(*_MUTABLE)  # a paper's values as one tuple, in C
# the columns whose values are lists or dicts (copied when saved, so a change in place shows)
_CONTAINERS = tuple(i for i, name in enumerate(_MUTABLE) if name in ("authors", "seen_in", "extra"))


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

    def __init__(  # every column spelled out: a new paper per record, built fast
        self,
        *,
        id: Any = None,
        title: Any = None,
        authors: Any = None,
        abstract: Any = None,
        source: Any = None,
        kind: Any = None,
        published: Any = None,
        url: Any = None,
        journal: Any = None,
        doi: Any = None,
        arxiv_id: Any = None,
        pmid: Any = None,
        pmcid: Any = None,
        title_key: Any = None,
        seen_in: Any = None,
        published_version_id: Any = None,
        published_doi: Any = None,
        extra: Any = None,
        first_seen: Any = None,
        updated_at: Any = None,
    ) -> None:
        self.id = id
        self.title = title
        self.authors = authors
        self.abstract = abstract
        self.source = source
        self.kind = kind
        self.published = published
        self.url = url
        self.journal = journal
        self.doi = doi
        self.arxiv_id = arxiv_id
        self.pmid = pmid
        self.pmcid = pmcid
        self.title_key = title_key
        self.seen_in = seen_in
        self.published_version_id = published_version_id
        self.published_doi = published_doi
        self.extra = extra
        self.first_seen = first_seen
        self.updated_at = updated_at
        self._saved = None

    @classmethod
    def loaded(cls, row: Any) -> StoredPaper:
        paper = cls.__new__(cls)
        for name, value in zip(COLUMNS, row, strict=True):
            setattr(paper, name, value)
        paper.mark_saved()
        return paper

    def values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _MUTABLE}

    def mark_saved(self) -> None:
        # lists and dicts are replaced, never changed in place, by the merger;
        # copies keep a change in place from going unnoticed all the same
        saved = list(_MUTABLE_VALUES(self))
        for at in _CONTAINERS:
            saved[at] = _copy(saved[at])
        self._saved = tuple(saved)

    def changed(self) -> tuple[str, ...]:
        """The columns that differ from the stored row (all of them for a new paper)."""
        if self._saved is None:
            return _MUTABLE
        now = _MUTABLE_VALUES(self)
        if now == self._saved:  # the common case (an unchanged paper): one comparison
            return ()
        return tuple(
            name for name, old, new in zip(_MUTABLE, self._saved, now, strict=True) if new != old
        )


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


@cache
def _matching(dialect: str, column: str) -> Select[Any]:
    """The query for papers whose ``column`` is in a list: built once, compiled once.

    The list is one parameter (a JSON array on SQLite, an array on PostgreSQL), not
    one placeholder per value: an expanding ``IN`` is compiled again for every
    length of list, which cost more than the query. Both use the column's index.
    """
    wanted: Any
    if dialect == "postgresql":
        wanted = any_(bindparam("wanted", type_=ARRAY(Text)))
        where = PAPERS.c[column] == wanted
    else:
        each = func.json_each(bindparam("wanted")).table_valued("value")
        where = PAPERS.c[column].in_(select(each.c.value))
    return select(*(PAPERS.c[name] for name in COLUMNS)).where(where)


def read_matching(conn: Connection, column: str, values: Iterable[str]) -> list[StoredPaper]:
    """The stored papers whose ``column`` is one of ``values``."""
    wanted = list(values)
    postgres = conn.dialect.name == "postgresql"
    query = _matching(conn.dialect.name, column)
    found: list[StoredPaper] = []
    for start in range(0, len(wanted), 500):
        part = wanted[start : start + 500]
        rows = conn.execute(query, {"wanted": part if postgres else json.dumps(part)})
        found.extend(StoredPaper.loaded(row) for row in rows)
    return found


@cache
def _bind_processors(dialect: Dialect) -> tuple[Callable[[Any], Any] | None, ...]:
    """How SQLAlchemy turns each column's Python value into the driver's (JSON, dates)."""
    return tuple(
        PAPERS.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in COLUMNS
    )


def _json_strings(value: Any) -> str | None:
    """``json.dumps`` of a list of strings (what SQLAlchemy's JSON type would write); else None."""
    if type(value) is not list:
        return None
    for item in value:
        if type(item) is not str:
            return None
    return "[" + ", ".join(map(encode_basestring_ascii, value)) + "]"


@cache
def _plain_json(dialect: Dialect) -> tuple[bool, ...]:
    """Per column: does SQLAlchemy write it as plain ``json.dumps`` text on this dialect?"""
    return tuple(
        isinstance(PAPERS.c[name].type, JSON)
        and getattr(dialect, "_json_serializer", None) is None
        and JSON()._str_impl.bind_processor(dialect) is None
        for name in COLUMNS
    )


def _converter(process: Callable[[Any], Any], plain_json: bool) -> Callable[[Any], Any]:
    """``process`` for one chunk, done once per distinct value (and a list of strings fast).

    A chunk's papers share their first-seen and updated times (one object), and
    many share a publication date; authors and sources seen are lists of strings.
    """
    done: dict[Any, Any] = {}

    def convert(value: Any) -> Any:
        if plain_json:
            text = _json_strings(value)
            return text if text is not None else process(value)
        # dates by value; anything else (an aware datetime equals others in other zones,
        # but is written as it is) only when it is the very same object
        key = value if type(value) is date else (type(value), id(value))
        if key not in done:
            done[key] = (value, process(value))  # the value kept, so its id stays its own
        return done[key][1]

    return convert


def _driver_rows(dialect: Dialect, papers: list[StoredPaper]) -> list[tuple[Any, ...]]:
    """The papers' rows (id first) as the driver takes them, converted as Core would."""
    processors = _bind_processors(dialect)
    plain_json = _plain_json(dialect)
    converting = [
        (at, _converter(process, plain_json[at]))
        for at, process in enumerate(processors)
        if process is not None
    ]
    rows = []
    for paper in papers:
        row = [paper.id, *_MUTABLE_VALUES(paper)]
        for at, convert in converting:
            row[at] = convert(row[at])
        rows.append(tuple(row))
    return rows


_SQLITE_INSERT = (
    f"INSERT INTO {PAPERS.name} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"  # noqa: S608 - constant names
)


def insert_new(conn: Connection, papers: list[StoredPaper]) -> None:
    """Insert papers that have no id yet, in one statement; sets their ids."""
    if not papers:
        return
    if conn.dialect.name == "sqlite":
        # The transaction holds SQLite's write lock (BEGIN IMMEDIATE), so nobody else
        # inserts until it ends: number the rows here and insert them with a plain
        # executemany. (RETURNING in insertmanyvalues mode runs one statement per
        # row on SQLite to keep the order, which cost more than the insert itself.)
        # The rows go to the driver as tuples, converted once per value with the
        # columns' own bind processors: Core's per-row parameter handling cost more
        # than the insert without its triggers.
        last = conn.execute(select(func.max(PAPERS.c.id))).scalar() or 0
        for number, paper in enumerate(papers, start=last + 1):
            paper.id = number
        conn.exec_driver_sql(_SQLITE_INSERT, _driver_rows(conn.dialect, papers))
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
        values: dict[str, Any] = {name: bindparam(f"v_{name}") for name in names}
        if _SCORED_TEXT.intersection(names):
            # a new title or abstract (one that arrived later, say) is scored again
            values["relevance_key"] = None
        statement = update(PAPERS).where(PAPERS.c.id == bindparam("k_id")).values(values)
        conn.execute(statement, rows)
    return sum(len(rows) for rows in groups.values())
