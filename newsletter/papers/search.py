"""Searching the stored papers: full text, filters, sort and pages.

Full text runs on the database's own engine: SQLite FTS5 (the ``papers_fts``
table) or PostgreSQL text search (the ``paper_search`` table of m052). What a
reader types is read by `newsletter.papers.searchquery` (words, phrases, OR, never
SQL or FTS syntax) and the URL's parameters by `newsletter.papers.searchparams`.
Both engines stem English words (m100), so "radiographs" finds "radiograph".

Ranking every match of a very broad search (sixteen common words OR-ed match
every paper) costs a few microseconds per match and term, over a second at
100,000 papers; a relevance search with more matches than `rank_window` (10,000 for
up to four words, fewer for more) ranks that many of the most recently stored
ones, and the page says so (bench/search_bench.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Select, bindparam, column, func, literal_column, or_, select, table
from sqlalchemy.sql.elements import ColumnElement, UnaryExpression
from sqlalchemy.sql.operators import custom_op
from sqlmodel import Session, col

from newsletter.core.models import Paper
from newsletter.papers.searchparams import (
    PER_PAGE_CHOICES,
    SearchParams,
    parse_params,
)
from newsletter.papers.searchquery import ParsedQuery, fts5_match, parse_query, pg_tsquery

__all__ = [
    "PER_PAGE_CHOICES",
    "SearchPage",
    "SearchParams",
    "known_sources",
    "parse_params",
    "parse_query",
    "pg_tsquery",
    "rank_window",
    "search_papers",
]

RANK_LIMIT = 10_000
RANK_BUDGET = 40_000  # matches x words ranked at most: ranking costs per match and per word

_FTS = table("papers_fts", column("rowid"))
_PG_SEARCH = table("paper_search", column("paper_id"), column("document"))


@dataclass
class SearchPage:
    """One page of results, and what the page needs to say about it."""

    params: SearchParams
    papers: list[Paper]
    total: int
    notes: list[str] = field(default_factory=list)
    searched: bool = False  # the query had words to look for
    ranked: int | None = None  # relevance covers only this many of the matches (rank_window)

    @property
    def pages(self) -> int:
        shown = self.total if self.ranked is None else min(self.total, self.ranked)
        return max(1, math.ceil(shown / self.params.per_page))

    @property
    def beyond_last(self) -> bool:
        return self.total > 0 and self.params.page > self.pages

    @property
    def first_index(self) -> int:
        return (self.params.page - 1) * self.params.per_page + 1

    def page_links(self, around: int = 2) -> list[int | None]:
        """Page numbers to link to; None marks a gap (an ellipsis)."""
        current, last = min(self.params.page, self.pages), self.pages
        shown = {1, last, *range(max(1, current - around), min(last, current + around) + 1)}
        out: list[int | None] = []
        previous = 0
        for number in sorted(shown):
            if number - previous > 1:
                out.append(None)
            out.append(number)
            previous = number
        return out


def _order(params: SearchParams) -> tuple[Any, ...]:
    if params.effective_sort == "oldest":
        return (col(Paper.published).asc(), col(Paper.id).asc())
    return (col(Paper.published).desc(), col(Paper.id).desc())


def _has_filters(params: SearchParams, on_topic_only: bool = False) -> bool:
    return bool(params.source or params.kind or params.since or params.until or on_topic_only)


@dataclass(frozen=True)
class _Index:
    """The full-text index of one backend: its id column, a match and a rank (lower is better)."""

    table: Any
    id: ColumnElement[Any]
    match: ColumnElement[Any]
    rank: ColumnElement[Any]

    @classmethod
    def of(cls, parsed: ParsedQuery, dialect: str) -> _Index:
        if dialect == "sqlite":
            return cls(
                _FTS,
                _FTS.c.rowid,
                literal_column("papers_fts").op("MATCH")(bindparam("match", fts5_match(parsed))),
                literal_column("bm25(papers_fts, 10.0, 1.0, 4.0)"),
            )
        tsquery = pg_tsquery(parsed)
        return cls(
            _PG_SEARCH,
            _PG_SEARCH.c.paper_id,
            _PG_SEARCH.c.document.op("@@")(tsquery),
            # ts_rank, not ts_rank_cd: cover density costs 5-10x more per match (bench/)
            -func.ts_rank(_PG_SEARCH.c.document, tsquery),
        )


def _word_search(
    session: Session,
    params: SearchParams,
    parsed: ParsedQuery,
    result: SearchPage,
    on_topic_only: bool = False,
) -> list[int]:
    """Count the matches of a search with words into ``result``; return the page's ids.

    The words are matched in the full-text index (SQLite: the FTS5 table;
    PostgreSQL: the ``paper_search`` table of stored documents); filters and
    date order read the papers whose ids the index gave (``id IN (...)``, which
    both engines answer faster than a join). Relevance is ranked on the index
    alone, among the `rank_window` newest matches at most.
    """
    dialect = session.get_bind().dialect.name
    index = _Index.of(parsed, dialect)
    matching = select(index.id).where(index.match)
    paper_id = _walk_date_index(col(Paper.id), dialect)
    if _has_filters(params, on_topic_only):
        kept = _filtered(select(col(Paper.id)), params, dialect, on_topic_only)
        chosen = kept.where(paper_id.in_(matching))
        count = select(func.count()).select_from(chosen.subquery())
        # SQLite: `+rowid`, or FTS5 is handed the id list and runs the MATCH once per id
        matching = matching.where(_walk_date_index(index.id, dialect).in_(kept))
    else:
        chosen = select(col(Paper.id)).where(paper_id.in_(matching))
        count = select(func.count()).select_from(index.table).where(index.match)
    result.total = int(session.scalar(count) or 0)
    if result.total == 0:
        return []
    if params.effective_sort != "relevance":
        ordered = chosen.order_by(*_order(params))
    else:
        ranked = matching
        window = rank_window(parsed)
        if result.total > window:
            result.ranked = window
            floor = session.scalar(matching.order_by(index.id.desc()).limit(1).offset(window - 1))
            ranked = matching.where(index.id >= floor)
        ordered = ranked.order_by(index.rank, index.id.desc())  # ties: the paper stored last
    if result.beyond_last:
        return []
    offset = (params.page - 1) * params.per_page
    return [int(i) for i in session.scalars(ordered.limit(params.per_page).offset(offset))]


def rank_window(parsed: ParsedQuery) -> int:
    """How many of the newest matches a relevance search ranks: fewer for more words."""
    words = sum(len(t.words) for group in parsed.groups for t in group if not t.negated)
    return max(min(RANK_LIMIT, 1_000), min(RANK_LIMIT, RANK_BUDGET // max(1, words)))


def _walk_date_index(column: Any, dialect: str) -> ColumnElement[Any]:
    """``column`` as SQLite's ``+column``: no index is used for this term.

    With the full-text matches as an ``id IN (...)`` list, SQLite would otherwise
    look up each match's row by id (or by source, or kind) to learn its date, then
    sort them all: 0.4 s for a common word in one source at 100,000 papers.
    Without those indexes it walks the papers by date, reads only the rows whose
    id matched, and stops at the page's last paper (20-40 ms).
    """
    if dialect != "sqlite":
        return cast(ColumnElement[Any], column)
    return UnaryExpression(column, operator=custom_op("+"), type_=column.type)


def _filtered(
    stmt: Select[Any], params: SearchParams, dialect: str = "", on_topic_only: bool = False
) -> Select[Any]:
    def c(column: Any) -> ColumnElement[Any]:
        return _walk_date_index(column, dialect)

    if on_topic_only:
        # papers scored off-topic stay out of the public archive (not yet scored: shown)
        stmt = stmt.where(or_(col(Paper.on_topic).is_(None), col(Paper.on_topic).is_(True)))
    if params.source:
        stmt = stmt.where(c(col(Paper.source)) == params.source)
    if params.kind:
        stmt = stmt.where(c(col(Paper.kind)) == params.kind)
    if params.since:
        stmt = stmt.where(c(col(Paper.published)) >= params.since)
    if params.until:
        stmt = stmt.where(c(col(Paper.published)) <= params.until)
    return stmt


def search_papers(
    session: Session, params: SearchParams, *, on_topic_only: bool = False
) -> SearchPage:
    """One page of the papers that match ``params``, in the order asked for.

    ``on_topic_only`` leaves out the papers scored below the relevance floor (the
    public archive; `newsletter.issue.relevance` scores them).
    """
    parsed, notes = parse_query(params.q)
    if params.q and parsed.empty:
        if not notes:
            notes.append("Your search has no words in it to look for.")
        return SearchPage(params=params, papers=[], total=0, notes=notes)
    result = SearchPage(params=params, papers=[], total=0, notes=notes, searched=not parsed.empty)
    if parsed.empty:
        ids = _filtered(select(col(Paper.id)), params, "", on_topic_only)
        result.total = int(session.scalar(select(func.count()).select_from(ids.subquery())) or 0)
        page_ids = []
        if result.total and not result.beyond_last:
            offset = (params.page - 1) * params.per_page
            ordered = ids.order_by(*_order(params)).limit(params.per_page).offset(offset)
            page_ids = [int(i) for i in session.scalars(ordered)]
    else:
        page_ids = _word_search(session, params, parsed, result, on_topic_only)
    if (
        result.total == 0
        and not parsed.empty
        and session.get_bind().dialect.name == "postgresql"
        and not session.scalar(select(func.numnode(pg_tsquery(parsed))))
    ):
        notes.append(
            "Words like 'the' and 'of' are too common to search for: try a more specific word."
        )
    if result.ranked is not None:
        notes.append(
            f"{result.total:,} papers match: the {result.ranked:,} most recently added are"
            " ranked by relevance here. Add words to narrow the search, or sort by date to"
            " page through all of them."
        )
    rows = {p.id: p for p in session.scalars(select(Paper).where(col(Paper.id).in_(page_ids)))}
    result.papers = [rows[i] for i in page_ids if i in rows]
    return result


def known_sources(session: Session) -> list[str]:
    """The sources of the stored papers, for the filter's choices."""
    rows = session.scalars(select(col(Paper.source)).distinct().order_by(col(Paper.source)))
    return [str(r) for r in rows]
