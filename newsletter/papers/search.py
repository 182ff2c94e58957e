"""Searching the stored papers: full text, filters, sort and pages.

Full text runs on the database's own engine: SQLite FTS5 (the ``papers_fts``
table) or PostgreSQL text search (the ``paper_search`` table of m052). What a
reader types is never SQL and never FTS syntax: `parse_query` reads it as
words, "quoted phrases", ``-excluded`` words, ``prefix*`` words and ``OR``, and
each word or phrase reaches the database as a bound parameter (FTS5: a quoted
string; PostgreSQL: ``phraseto_tsquery``, or ``to_tsquery`` of letters and
digits only for a prefix). Anything else a reader can type is dropped, and the
page says so. Both engines stem English words (m100), so "radiographs" finds
"radiograph".

Ranking every match of a very broad search (sixteen common words OR-ed match
every paper) costs a few microseconds per match and term, over a second at
100,000 papers; a relevance search with more matches than `rank_window` (10,000 for
up to four words, fewer for more) ranks that many of the most recently stored
ones, and the page says so (bench/search_bench.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Literal, cast
from urllib.parse import urlencode

from sqlalchemy import Select, bindparam, column, func, literal_column, or_, select, table
from sqlalchemy.sql.elements import ColumnElement, UnaryExpression
from sqlalchemy.sql.operators import custom_op
from sqlmodel import Session, col

from newsletter.core.models import Paper, PaperKind

Sort = Literal["newest", "oldest", "relevance"]
SORTS: tuple[Sort, ...] = ("newest", "oldest", "relevance")
PER_PAGE_CHOICES = (10, 25, 50)
DEFAULT_PER_PAGE = 10
MAX_QUERY_CHARS = 500
MAX_TERMS = 16
MAX_PAGE = 1_000_000
RANK_LIMIT = 10_000
RANK_BUDGET = 40_000  # matches x words ranked at most: ranking costs per match and per word
MIN_PREFIX = 2

_TOKEN = re.compile(r"[^\W_]+")
_PIECE = re.compile(r'(-?)"([^"]*)"?|(\S+)')
_SOURCE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,39}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_FTS = table("papers_fts", column("rowid"))
_PG_SEARCH = table("paper_search", column("paper_id"), column("document"))
_PG_CONFIG: ColumnElement[Any] = literal_column("'english'::regconfig")


# --- the query language ----------------------------------------------------


@dataclass(frozen=True)
class Term:
    """A word, or a phrase of words that must appear together; maybe excluded."""

    words: tuple[str, ...]
    negated: bool = False
    raw: str = ""  # as typed (PostgreSQL parses it as it parsed the papers: "x-ray")
    prefix: bool = False  # the last word is the start of a word (typed as ``mammo*``)

    @property
    def text(self) -> str:
        return " ".join(self.words)


@dataclass(frozen=True)
class ParsedQuery:
    """Alternatives (``OR``), each a list of terms that must all match."""

    groups: tuple[tuple[Term, ...], ...] = ()

    @property
    def empty(self) -> bool:
        return not self.groups


def parse_query(raw: str) -> tuple[ParsedQuery, list[str]]:
    """Read a reader's search as words, phrases, exclusions and OR; never fails.

    Returns the query and notes on what was left out (for the page to show).
    """
    notes: list[str] = []
    if len(raw) > MAX_QUERY_CHARS:
        raw = raw[:MAX_QUERY_CHARS]
        notes.append(
            f"Your search was long: only its first {MAX_QUERY_CHARS} characters were used."
        )
    groups: list[list[Term]] = [[]]
    count = 0
    dropped_terms = short_prefix = False
    for match in _PIECE.finditer(raw):
        negated_phrase, phrase, word = match.groups()
        if word == "OR":
            groups.append([])
            continue
        negated = bool(negated_phrase)
        if word is not None:
            negated = word.startswith("-") and len(word) > 1
            phrase = word[1:] if negated else word
        words = tuple(w.lower() for w in _TOKEN.findall(phrase or ""))
        if not words:
            continue
        prefix = word is not None and word.endswith("*") and bool(_TOKEN.search(word[-2:]))
        if prefix and len(words[-1]) < MIN_PREFIX:
            prefix, short_prefix = False, True
        term = Term(
            words=words[:MAX_TERMS], negated=negated, raw=clean_text(phrase or ""), prefix=prefix
        )
        if term not in groups[-1]:  # "mri mri": the same work twice
            groups[-1].append(term)
    unique: list[list[Term]] = []
    for group in groups:
        if group not in unique:  # "mri OR mri"
            unique.append(group)
    groups = []
    for group in unique:
        groups.append([])
        for term in group:
            if count >= MAX_TERMS:
                dropped_terms = True
                continue
            count += 1
            groups[-1].append(term)
    if short_prefix:
        notes.append(
            f"A word ending in * needs at least {MIN_PREFIX} letters before the *;"
            " shorter ones were searched as whole words."
        )
    if dropped_terms:
        notes.append(f"Only the first {MAX_TERMS} words or phrases of your search were used.")
    kept: list[tuple[Term, ...]] = []
    for group in groups:
        if group and any(not t.negated for t in group):
            kept.append(tuple(group))
        elif group:
            notes.append(
                "A search made only of excluded words (-word) finds nothing: add a word to look for."
            )
    return ParsedQuery(tuple(kept)), notes


def _fts_string(term: Term) -> str:
    return '"' + term.text.replace('"', '""') + '"' + (" *" if term.prefix else "")


def fts5_match(query: ParsedQuery) -> str:
    """The FTS5 MATCH expression: every word and phrase a quoted string."""
    alternatives = []
    for group in query.groups:
        wanted = " ".join(_fts_string(t) for t in group if not t.negated)
        unwanted = "".join(f" NOT {_fts_string(t)}" for t in group if t.negated)
        alternatives.append(f"({wanted}){unwanted}")
    return " OR ".join(alternatives)


def pg_tsquery(query: ParsedQuery) -> ColumnElement[Any]:
    """The PostgreSQL tsquery: each word or phrase a bound parameter of phraseto_tsquery.

    A prefix term is ``to_tsquery`` of its words (letters and digits only, so no
    tsquery operator can reach it from a reader) joined by ``<->``, the last with ``:*``.
    """
    result: ColumnElement[Any] | None = None
    for group in query.groups:
        wanted: ColumnElement[Any] | None = None
        for term in group:
            piece: ColumnElement[Any]
            if term.prefix:
                piece = func.to_tsquery(_PG_CONFIG, " <-> ".join(term.words) + ":*")
            else:
                piece = func.phraseto_tsquery(_PG_CONFIG, term.raw or term.text)
            if term.negated:
                piece = func.tsquery_not(piece)
            wanted = piece if wanted is None else func.tsquery_and(wanted, piece)
        assert wanted is not None
        result = wanted if result is None else func.tsquery_or(result, wanted)
    assert result is not None, "an empty query has no tsquery"
    return result


# --- the parameters of a search (all of them live in the URL) ---------------


@dataclass(frozen=True)
class SearchParams:
    """What a reader asked for. `query_string` turns it back into a URL."""

    q: str = ""
    source: str = ""
    kind: str = ""
    since: date | None = None
    until: date | None = None
    sort: Sort | None = None  # None: relevance with a query, newest without
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE

    @property
    def effective_sort(self) -> Sort:
        if self.sort == "relevance" and not self.q.strip():
            return "newest"
        return self.sort or ("relevance" if self.q.strip() else "newest")

    @property
    def filtered(self) -> bool:
        return bool(self.q.strip() or self.source or self.kind or self.since or self.until)

    def query_string(self, **changes: Any) -> str:
        """``?q=...`` for these parameters with ``changes``; defaults left out."""
        params = replace(self, **changes)
        pairs: list[tuple[str, str]] = []
        if params.q:
            pairs.append(("q", params.q))
        for name in ("source", "kind"):
            if getattr(params, name):
                pairs.append((name, getattr(params, name)))
        for name in ("since", "until"):
            value = getattr(params, name)
            if value is not None:
                pairs.append((name, value.isoformat()))
        if params.sort:
            pairs.append(("sort", params.sort))
        if params.per_page != DEFAULT_PER_PAGE:
            pairs.append(("per_page", str(params.per_page)))
        if params.page != 1:
            pairs.append(("page", str(params.page)))
        return "?" + urlencode(pairs) if pairs else "?"


def clean_text(value: str) -> str:
    """A reader's text without control characters (NUL included)."""
    return _CONTROL.sub("", value)


def _int(value: str) -> int | None:
    value = value.strip()
    if not value.isascii() or not value.isdigit():
        return None
    return int(value) if len(value) <= 9 else MAX_PAGE


def _date(value: str) -> date | None:
    try:
        return date.fromisoformat(value.strip()) if value.isascii() else None
    except ValueError:
        return None


def parse_params(query: Mapping[str, str]) -> tuple[SearchParams, list[str]]:
    """Read the URL's parameters; anything unusable is dropped with a note, never an error."""
    notes: list[str] = []
    q = clean_text(query.get("q", "")).strip()
    source = clean_text(query.get("source", "")).strip().lower()
    if source and not _SOURCE.match(source):
        notes.append("That source name is not one Slice knows; showing every source.")
        source = ""
    kind = clean_text(query.get("kind", "")).strip().lower()
    if kind and kind not in {k.value for k in PaperKind}:
        notes.append("Kind can be 'paper' (peer-reviewed) or 'preprint'; showing both.")
        kind = ""
    dates: dict[str, date | None] = {}
    for name in ("since", "until"):
        raw = clean_text(query.get(name, "")).strip()
        dates[name] = _date(raw) if raw else None
        if raw and dates[name] is None:
            notes.append(f"'{name}' needs a date like 2025-06-09; it was left out.")
    since, until = dates["since"], dates["until"]
    if since and until and since > until:
        since, until = until, since
        notes.append("The dates were the wrong way round; they have been swapped.")
    sort_raw = clean_text(query.get("sort", "")).strip().lower()
    sort: Sort | None = None
    for candidate in SORTS:
        if sort_raw == candidate:
            sort = candidate
    if sort_raw and sort is None:
        notes.append("Results can be sorted by newest, oldest or relevance; using the default.")
    page = 1
    if (raw_page := query.get("page", "").strip()) != "":
        parsed = _int(raw_page)
        if parsed is None or parsed < 1:
            notes.append("The page number was not a number; showing the first page.")
        else:
            page = parsed
    per_page = DEFAULT_PER_PAGE
    if (raw_per := query.get("per_page", "").strip()) != "":
        chosen = _int(raw_per)
        if chosen in PER_PAGE_CHOICES:
            per_page = chosen
        else:
            notes.append("Results come 10, 25 or 50 to a page; showing 10.")
    params = SearchParams(
        q=q,
        source=source,
        kind=kind,
        since=since,
        until=until,
        sort=sort,
        page=page,
        per_page=per_page,
    )
    return params, notes


# --- running a search ------------------------------------------------------


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
        matching = matching.where(index.id.in_(kept))
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
