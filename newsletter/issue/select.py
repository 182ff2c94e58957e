"""Choosing the week's papers: a pure function from papers to a ranked selection.

The score of a paper is the sum of parts that `--explain` prints one by one:

- **profile**: BM25 over title + abstract (the title counts twice) for each of the
  profile's weighted terms. A term may be a phrase (``"deep learning"``) or a prefix
  (``"radiolog*"``); matching ignores case and a plural ``s``.
- **recency**: ``recency_weight`` per day between the window's start and the paper's date.
- **editor**: a small linear model over TF-IDF features, trained on what the editor
  pinned and removed in past issues (`newsletter.issue.choices.EditorModel`). Without history it is zero.

Only the candidates that can still reach the issue are read and scored in full: the
relevance stored for each paper (`newsletter.issue.relevance`) bounds what it can
score, and the rest keep their stored score (``--explain`` scores every candidate).

A paper containing one of the profile's ``exclude`` terms is left out. When the profile
has terms, a paper matching none of them is left out too. Then the ranking is cut
to ``max_papers`` with at most ``per_source_cap`` papers per source; pinned papers are
always in and excluded ones never.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TypeVar

from newsletter.issue.choices import EditorModel
from newsletter.issue.scoring import (
    Bm25,
    CorpusStats,
    Doc,
    PaperText,
    Profile,
    Scored,
    ScorePart,
    term_counts,
    tokens,
)
from newsletter.issue.window import Window
from newsletter.papers.text import plain_text

# --- selection ----------------------------------------------------------------

P = TypeVar("P", bound=PaperText)

# statuses of the candidates that cleared the floor (chosen or not)
PASSED = frozenset({"selected", "pinned", "below", "capped", "candidate"})


@dataclass(frozen=True)
class SelectOptions:
    """How many papers, how many per source, and the editor's overrides."""

    max_papers: int = 10
    per_source_cap: int = 6
    pins: tuple[int, ...] = ()
    excludes: tuple[int, ...] = ()
    editor_weight: float = 3.0
    every: bool = False  # score every candidate in full (--explain), not only the contenders


@dataclass
class Selection:
    """The ranked candidates of a window and the papers chosen from them, in order."""

    window: Window
    ranked: list[Scored]
    chosen: list[Scored]
    learned_from: int = 0  # past editor choices the model was trained on
    scored_in_full: int = 0  # candidates whose words were read (the rest: stored scores)

    def floor_summary(self) -> str:
        """How many candidates cleared the relevance floor, and why the rest did not."""
        passed = sum(1 for s in self.ranked if s.status in PASSED)
        why: Counter[str] = Counter()
        for s in self.ranked:
            if s.status == "off-topic":
                why[
                    "matched none of the required terms"
                    if s.reason.startswith("off-topic")
                    else "scored below min_score"
                ] += 1
            elif s.status == "unmatched":
                why["matched no profile term"] += 1
            elif s.status == "excluded":
                why["were excluded (profile or editor)"] += 1
            elif s.status == "floor":
                why["were below the floor when stored"] += 1
        rest = "; ".join(f"{n} {reason}" for reason, n in why.most_common())
        total = len(self.ranked)
        line = (
            f"{passed} of {total} candidate{'s' if total != 1 else ''} cleared the relevance floor"
        )
        return f"{line}: {rest}." if rest else f"{line}."

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


def dedupe(papers: Iterable[P], journal_versions: Mapping[int, P]) -> list[P]:
    """One entry per work: a preprint with a journal version is replaced by that version."""
    seen: set[int] = set()
    out: list[P] = []
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


@dataclass(frozen=True)
class Stored:
    """What the store knows of a candidate without reading its words: the relevance and
    on-topic flag `newsletter.issue.relevance` stored for the current profile."""

    relevance: float
    on_topic: bool


# Reads the title and abstract of the papers given without them (`candidates.with_texts`).
Complete = Callable[[list[PaperText]], list[PaperText]]


@dataclass(frozen=True)
class StoredScores:
    """The stored relevance of the candidates that have one, and how far today's IDF may
    have moved since: a stored score keeps the IDF of the day it was made, and a paper
    may score up to ``idf_growth`` times as much today (`Bm25.idf_growth`)."""

    scores: Mapping[int, Stored]
    idf_growth: float = 1.0


# Room beyond the IDF's growth: the store's average length moves a little as papers
# arrive (relative), and each stored part was rounded to 0.001 (absolute).
DRIFT = 0.1
DRIFT_POINTS = 0.05
# The IDF's growth allowed for at most: the bound `Bm25.idf_growth` gives assumes the
# fewest papers the store can have held, and is far above what a store that grows
# by a week's papers at a time sees. Past this, a paper whose stored score is far
# below the issue's last one is not read again (see `_pruned`).
MAX_IDF_GROWTH = 1.25


class _Scorer:
    """Scores one candidate in full: its words, BM25, recency, the editor model, its status."""

    def __init__(
        self,
        window: Window,
        profile: Profile,
        options: SelectOptions,
        editor: EditorModel | None,
    ) -> None:
        self.window, self.profile, self.options, self.editor = window, profile, options, editor
        self._recency: dict[date, ScorePart | None] = {}  # by the paper's date

    def read(
        self, paper: PaperText
    ) -> tuple[list[str], list[str], Doc, Doc, list[tuple[int, int]]]:
        t, a = tokens(plain_text(paper.title)), tokens(plain_text(paper.abstract))
        td, ad = Doc(t), Doc(a)
        return t, a, td, ad, term_counts(self.profile, td, ad)

    def recency(self, paper: PaperText) -> ScorePart | None:
        """``recency_weight`` per day between the window's start and the paper's date."""
        day = paper.published
        if day not in self._recency:
            w = self.window
            age = (min(max(day, w.start), w.end) - w.start).days
            weight = self.profile.recency_weight
            self._recency[day] = (
                ScorePart(f"recency +{age}d", round(weight * age, 3)) if weight and age else None
            )
        return self._recency[day]

    def score(
        self,
        paper: PaperText,
        bm25: Bm25,
        read: tuple[list[str], list[str], Doc, Doc, list[tuple[int, int]]],
    ) -> Scored:
        title_words, abstract_words, title_doc, abstract_doc, counts = read
        pid, options, profile = paper.id, self.options, self.profile
        relevance = bm25.parts(counts, 2 * len(title_words) + len(abstract_words))
        scored = Scored(paper, parts=list(relevance))
        recency = self.recency(paper)
        if recency is not None:
            scored.parts.append(recency)
        if self.editor is not None:
            words = title_words + title_words + abstract_words
            points = self.editor.points(words, weight=options.editor_weight)
            if abs(points) >= 0.001:
                scored.parts.append(ScorePart("editor's past choices", round(points, 3)))
        scored.score = sum(p.points for p in scored.parts)
        hits = [
            t.text for t in profile.exclude if t.count_in(title_doc) or t.count_in(abstract_doc)
        ]
        if pid in options.excludes:
            scored.status, scored.reason = "excluded", "excluded by the editor"
        elif hits and pid not in options.pins:
            scored.status, scored.reason = "excluded", f'profile excludes "{hits[0]}"'
        elif profile.terms and not relevance and pid not in options.pins:
            scored.status, scored.reason = "unmatched", "matches no profile term"
        elif pid not in options.pins:
            why = profile.off_topic(title_doc, abstract_doc)
            if why:
                scored.status, scored.reason = "off-topic", why
        return scored


def _points(part: ScorePart | None) -> float:
    return part.points if part is not None else 0.0


def _order(s: Scored) -> tuple[float, int, int]:
    return (-s.score, -s.paper.published.toordinal(), s.paper_id)


def _fills(settled: list[Scored], pinned: list[Scored], options: SelectOptions) -> bool:
    """Whether choosing from ``settled`` (the best, in order) after the ``pinned`` papers
    (wherever they rank) fills the issue, as `select` chooses, with as many papers below
    it as the editor excluded (an issue.json kept fills their places from those)."""
    chosen = len(pinned)
    spare = 0
    per_source = Counter(s.paper.source for s in pinned)
    for s in settled:
        if s.paper_id in options.pins or s.status != "candidate":
            continue  # the pins are counted already
        if chosen >= options.max_papers:
            spare += 1
        elif per_source[s.paper.source] < options.per_source_cap:
            chosen += 1
            per_source[s.paper.source] += 1
    return chosen >= options.max_papers and spare >= len(options.excludes)


def _pruned(
    papers: Sequence[PaperText],
    scorer: _Scorer,
    bm25: Bm25,
    stored: StoredScores,
    complete: Complete,
) -> tuple[list[Scored], int]:
    """The ranking, scoring in full only the candidates that can still reach the issue.

    Each candidate's best possible score comes from its stored relevance (with room
    for the IDF's drift since it was stored: `StoredScores.idf_growth`, at most
    `MAX_IDF_GROWTH`), its recency and the most the editor model can add. Candidates
    are scored in full best-first until those scored hold, ahead of anything unscored
    could reach, a full issue and the 20 runners-up the editor's history records. The
    rest are below the issue whatever their words: they are listed by their stored
    score, and the ones stored off-topic keep that status without being read again.
    """
    options = scorer.options
    editor_max = scorer.editor.max_points(options.editor_weight) if scorer.editor else 0.0
    must = set(options.pins) | set(options.excludes)
    bounds: list[tuple[float, int]] = []
    for n, paper in enumerate(papers):
        known = stored.scores.get(paper.id) if paper.id is not None else None
        if known is None or paper.id in must:
            bounds.append((math.inf, n))
            continue
        best = (
            known.relevance * stored.idf_growth * (1 + DRIFT)
            + DRIFT_POINTS
            + _points(scorer.recency(paper))
            + editor_max
        )
        bounds.append((best, n))
    bounds.sort(key=lambda b: -b[0])
    head = max(options.max_papers, len(options.pins)) + 20 + len(options.excludes)
    done: list[Scored] = []
    at, step = 0, 3 * head
    while at < len(bounds):
        for paper in complete([papers[n] for _best, n in bounds[at : at + step]]):
            done.append(scorer.score(paper, bm25, scorer.read(paper)))
        at, step = at + step, step + head
        if at >= len(bounds):
            break
        reach = bounds[at][0]
        settled = sorted((s for s in done if s.score > reach), key=_order)
        pinned = [s for s in done if s.paper_id in options.pins]  # read first: unbounded
        if len(settled) >= head and _fills(settled, pinned, options):
            break
    done.sort(key=_order)
    rest: list[Scored] = []
    for _best, n in bounds[at:]:
        paper = papers[n]
        known = stored.scores[paper.id] if paper.id is not None else None
        assert known is not None
        scored = Scored(paper, parts=[ScorePart("profile, as stored", known.relevance)])
        recency = scorer.recency(paper)
        if recency is not None:
            scored.parts.append(recency)
        scored.score = sum(p.points for p in scored.parts)
        if not known.on_topic:
            scored.status, scored.reason = "floor", "below the relevance floor (as stored)"
        rest.append(scored)
    rest.sort(key=_order)
    return done + rest, len(done)


def select(
    papers: Sequence[PaperText],
    window: Window,
    profile: Profile,
    *,
    options: SelectOptions,
    editor: EditorModel | None = None,
    stats: CorpusStats | None = None,
    stored: StoredScores | None = None,
    complete: Complete = list,
) -> Selection:
    """Rank ``papers`` (already limited to the window and de-duplicated) and choose the issue.

    ``stats`` are the whole store's (IDF); without them the candidates' own are used.
    A paper below the profile's floor (``min_score``, ``required``) is not chosen, even
    when the issue is left short; a pin overrides the floor.

    With ``stored`` relevance (and ``stats``), only the candidates that can still reach
    the issue are scored in full (`_pruned`); ``options.every`` scores them all.
    ``complete`` reads the title and abstract of papers passed without them.
    """
    scorer = _Scorer(window, profile, options, editor)
    papers = [p for p in papers if p.id is not None]
    if stored is not None and stats is not None and stats.docs and not options.every:
        ranked, in_full = _pruned(papers, scorer, Bm25.of(profile, stats), stored, complete)
    else:
        papers = complete(papers)
        read = [scorer.read(p) for p in papers]
        lengths = {n: 2 * len(r[0]) + len(r[1]) for n, r in enumerate(read)}
        bm25 = Bm25.of(profile, stats, {n: r[4] for n, r in enumerate(read)}, lengths)
        ranked = [scorer.score(p, bm25, r) for p, r in zip(papers, read, strict=True)]
        ranked.sort(key=_order)
        in_full = len(ranked)

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
    chosen.sort(key=_order)
    return Selection(
        window,
        ranked,
        chosen,
        learned_from=editor.examples if editor else 0,
        scored_in_full=in_full,
    )
