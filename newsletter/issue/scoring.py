"""How well a paper fits the profile: words, weighted terms and BM25."""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Protocol

from newsletter.papers.text import plain_text

_TOKEN = re.compile(r"[0-9a-z]+(?:[-'][0-9a-z]+)*")


@lru_cache(maxsize=65536)
def _norm(token: str) -> str:
    if len(token) >= 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


def tokens(text: str) -> list[str]:
    """Lower-case word tokens, a plural ``s`` dropped; hyphenated words also split."""
    out: list[str] = []
    for word in _TOKEN.findall(text.lower()):
        if "-" in word:
            out.extend(_norm(part) for part in word.split("-") if part)
        else:
            out.append(_norm(word))
    return out


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
        if not self.words:
            return 0
        *lead, last = self.words
        if not lead:
            if self.prefix:
                if " " + last not in doc.text:
                    return 0
                return sum(n for w, n in doc.counts.items() if w.startswith(last))
            return doc.counts.get(last, 0)
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

    @property
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


def bm25_scores(
    profile: Profile,
    docs: Mapping[int, tuple[list[str], list[str]]],
    indexed: Mapping[int, tuple[Doc, Doc]] | None = None,
    *,
    stats: CorpusStats | None = None,
) -> dict[int, list[ScorePart]]:
    """Per document (title words, abstract words), the points each matching term earns.

    BM25 with the title counted twice; each term's points are multiplied by its weight.
    The IDF and the average length come from ``stats`` (the whole store) when given,
    else from ``docs`` themselves.
    """
    lengths = {pid: 2 * len(t) + len(a) for pid, (t, a) in docs.items()}
    if stats is not None and stats.docs:
        n_docs = stats.docs
        avg_len = stats.length / stats.docs or 1.0
    else:
        n_docs = max(len(docs), 1)
        avg_len = sum(lengths.values()) / n_docs or 1.0
    out: dict[int, list[ScorePart]] = {pid: [] for pid in docs}
    if indexed is None:
        indexed = {pid: (Doc(t), Doc(a)) for pid, (t, a) in docs.items()}
    for term in profile.terms:
        hits = {pid: (term.count_in(t), term.count_in(a)) for pid, (t, a) in indexed.items()}
        if stats is not None and stats.docs:
            df = min(stats.df.get(term.text, 0), n_docs)
        else:
            df = sum(1 for t, a in hits.values() if t or a)
        idf = math.log(1 + (n_docs - df + 0.5) / (df + 0.5))
        for pid, (in_title, in_abstract) in hits.items():
            tf = 2 * in_title + in_abstract
            if not tf:
                continue
            norm = 1 - BM25_B + BM25_B * lengths[pid] / avg_len
            sat = tf * (BM25_K1 + 1) / (tf + BM25_K1 * norm)
            where = []
            if in_title:
                where.append("title")
            if in_abstract:
                where.append(f"abstract ×{in_abstract}" if in_abstract > 1 else "abstract")
            label = f'"{term.text}" in {" + ".join(where)}'
            out[pid].append(ScorePart(label, round(term.weight * idf * sat, 3)))
    return out
