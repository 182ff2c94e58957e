"""The relevance floor over the whole store: each paper's profile score and on-topic flag.

`refresh_store` scores the papers not yet scored with the current profile (new ones, or all
of them after the profile changed): it reads plain rows a chunk at a time, adds them to
the store's statistics (`CorpusStats`, one row of ``relevance_stats`` per profile) and
writes each paper's ``relevance``, ``on_topic`` and ``relevance_key``. Compose then
takes its IDF from those statistics, and the archive lists only on-topic papers.

Each paper is tokenized and matched against the profile once: its term counts give both
the statistics and its score, so a refresh costs a few milliseconds per new paper.

A paper's stored score uses the statistics as they were when it was scored; as the
store grows the IDF moves a little. Compose reads the week's stored scores to find the
candidates that can still reach the issue, and scores only those afresh.

An ingest that changes a paper's title or abstract clears its ``relevance_key``, so the
next refresh scores it again (a preprint first stored without its abstract is not left
under the floor). Its words then count twice in the statistics, a drift of one
document per such paper, which the IDF barely notices.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, delete, insert, or_, select, update
from sqlalchemy.engine import Connection

from newsletter.core.models import Paper, relevance_stats, table
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.issue.scoring import Bm25, CorpusStats, Doc, Profile, term_counts, tokens
from newsletter.papers.text import plain_text

P = table(Paper)
CHUNK = 2000


def profile_of(settings: Settings) -> Profile:
    """The profile and floor that slice.toml describes."""
    p = settings.profile
    return Profile.from_settings(
        p.terms, p.exclude, p.recency_weight, required=p.required, min_score=p.min_score
    )


def load_stats(conn: Connection, profile: Profile) -> CorpusStats:
    row = conn.execute(
        select(relevance_stats.c.docs, relevance_stats.c.length, relevance_stats.c.df).where(
            relevance_stats.c.profile_key == profile.key
        )
    ).first()
    if row is None:
        return CorpusStats()
    return CorpusStats(int(row.docs), int(row.length), {str(k): int(v) for k, v in row.df.items()})


def _save_stats(conn: Connection, profile: Profile, stats: CorpusStats) -> None:
    conn.execute(delete(relevance_stats).where(relevance_stats.c.profile_key == profile.key))
    conn.execute(
        insert(relevance_stats).values(
            profile_key=profile.key, docs=stats.docs, length=stats.length, df=stats.df
        )
    )


@dataclass(frozen=True, slots=True)
class _Seen:
    """A paper read for scoring: what its BM25 needs, and whether it clears the floor."""

    id: int
    counts: list[tuple[int, int]]  # each profile term's count in the title, in the abstract
    length: int
    on_topic: bool


def _scores(profile: Profile, seen: list[_Seen], stats: CorpusStats) -> list[dict[str, object]]:
    """Each paper's stored score and on-topic flag, as update parameters."""
    bm25 = Bm25.of(profile, stats)
    values: list[dict[str, object]] = []
    for s in seen:
        points = sum(p.points for p in bm25.parts(s.counts, s.length))
        values.append({"b_id": s.id, "b_rel": round(points, 3), "b_on": s.on_topic})
    return values


def _read(profile: Profile, pid: int, title: str, abstract: str) -> _Seen:
    t, a = tokens(plain_text(title)), tokens(plain_text(abstract))
    td, ad = Doc(t), Doc(a)
    counts = term_counts(profile, td, ad)
    excluded = any(term.count_in(td) or term.count_in(ad) for term in profile.exclude)
    on_topic = any(n or m for n, m in counts) and not excluded
    on_topic = on_topic and not profile.off_topic(td, ad)
    return _Seen(pid, counts, 2 * len(t) + len(a), on_topic)


def _stale(conn: Connection, profile: Profile) -> tuple[CorpusStats, list[_Seen]]:
    """The statistics with every paper not yet scored with ``profile`` added, and those papers.

    Each paper is tokenized and matched against the profile once: its term counts give
    both the statistics (document frequencies) and, later, its score.
    """
    key = profile.key
    stale = or_(P.c.relevance_key.is_(None), P.c.relevance_key != key)
    stats = load_stats(conn, profile)
    if conn.execute(select(P.c.id).where(P.c.relevance_key == key).limit(1)).first() is None:
        stats = CorpusStats()  # nothing scored with this profile: the statistics start over
    seen: list[_Seen] = []
    after = 0
    while True:
        rows = conn.execute(
            select(P.c.id, P.c.title, P.c.abstract)
            .where(stale, P.c.id > after)
            .order_by(P.c.id)
            .limit(CHUNK)
        ).all()
        if not rows:
            break
        for pid, title, abstract in rows:
            paper = _read(profile, int(pid), title, abstract)
            stats.add(
                paper.length,
                [
                    term.text
                    for term, (n, m) in zip(profile.terms, paper.counts, strict=True)
                    if n or m
                ],
            )
            seen.append(paper)
        after = int(rows[-1][0])
    return stats, seen


def _write(conn: Connection, profile: Profile, values: list[dict[str, object]]) -> None:
    conn.execute(
        update(P)
        .where(P.c.id == bindparam("b_id"))
        .values(
            relevance=bindparam("b_rel"), on_topic=bindparam("b_on"), relevance_key=profile.key
        ),
        values,
    )


WRITE_CHUNK = 500


def refresh_store(settings: Settings, store: Store) -> int:
    """`refresh`, reading and scoring outside any write lock, then writing in short
    transactions of `WRITE_CHUNK` papers: readers' unsubscribes and a send's ledger
    writes go on while a large ingest is scored.
    """
    profile = profile_of(settings)
    if not profile.terms:
        return 0
    with store.read() as session:
        stats, seen = _stale(session.connection(), profile)
    if not seen:
        return 0
    values = _scores(profile, seen, stats)
    for start in range(0, len(values), WRITE_CHUNK):
        with store.write() as session:
            _write(session.connection(), profile, values[start : start + WRITE_CHUNK])
    with store.write() as session:
        _save_stats(session.connection(), profile, stats)
    return len(seen)
