"""Searching the stored papers: full text, filters, sort and pages.

Full text runs on the database's own engine: SQLite FTS5 (the ``papers_fts``
table) or PostgreSQL text search (the ``paper_search`` table of m052). What a
reader types is never SQL and never FTS syntax: `parse_query` reads it as
words, "quoted phrases", ``-excluded`` words and ``OR``, and each word or
phrase reaches the database as a bound parameter (FTS5: a quoted string;
PostgreSQL: ``phraseto_tsquery``). Anything else a reader can type is dropped,
and the page says so.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Literal
from urllib.parse import urlencode

from sqlalchemy import Select, bindparam, column, func, literal_column, or_, select, table
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col

from newsletter.core.models import Paper, PaperKind

Sort = Literal["newest", "oldest", "relevance"]
SORTS: tuple[Sort, ...] = ("newest", "oldest", "relevance")
PER_PAGE_CHOICES = (10, 25, 50)
DEFAULT_PER_PAGE = 10
MAX_QUERY_CHARS = 500
MAX_TERMS = 16
MAX_PAGE = 1_000_000

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
    dropped_terms = False
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
        if count >= MAX_TERMS:
            dropped_terms = True
            continue
        count += 1
        raw_text = clean_text(phrase or "")
        groups[-1].append(Term(words=words[:MAX_TERMS], negated=negated, raw=raw_text))
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
    return '"' + term.text.replace('"', '""') + '"'


def fts5_match(query: ParsedQuery) -> str:
    """The FTS5 MATCH expression: every word and phrase a quoted string."""
    alternatives = []
    for group in query.groups:
        wanted = " ".join(_fts_string(t) for t in group if not t.negated)
        unwanted = "".join(f" NOT {_fts_string(t)}" for t in group if t.negated)
        alternatives.append(f"({wanted}){unwanted}")
    return " OR ".join(alternatives)


def pg_tsquery(query: ParsedQuery) -> ColumnElement[Any]:
    """The PostgreSQL tsquery: each word or phrase a bound parameter of phraseto_tsquery."""
    result: ColumnElement[Any] | None = None
    for group in query.groups:
        wanted: ColumnElement[Any] | None = None
        for term in group:
            piece: ColumnElement[Any] = func.phraseto_tsquery(_PG_CONFIG, term.raw or term.text)
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

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.params.per_page))

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


def _order(params: SearchParams, rank: ColumnElement[Any] | None) -> tuple[Any, ...]:
    if params.effective_sort == "relevance" and rank is not None:
        return (rank, col(Paper.published).desc(), col(Paper.id).desc())
    if params.effective_sort == "oldest":
        return (col(Paper.published).asc(), col(Paper.id).asc())
    return (col(Paper.published).desc(), col(Paper.id).desc())


def _index_plan(
    params: SearchParams, parsed: ParsedQuery, dialect: str, on_topic_only: bool = False
) -> tuple[Select[Any], Select[Any], tuple[Any, ...]]:
    """(ids of the matches, their count, their order) for a search with words.

    The words are matched in the full-text index (SQLite: the FTS5 table;
    PostgreSQL: the ``paper_search`` table of stored documents). A search with
    no other filter ranks and counts on the index alone and never reads a
    paper's row (the page's rows are read afterwards); with filters it joins the
    papers, still carrying only ids.
    """
    index_id: ColumnElement[Any]
    if dialect == "sqlite":
        index: Any = _FTS
        index_id = _FTS.c.rowid
        match: ColumnElement[Any] = literal_column("papers_fts").op("MATCH")(
            bindparam("match", fts5_match(parsed))
        )
        rank: ColumnElement[Any] = literal_column("bm25(papers_fts, 10.0, 1.0, 4.0)")
    else:
        index, index_id = _PG_SEARCH, _PG_SEARCH.c.paper_id
        tsquery = pg_tsquery(parsed)
        match = _PG_SEARCH.c.document.op("@@")(tsquery)
        rank = -func.ts_rank_cd(_PG_SEARCH.c.document, tsquery)
    joined = _filtered(
        select(col(Paper.id)).join(index, index_id == Paper.id).where(match), params, on_topic_only
    )
    if params.source or params.kind or params.since or params.until or on_topic_only:
        count = select(func.count()).select_from(joined.subquery())
        return joined, count, _order(params, rank)
    count = select(func.count()).select_from(index).where(match)
    if params.effective_sort == "relevance":  # ties: the paper stored last first
        return select(index_id).where(match), count, (rank, index_id.desc())
    return joined, count, _order(params, rank)


def _filtered(stmt: Select[Any], params: SearchParams, on_topic_only: bool = False) -> Select[Any]:
    if on_topic_only:
        # papers scored off-topic stay out of the public archive (not yet scored: shown)
        stmt = stmt.where(or_(col(Paper.on_topic).is_(None), col(Paper.on_topic).is_(True)))
    if params.source:
        stmt = stmt.where(col(Paper.source) == params.source)
    if params.kind:
        stmt = stmt.where(col(Paper.kind) == params.kind)
    if params.since:
        stmt = stmt.where(col(Paper.published) >= params.since)
    if params.until:
        stmt = stmt.where(col(Paper.published) <= params.until)
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
    dialect = session.get_bind().dialect.name
    if parsed.empty:
        ids = _filtered(select(col(Paper.id)), params, on_topic_only)
        count = select(func.count()).select_from(ids.subquery())
        order = _order(params, None)
    else:
        ids, count, order = _index_plan(params, parsed, dialect, on_topic_only)

    total = int(session.scalar(count) or 0)
    if (
        total == 0
        and dialect == "postgresql"
        and not parsed.empty
        and not session.scalar(select(func.numnode(pg_tsquery(parsed))))
    ):
        notes.append(
            "Words like 'the' and 'of' are too common to search for: try a more specific word."
        )
    result = SearchPage(
        params=params, papers=[], total=total, notes=notes, searched=not parsed.empty
    )
    if total == 0 or result.beyond_last:
        return result
    ordered = ids.order_by(*order)
    page_ids = [
        int(i)
        for i in session.scalars(
            ordered.limit(params.per_page).offset((params.page - 1) * params.per_page)
        )
    ]
    rows = {p.id: p for p in session.scalars(select(Paper).where(col(Paper.id).in_(page_ids)))}
    result.papers = [rows[i] for i in page_ids if i in rows]
    return result


def known_sources(session: Session) -> list[str]:
    """The sources of the stored papers, for the filter's choices."""
    rows = session.scalars(select(col(Paper.source)).distinct().order_by(col(Paper.source)))
    return [str(r) for r in rows]
