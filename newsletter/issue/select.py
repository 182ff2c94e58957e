"""Choosing the week's papers: a pure function from papers to a ranked selection.

The score of a paper is the sum of parts that `--explain` prints one by one:

- **profile**: BM25 over title + abstract (the title counts twice) for each of the
  profile's weighted terms. A term may be a phrase (``"deep learning"``) or a prefix
  (``"radiolog*"``); matching ignores case and a plural ``s``.
- **recency**: ``recency_weight`` per day between the window's start and the paper's date.
- **editor**: a small linear model over TF-IDF features, trained on what the editor
  pinned and removed in past issues (see `EditorModel`). Without history it is zero.

A paper containing one of the profile's ``exclude`` terms is left out. When the profile
has terms, a paper matching none of them is left out too. Then the ranking is cut
to ``max_papers`` with at most ``per_source_cap`` papers per source; pinned papers are
always in and excluded ones never.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache

from newsletter.core.models import Paper
from newsletter.papers.text import plain_text

# --- windows ------------------------------------------------------------------

_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


@dataclass(frozen=True)
class Window:
    """The days an issue covers, both ends included, and the issue id they give."""

    start: date
    end: date

    @property
    def issue_id(self) -> str:
        year, week, weekday = self.start.isocalendar()
        if weekday == 1 and self.end == self.start + timedelta(days=6):
            return f"{year}-W{week:02d}"
        return f"{self.start.isoformat()}_{self.end.isoformat()}"

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end

    def __str__(self) -> str:
        if self.issue_id.startswith(f"{self.start.isocalendar()[0]}-W"):
            return f"{self.issue_id} ({self.start.isoformat()} to {self.end.isoformat()})"
        return f"{self.start.isoformat()} to {self.end.isoformat()}"


def week_window(week: str) -> Window:
    """The window of an ISO week written ``YYYY-Www``. Raises ValueError if it is not one."""
    found = _WEEK.match(week.strip())
    if not found:
        raise ValueError(f"{week!r} is not an ISO week; write it like 2025-W24")
    try:
        start = date.fromisocalendar(int(found.group(1)), int(found.group(2)), 1)
    except ValueError:
        raise ValueError(f"{week!r}: year {found.group(1)} has no week {found.group(2)}") from None
    return Window(start, start + timedelta(days=6))


def last_complete_week(today: date) -> Window:
    """The last ISO week that has ended before ``today``."""
    this_monday = today - timedelta(days=today.weekday())
    start = this_monday - timedelta(days=7)
    return Window(start, start + timedelta(days=6))


def in_window(paper: Paper, window: Window) -> bool:
    """Published in the window, or first seen in it (a late-indexed paper still gets its week)."""
    if window.contains(paper.published):
        return True
    seen = paper.first_seen
    return (
        isinstance(seen, datetime)
        and window.contains(seen.date())
        and paper.published < window.start
    )


# --- text ---------------------------------------------------------------------

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


def paper_tokens(paper: Paper) -> list[str]:
    """The words the scorer reads: the title twice, then the abstract."""
    title = tokens(plain_text(paper.title))
    return title + title + tokens(plain_text(paper.abstract))


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
        """How often the term occurs in an indexed document."""
        if not self.words:
            return 0
        *lead, last = self.words
        if not lead:
            if self.prefix:
                return sum(n for w, n in doc.counts.items() if w.startswith(last))
            return doc.counts.get(last, 0)
        hits = 0
        size = len(self.words)
        if lead[0] not in doc.counts:
            return 0
        for i in doc.positions.get(lead[0], ()):
            window = doc.words[i : i + size]
            if len(window) < size or list(window[:-1]) != lead:
                continue
            if window[-1] == last or (self.prefix and window[-1].startswith(last)):
                hits += 1
        return hits


class Doc:
    """A tokenized text with its word counts; where each word occurs is found on demand."""

    def __init__(self, words: Sequence[str]) -> None:
        self.words = words
        self.counts = Counter(words)
        self._positions: dict[str, list[int]] | None = None

    @classmethod
    def of(cls, words: Sequence[str]) -> Doc:
        return cls(words)

    @property
    def positions(self) -> dict[str, list[int]]:
        if self._positions is None:
            self._positions = {}
            for i, w in enumerate(self.words):
                self._positions.setdefault(w, []).append(i)
        return self._positions


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

    paper: Paper
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
    """The relevance profile, parsed."""

    terms: tuple[Term, ...]
    exclude: tuple[Term, ...]
    recency_weight: float = 0.1

    @classmethod
    def from_settings(
        cls, terms: Mapping[str, float], exclude: Iterable[str], recency_weight: float
    ) -> Profile:
        return cls(
            tuple(Term.parse(t, w) for t, w in terms.items() if tokens(t)),
            tuple(Term.parse(t, 1.0) for t in exclude if tokens(t)),
            recency_weight,
        )


def bm25_scores(
    profile: Profile,
    docs: Mapping[int, tuple[list[str], list[str]]],
    indexed: Mapping[int, tuple[Doc, Doc]] | None = None,
) -> dict[int, list[ScorePart]]:
    """Per document (title words, abstract words), the points each matching term earns.

    BM25 with the title counted twice; each term's points are multiplied by its weight.
    """
    n_docs = max(len(docs), 1)
    lengths = {pid: 2 * len(t) + len(a) for pid, (t, a) in docs.items()}
    avg_len = sum(lengths.values()) / n_docs or 1.0
    out: dict[int, list[ScorePart]] = {pid: [] for pid in docs}
    if indexed is None:
        indexed = {pid: (Doc(t), Doc(a)) for pid, (t, a) in docs.items()}
    for term in profile.terms:
        hits = {pid: (term.count_in(t), term.count_in(a)) for pid, (t, a) in indexed.items()}
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


# --- selection ----------------------------------------------------------------


@dataclass(frozen=True)
class SelectOptions:
    """How many papers, how many per source, and the editor's overrides."""

    max_papers: int = 10
    per_source_cap: int = 6
    pins: tuple[int, ...] = ()
    excludes: tuple[int, ...] = ()
    editor_weight: float = 3.0


@dataclass
class Selection:
    """The ranked candidates of a window and the papers chosen from them, in order."""

    window: Window
    ranked: list[Scored]
    chosen: list[Scored]
    learned_from: int = 0  # past editor choices the model was trained on

    def explain_rows(self) -> list[dict[str, object]]:
        """What --explain prints: every candidate, its status, score and the parts of it."""
        return [
            {
                "id": s.paper_id,
                "status": s.status,
                "score": round(s.score, 3),
                "source": s.paper.source,
                "title": plain_text(s.paper.title),
                "parts": [(p.label, p.points) for p in s.parts],
                "reason": s.reason,
            }
            for s in self.ranked
        ]


def dedupe(papers: Iterable[Paper], journal_versions: Mapping[int, Paper]) -> list[Paper]:
    """One entry per work: a preprint with a journal version is replaced by that version."""
    seen: set[int] = set()
    out: list[Paper] = []
    for paper in papers:
        shown = paper
        if (
            paper.published_version_id is not None
            and paper.published_version_id in journal_versions
        ):
            shown = journal_versions[paper.published_version_id]
        if shown.id is None or shown.id in seen:
            continue
        seen.add(shown.id)
        out.append(shown)
    return out


def select(
    papers: Sequence[Paper],
    window: Window,
    profile: Profile,
    *,
    options: SelectOptions,
    editor: EditorModel | None = None,
) -> Selection:
    """Rank ``papers`` (already limited to the window and de-duplicated) and choose the issue."""
    docs = {
        p.id: (tokens(plain_text(p.title)), tokens(plain_text(p.abstract)))
        for p in papers
        if p.id is not None
    }
    indexed = {pid: (Doc(t), Doc(a)) for pid, (t, a) in docs.items()}
    relevance = bm25_scores(profile, docs, indexed)
    ranked: list[Scored] = []
    for paper in papers:
        if paper.id is None:
            continue
        title_words, abstract_words = docs[paper.id]
        words = title_words + title_words + abstract_words
        scored = Scored(paper, parts=list(relevance[paper.id]))
        age = (min(max(paper.published, window.start), window.end) - window.start).days
        if profile.recency_weight and age:
            scored.parts.append(
                ScorePart(f"recency +{age}d", round(profile.recency_weight * age, 3))
            )
        if editor is not None:
            points = editor.points(words, weight=options.editor_weight)
            if abs(points) >= 0.001:
                scored.parts.append(ScorePart("editor's past choices", round(points, 3)))
        scored.score = sum(p.points for p in scored.parts)
        title_doc, abstract_doc = indexed[paper.id]
        hits = [
            t.text for t in profile.exclude if t.count_in(title_doc) or t.count_in(abstract_doc)
        ]
        if paper.id in options.excludes:
            scored.status, scored.reason = "excluded", "excluded by the editor"
        elif hits and paper.id not in options.pins:
            scored.status, scored.reason = "excluded", f'profile excludes "{hits[0]}"'
        elif profile.terms and not relevance[paper.id] and paper.id not in options.pins:
            scored.status, scored.reason = "unmatched", "matches no profile term"
        ranked.append(scored)
    ranked.sort(key=lambda s: (-s.score, -s.paper.published.toordinal(), s.paper_id))

    chosen: list[Scored] = []
    per_source: Counter[str] = Counter()
    pins = set(options.pins)
    for s in ranked:
        if s.paper_id in pins:
            s.status, s.reason = "pinned", "pinned by the editor"
            chosen.append(s)
            per_source[s.paper.source] += 1
    for s in ranked:
        if s.status != "candidate":
            continue
        if len(chosen) >= options.max_papers:
            s.status, s.reason = "below", f"below the top {options.max_papers}"
        elif per_source[s.paper.source] >= options.per_source_cap:
            s.status = "capped"
            s.reason = (
                f"{options.per_source_cap} papers from {s.paper.source} already (per_source_cap)"
            )
        else:
            s.status = "selected"
            chosen.append(s)
            per_source[s.paper.source] += 1
    chosen.sort(key=lambda s: (-s.score, -s.paper.published.toordinal(), s.paper_id))
    return Selection(window, ranked, chosen, learned_from=editor.examples if editor else 0)


# --- learning from the editor -------------------------------------------------


# Words too common to say anything about a paper's topic (the editor model skips them).
_STOPWORDS = (
    "the and for with from into over under between after before this that these those are was "
    "were been has have had not but its our their than then also using use used based via can "
    "may new study"
)
STOPWORDS = frozenset(_STOPWORDS.split())


@dataclass(frozen=True)
class Choice:
    """One past editor decision: the paper's words and whether the editor wanted it."""

    words: list[str]
    wanted: bool
    weight: float = 1.0


class EditorModel:
    """Logistic regression on TF-IDF features of past pins (wanted) and removals (not wanted).

    Written by hand on sparse dicts: a few hundred examples of a few hundred words
    each train in milliseconds, and pulling numpy or scikit-learn into the install
    for this alone would outweigh the model. L2-regularized, trained by full-batch
    gradient descent, so the same history always gives the same model.
    """

    def __init__(self, idf: dict[str, float], coef: dict[str, float], bias: float, examples: int):
        self.idf = idf
        self.coef = coef
        self.bias = bias
        self.examples = examples

    @staticmethod
    def features(words: Sequence[str], idf: Mapping[str, float]) -> dict[str, float]:
        counts = Counter(w for w in words if w in idf and len(w) > 2 and w not in STOPWORDS)
        vec = {w: (1 + math.log(c)) * idf[w] for w, c in counts.items()}
        norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
        return {w: v / norm for w, v in vec.items()}

    @classmethod
    def train(
        cls, choices: Sequence[Choice], *, epochs: int = 200, rate: float = 0.5, l2: float = 0.02
    ) -> EditorModel | None:
        """A model, or None when the history cannot teach anything (no wanted or no unwanted)."""
        if not any(c.wanted for c in choices) or all(c.wanted for c in choices):
            return None
        df: Counter[str] = Counter()
        for c in choices:
            df.update(set(c.words))
        n = len(choices)
        idf = {w: math.log((1 + n) / (1 + d)) + 1 for w, d in df.items()}
        xs = [cls.features(c.words, idf) for c in choices]
        ys = [1.0 if c.wanted else 0.0 for c in choices]
        ws = [c.weight for c in choices]
        total = sum(ws)
        coef: dict[str, float] = {}
        bias = 0.0
        for _ in range(epochs):
            grad: dict[str, float] = {}
            grad_bias = 0.0
            for x, y, w in zip(xs, ys, ws, strict=True):
                z = bias + sum(coef.get(k, 0.0) * v for k, v in x.items())
                err = (_sigmoid(z) - y) * w / total
                grad_bias += err
                for k, v in x.items():
                    grad[k] = grad.get(k, 0.0) + err * v
            for k in set(grad) | set(coef):
                coef[k] = coef.get(k, 0.0) - rate * (grad.get(k, 0.0) + l2 * coef.get(k, 0.0))
            bias -= rate * grad_bias
        return cls(idf, coef, bias, n)

    def probability(self, words: Sequence[str]) -> float:
        x = self.features(words, self.idf)
        return _sigmoid(self.bias + sum(self.coef.get(k, 0.0) * v for k, v in x.items()))

    def points(self, words: Sequence[str], *, weight: float) -> float:
        """Score points for a paper, between -``weight`` and +``weight``.

        Measured from the model's base rate, so a paper sharing no word with the history
        gets no points either way.
        """
        lean = 2 * (self.probability(words) - _sigmoid(self.bias))
        return weight * max(-1.0, min(1.0, lean))

    def top_terms(self, n: int = 10) -> list[tuple[str, float]]:
        """The words that count most, either way (for --explain)."""
        return sorted(self.coef.items(), key=lambda kv: -abs(kv[1]))[:n]


def _sigmoid(z: float) -> float:
    if z < -30:
        return 0.0
    if z > 30:
        return 1.0
    return 1.0 / (1.0 + math.exp(-z))
