"""How well a paper fits the profile: words, weighted terms and BM25."""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property, lru_cache
from typing import Protocol

from newsletter.papers.text import plain_text

_TOKEN = re.compile(r"[0-9a-z]+(?:[-'][0-9a-z]+)*")
# The pieces of `_TOKEN`'s words split at their hyphens, found in one pass (in C): a hyphen
# ends a piece, an apostrophe between letters does not ("x-ray's" -> "x", "ray's").
_PIECE = re.compile(r"[0-9a-z]+(?:'[0-9a-z]+)*")


@lru_cache(maxsize=65536)
def _norm(token: str) -> str:
    if len(token) >= 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


def tokens(text: str) -> list[str]:
    """Lower-case word tokens, a plural ``s`` dropped; hyphenated words also split."""
    return list(map(_norm, _PIECE.findall(text.lower())))


class PaperText(Protocol):
    """What scoring and selection read of a paper: a stored `Paper` or a plain row of it."""

    @property
    def id(self) -> int | None: ...
    @property
    def title(self) -> str: ...
    @property
    def abstract(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def published(self) -> date: ...
    @property
    def published_version_id(self) -> int | None: ...


def paper_tokens(paper: PaperText) -> list[str]:
    """The words the scorer reads: the title twice, then the abstract."""
    return text_tokens(paper.title, paper.abstract)


def text_tokens(title: str, abstract: str) -> list[str]:
    """`paper_tokens` of a stored title and abstract."""
    words = tokens(plain_text(title))
    return words + words + tokens(plain_text(abstract))


@dataclass(frozen=True)
class Term:
    """One profile term: a word, a phrase or a prefix (``radiolog*``)."""

    text: str
    weight: float
    words: tuple[str, ...]
    prefix: bool

    @classmethod
    def parse(cls, text: str, weight: float) -> Term:
        prefix = text.strip().endswith("*")
        words = tuple(tokens(text.strip().rstrip("*")))
        if prefix and words:
            # the last word is a prefix: keep it as written, not de-pluralized
            last = _TOKEN.findall(text.lower().rstrip("*"))[-1].split("-")[-1]
            words = (*words[:-1], last)
        return cls(text.strip(), weight, words, prefix)

    def count(self, words: Sequence[str]) -> int:
        """How often the term occurs in ``words``."""
        return self.count_in(Doc.of(words))

    def count_in(self, doc: Doc) -> int:
        """How often the term occurs in an indexed document.

        Substring searches on the document's joined words (done in C) answer most
        documents, which hold no form of the term, without a Python loop.
        """
        found = doc.found.get(self.text)
        if found is None:
            found = doc.found[self.text] = self._count_in(doc)
        return found

    def _count_in(self, doc: Doc) -> int:
        if not self.words:
            return 0
        *lead, last = self.words
        if not lead:
            if self.prefix:
                if " " + last not in doc.text:
                    return 0
                return sum(n for w, n in doc.counts.items() if w.startswith(last))
            return doc.counts.get(last, 0)
        if lead[0] not in doc.counts:
            return 0  # a phrase whose first word is missing: no need to join the words
        phrase = " " + " ".join(self.words)
        if phrase not in doc.text:
            return 0
        if not self.prefix:
            return doc.text.count(phrase + " ")
        return len(re.findall(re.escape(phrase) + r"\S*", doc.text))


class Doc:
    """A tokenized text with its word counts, and its words joined (for phrase searches)."""

    def __init__(self, words: Sequence[str]) -> None:
        self.words = words
        self.counts = Counter(words)
        self._text: str | None = None
        self.found: dict[str, int] = {}  # each term's count, once counted (by its text)

    @classmethod
    def of(cls, words: Sequence[str]) -> Doc:
        return cls(words)

    @property
    def text(self) -> str:
        """The words joined by single spaces, with a space at each end."""
        if self._text is None:
            self._text = " " + " ".join(self.words) + " "
        return self._text


# --- the scorer ---------------------------------------------------------------

BM25_K1 = 1.2
BM25_B = 0.75


@dataclass(frozen=True)
class ScorePart:
    """One reason for a score: a term, recency or the editor model, and what it added."""

    label: str
    points: float


@dataclass
class Scored:
    """A candidate with its score and how it got it."""

    paper: PaperText
    score: float = 0.0
    parts: list[ScorePart] = field(default_factory=list)
    status: str = "candidate"  # selected, pinned, excluded, capped, unmatched, below
    reason: str = ""

    @property
    def paper_id(self) -> int:
        assert self.paper.id is not None
        return self.paper.id


@dataclass(frozen=True)
class Profile:
    """The relevance profile, parsed: weighted terms, exclusions and the floor."""

    terms: tuple[Term, ...]
    exclude: tuple[Term, ...]
    recency_weight: float = 0.1
    required: tuple[Term, ...] = ()
    min_score: float = 0.0

    @classmethod
    def from_settings(
        cls,
        terms: Mapping[str, float],
        exclude: Iterable[str],
        recency_weight: float,
        *,
        required: Iterable[str] = (),
        min_score: float = 0.0,
    ) -> Profile:
        return cls(
            tuple(Term.parse(t, w) for t, w in terms.items() if tokens(t)),
            tuple(Term.parse(t, 1.0) for t in exclude if tokens(t)),
            recency_weight,
            tuple(Term.parse(t, 1.0) for t in required if tokens(t)),
            min_score,
        )

    @cached_property
    def key(self) -> str:
        """Names what the stored relevance depends on: a changed profile scores again."""
        parts = [f"{t.text}={t.weight}" for t in self.terms]
        parts += [f"-{t.text}" for t in self.exclude] + [f"+{t.text}" for t in self.required]
        parts.append(f">={self.min_score}")
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]

    def floor_points(self, title: Doc, abstract: Doc) -> float:
        """What the floor compares with ``min_score``: each matching term's weight, halved
        when only the abstract has it. No IDF, so the floor means the same in a store of
        nothing but radiology (where BM25's IDF of "radiology" is near zero) as in a mixed one.
        """
        points = 0.0
        for term in self.terms:
            if term.count_in(title):
                points += term.weight
            elif term.count_in(abstract):
                points += term.weight / 2
        return points

    def off_topic(self, title: Doc, abstract: Doc) -> str:
        """Why a paper does not clear the floor, or "" when it does."""
        if self.required and not any(
            t.count_in(title) or t.count_in(abstract) for t in self.required
        ):
            shown = ", ".join(f'"{t.text}"' for t in self.required[:4])
            more = ", ..." if len(self.required) > 4 else ""
            return f"off-topic: none of the required terms ({shown}{more})"
        if self.min_score:
            points = self.floor_points(title, abstract)
            if points < self.min_score:
                return (
                    f"below the floor: its terms are worth {points:g} < min_score "
                    f"{self.min_score:g} (a term's weight in the title, half in the abstract)"
                )
        return ""


@dataclass
class CorpusStats:
    """The store's document count, total length and each term's document frequency.

    BM25's IDF comes from these (the whole store), not from one week's candidates,
    so a term common this week still counts as rare if it is rare overall.
    """

    docs: int = 0
    length: int = 0
    df: dict[str, int] = field(default_factory=dict)

    def add(self, length: int, hit_terms: Iterable[str]) -> None:
        self.docs += 1
        self.length += length
        for text in hit_terms:
            self.df[text] = self.df.get(text, 0) + 1


def term_counts(profile: Profile, title: Doc, abstract: Doc) -> list[tuple[int, int]]:
    """How often each of the profile's terms occurs in the title and in the abstract."""
    return [(t.count_in(title), t.count_in(abstract)) for t in profile.terms]


@dataclass(frozen=True)
class Bm25:
    """What BM25 needs of the corpus: each profile term's IDF, and the average length."""

    profile: Profile
    idf: tuple[float, ...]
    avg_len: float

    @classmethod
    def of(
        cls,
        profile: Profile,
        stats: CorpusStats | None,
        counts: Mapping[int, Sequence[tuple[int, int]]] | None = None,
        lengths: Mapping[int, int] | None = None,
    ) -> Bm25:
        """From ``stats`` (the whole store) when it has documents, else from the documents
        themselves (``counts`` of each term and ``lengths``, by paper)."""
        if stats is not None and stats.docs:
            n_docs = stats.docs
            avg_len = stats.length / stats.docs or 1.0
            dfs = [min(stats.df.get(t.text, 0), n_docs) for t in profile.terms]
        else:
            counts, lengths = counts or {}, lengths or {}
            n_docs = max(len(counts), 1)
            avg_len = sum(lengths.values()) / n_docs or 1.0
            dfs = [
                sum(1 for hits in counts.values() if hits[i][0] or hits[i][1])
                for i in range(len(profile.terms))
            ]
        idf = tuple(math.log(1 + (n_docs - df + 0.5) / (df + 0.5)) for df in dfs)
        return cls(profile, idf, avg_len)

    @staticmethod
    def idf_growth(profile: Profile, stats: CorpusStats, docs_then: int) -> float:
        """How many times its stored score a paper can earn today, from the IDF alone, if the
        store held at least ``docs_then`` documents when it was scored.

        IDF grows with the documents and falls with a term's document frequency; neither
        count shrinks, so a term's IDF back then was at least that of ``docs_then``
        documents with today's frequency (or all of them, if fewer).
        """
        n_now = stats.docs
        growth = 1.0
        for term in profile.terms:
            df = min(stats.df.get(term.text, 0), n_now)
            now = math.log(1 + (n_now - df + 0.5) / (df + 0.5))
            df_then = min(df, docs_then)
            then = math.log(1 + (docs_then - df_then + 0.5) / (df_then + 0.5))
            growth = max(growth, now / then)
        return growth

    def parts(self, counts: Sequence[tuple[int, int]], length: int) -> list[ScorePart]:
        """The points each matching term earns in one document (its `term_counts`)."""
        out: list[ScorePart] = []
        for term, idf, (in_title, in_abstract) in zip(
            self.profile.terms, self.idf, counts, strict=True
        ):
            tf = 2 * in_title + in_abstract
            if not tf:
                continue
            norm = 1 - BM25_B + BM25_B * length / self.avg_len
            sat = tf * (BM25_K1 + 1) / (tf + BM25_K1 * norm)
            where = []
            if in_title:
                where.append("title")
            if in_abstract:
                where.append(f"abstract ×{in_abstract}" if in_abstract > 1 else "abstract")
            label = f'"{term.text}" in {" + ".join(where)}'
            out.append(ScorePart(label, round(term.weight * idf * sat, 3)))
        return out
