"""The archive's query language: what a reader types, read as words, phrases and OR.

What a reader types is never SQL and never FTS syntax: `parse_query` reads it as
words, "quoted phrases", ``-excluded`` words, ``prefix*`` words and ``OR``, and
each word or phrase reaches the database as a bound parameter (FTS5: a quoted
string, `fts5_match`; PostgreSQL: ``phraseto_tsquery``, or ``to_tsquery`` of letters
and digits only for a prefix, `pg_tsquery`). Anything else a reader can type is
dropped, and the page says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, literal_column
from sqlalchemy.sql.elements import ColumnElement

MAX_QUERY_CHARS = 500
MAX_TERMS = 16
MIN_PREFIX = 2

_TOKEN = re.compile(r"[^\W_]+")
_PIECE = re.compile(r'(-?)"([^"]*)"?|(\S+)')
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_PG_CONFIG: ColumnElement[Any] = literal_column("'english'::regconfig")


def clean_text(value: str) -> str:
    """A reader's text without control characters (NUL included)."""
    return _CONTROL.sub("", value)


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
