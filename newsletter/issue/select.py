"""Choosing the week's papers: a pure function from papers to a ranked selection.

The score of a paper is the sum of parts that `--explain` prints one by one:

- **profile**: BM25 over title + abstract (the title counts twice) for each of the
  profile's weighted terms. A term may be a phrase (``"deep learning"``) or a prefix
  (``"radiolog*"``); matching ignores case and a plural ``s``.
- **recency**: ``recency_weight`` per day between the window's start and the paper's date.
- **editor**: a small linear model over TF-IDF features, trained on what the editor
  pinned and removed in past issues (`newsletter.issue.choices.EditorModel`). Without history it is zero.

A paper containing one of the profile's ``exclude`` terms is left out. When the profile
has terms, a paper matching none of them is left out too. Then the ranking is cut
to ``max_papers`` with at most ``per_source_cap`` papers per source; pinned papers are
always in and excluded ones never.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from newsletter.issue.choices import EditorModel
from newsletter.issue.scoring import (
    CorpusStats,
    Doc,
    PaperText,
    Profile,
    Scored,
    ScorePart,
    bm25_scores,
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


@dataclass
class Selection:
    """The ranked candidates of a window and the papers chosen from them, in order."""

    window: Window
    ranked: list[Scored]
    chosen: list[Scored]
    learned_from: int = 0  # past editor choices the model was trained on

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


def select(
    papers: Sequence[PaperText],
    window: Window,
    profile: Profile,
    *,
    options: SelectOptions,
    editor: EditorModel | None = None,
    stats: CorpusStats | None = None,
) -> Selection:
    """Rank ``papers`` (already limited to the window and de-duplicated) and choose the issue.

    ``stats`` are the whole store's (IDF); without them the candidates' own are used.
    A paper below the profile's floor (``min_score``, ``required``) is not chosen, even
    when the issue is left short; a pin overrides the floor.
    """
    docs = {
        p.id: (tokens(plain_text(p.title)), tokens(plain_text(p.abstract)))
        for p in papers
        if p.id is not None
    }
    indexed = {pid: (Doc(t), Doc(a)) for pid, (t, a) in docs.items()}
    relevance = bm25_scores(profile, docs, indexed, stats=stats)
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
        elif paper.id not in options.pins:
            why = profile.off_topic(title_doc, abstract_doc)
            if why:
                scored.status, scored.reason = "off-topic", why
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
