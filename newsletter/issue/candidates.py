"""The week's candidates, read as plain rows (selection needs a few columns of each)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Connection
from sqlmodel import Session

from newsletter.core.models import Paper, table
from newsletter.issue.scoring import Bm25, CorpusStats, PaperText, Profile
from newsletter.issue.select import MAX_IDF_GROWTH, Stored, StoredScores, dedupe
from newsletter.issue.window import Window

P = table(Paper)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A paper as selection reads it: a plain row, not an ORM object (10,000 load fast)."""

    id: int
    title: str
    abstract: str
    source: str
    kind: str
    published: date
    published_version_id: int | None
    relevance: float | None = None  # as `newsletter.issue.relevance` stored it, for
    on_topic: bool | None = None  # the profile named by relevance_key
    relevance_key: str | None = None
    has_text: bool = True  # False: read without its title and abstract (`with_texts` adds them)


_row: Callable[..., Candidate] = Candidate  # a row's columns in `_COLUMNS` order

_COLUMNS = (
    P.c.id,
    P.c.title,
    P.c.abstract,
    P.c.source,
    P.c.kind,
    P.c.published,
    P.c.published_version_id,
    P.c.relevance,
    P.c.on_topic,
    P.c.relevance_key,
)


_LIGHT = tuple(c for c in _COLUMNS if c.name not in ("title", "abstract"))


def _light(pid: int, *rest: object) -> Candidate:
    """A row of `_LIGHT` columns as a candidate without its texts."""
    return _row(pid, "", "", *rest, has_text=False)


def load_candidates(
    session: Session,
    window: Window,
    *,
    dated_sources: Sequence[str] = ("arxiv", "pubmed", "medrxiv", "biorxiv"),
    late_days: int = 28,
    zone: tzinfo = UTC,
    texts: bool = True,
) -> list[Candidate]:
    """Papers published in the window, one entry per work.

    A paper from a source without reliable dates (not in ``dated_sources``) is also a
    candidate in the window it was first seen in (the editor's days, in ``zone``), if it
    was published at most ``late_days`` before the window: an old paper indexed this
    week is not this week's news.

    Without ``texts`` the titles and abstracts are left unread (most of the bytes of a
    week): selection reads them with `with_texts` for the papers it scores in full.
    """
    first = datetime.combine(window.start, time.min, tzinfo=zone)
    after = datetime.combine(window.end + timedelta(days=1), time.min, tzinfo=zone)
    late = (
        P.c.source.not_in(list(dated_sources))
        & (P.c.first_seen >= first)
        & (P.c.first_seen < after)
        & (P.c.published >= window.start - timedelta(days=late_days))
        & (P.c.published <= window.end)
    )
    columns, make = (_COLUMNS, _row) if texts else (_LIGHT, _light)
    query = select(*columns).where(or_(P.c.published.between(window.start, window.end), late))
    conn = session.connection()
    papers = [make(*row) for row in conn.execute(query.order_by(P.c.id))]
    version_ids = {p.published_version_id for p in papers if p.published_version_id is not None}
    versions = {
        int(row[0]): make(*row)
        for row in conn.execute(select(*columns).where(P.c.id.in_(version_ids)))
    }
    return dedupe(papers, versions)


def with_texts(conn: Connection, papers: Sequence[PaperText]) -> list[PaperText]:
    """``papers`` with their titles and abstracts read, where they were left out."""
    missing = [p.id for p in papers if isinstance(p, Candidate) and not p.has_text]
    if not missing:
        return list(papers)
    texts = {
        int(pid): (title, abstract)
        for pid, title, abstract in conn.execute(
            select(P.c.id, P.c.title, P.c.abstract).where(P.c.id.in_(missing))
        )
    }
    out: list[PaperText] = []
    for p in papers:
        if isinstance(p, Candidate) and not p.has_text and p.id in texts:
            title, abstract = texts[p.id]
            p = replace(p, title=title, abstract=abstract, has_text=True)
        out.append(p)
    return out


def candidates_by_id(session: Session, ids: Sequence[int]) -> list[Candidate]:
    """The papers with these ids (pinned ones, say), as candidates."""
    if not ids:
        return []
    rows = session.connection().execute(select(*_COLUMNS).where(P.c.id.in_(list(ids))))
    return [_row(*row) for row in rows]


def stored_scores(
    conn: Connection, candidates: Sequence[Candidate], profile: Profile, stats: CorpusStats
) -> StoredScores:
    """The relevance stored for the candidates scored with the current profile.

    Papers are scored in the order they were stored, each with every earlier paper in
    the statistics: the statistics then held all of today's but those stored after the
    first candidate, which bounds how far the IDF has moved since (capped at
    `MAX_IDF_GROWTH`: a store that grew by a whole week at once gives a loose bound).
    """
    key = profile.key
    scores = {
        c.id: Stored(float(c.relevance), bool(c.on_topic))
        for c in candidates
        if c.relevance_key == key and c.relevance is not None and c.on_topic is not None
    }
    if not scores or not stats.docs:
        return StoredScores(scores)
    first = min(scores)
    # every paper in today's statistics but not in those of the first candidate's scoring
    # was stored after it: counting those reads the recent papers only, not the whole store
    later = conn.execute(
        select(func.count()).where(P.c.id > first, P.c.relevance_key == key)
    ).scalar_one()
    growth = Bm25.idf_growth(profile, stats, max(1, stats.docs - int(later)))
    return StoredScores(scores, min(growth, MAX_IDF_GROWTH))
