"""Reading stored papers: the listing behind `slice papers`, in the paper-record shape."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import String, cast, or_
from sqlmodel import Session, col, select

from newsletter.core.errors import ConfigError
from newsletter.core.models import Paper, PaperKind
from newsletter.core.weeks import parse_iso_week


def iso_week(text: str) -> tuple[date, date]:
    """'2025-W24' -> (Monday, Sunday) of that ISO week (`newsletter.core.weeks`)."""
    try:
        return parse_iso_week(text)
    except ValueError as exc:
        raise ConfigError(f"--week: {exc}.") from None


@dataclass(frozen=True)
class PaperQuery:
    since: date | None = None
    until: date | None = None
    search: str = ""
    source: str = ""
    limit: int = 100


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def list_papers(session: Session, query: PaperQuery) -> list[Paper]:
    """Stored papers, newest first, filtered by date window, source and words.

    Words are searched with the archive's full-text search (`newsletter.papers.search`),
    so ``slice papers --search`` finds what the web archive finds.
    """
    if query.search.strip():
        return _searched(session, query)
    statement = select(Paper)
    if query.since:
        statement = statement.where(Paper.published >= query.since)
    if query.until:
        statement = statement.where(Paper.published <= query.until)
    if query.source:
        wanted = query.source.strip().lower()
        statement = statement.where(
            or_(
                col(Paper.source) == wanted, cast(Paper.seen_in, String).ilike(_like(f'"{wanted}@'))
            )
        )
    statement = statement.order_by(col(Paper.published).desc(), col(Paper.id).desc()).limit(
        query.limit
    )
    return list(session.exec(statement))


def _searched(session: Session, query: PaperQuery) -> list[Paper]:
    from newsletter.papers.search import SearchParams, known_sources, search_papers

    wanted = query.source.strip().lower()
    by_paper_source = wanted in known_sources(session)
    params = SearchParams(
        q=query.search,
        source=wanted if by_paper_source else "",
        since=query.since,
        until=query.until,
        sort="newest",
        per_page=query.limit,
    )
    found = search_papers(session, params).papers
    if wanted and not by_paper_source:  # a configured source's name: the papers it reported
        found = [p for p in found if any(s.split("@", 1)[0] == wanted for s in p.seen_in)]
    return found


def as_record(paper: Paper) -> dict[str, Any]:
    """A stored paper in the paper-record shape (what `slice papers --json` prints)."""
    return {
        "id": paper.id,
        "title": paper.title,
        "authors": list(paper.authors),
        "abstract": paper.abstract,
        "source": paper.source,
        "kind": paper.kind,
        "published": paper.published.isoformat(),
        "url": paper.url,
        "journal": paper.journal,
        "doi": paper.doi,
        "arxiv_id": paper.arxiv_id,
        "pmid": paper.pmid,
        "pmcid": paper.pmcid,
        "published_doi": paper.published_doi,
        "published_version_id": paper.published_version_id,
        "seen_in": list(paper.seen_in),
    }


# --- a preprint and its journal version ----------------------------------------


def preprint_for(session: Session, paper: Paper) -> Paper | None:
    """The preprint of a journal paper, if one is stored (the newest posted first)."""
    if paper.id is None:
        return None
    statement = (
        select(Paper)
        .where(Paper.published_version_id == paper.id, Paper.kind == PaperKind.PREPRINT.value)
        .order_by(Paper.published.desc())  # type: ignore[attr-defined]
    )
    return session.exec(statement).first()


def journal_version_of(session: Session, preprint: Paper) -> Paper | None:
    """The journal version a preprint links to, if stored."""
    if preprint.published_version_id is None:
        return None
    return session.get(Paper, preprint.published_version_id)


def preprints_for(session: Session, papers: Iterable[Paper]) -> dict[int, Paper]:
    """The stored preprint of each journal paper that has one, by the paper's id (one query)."""
    ids = [p.id for p in papers if p.id is not None and p.kind == PaperKind.PAPER.value]
    if not ids:
        return {}
    statement = (
        select(Paper)
        .where(
            Paper.published_version_id.in_(ids),  # type: ignore[union-attr]
            Paper.kind == PaperKind.PREPRINT.value,
        )
        .order_by(Paper.published)  # type: ignore[arg-type]
    )
    found: dict[int, Paper] = {}
    for preprint in session.exec(statement):
        assert preprint.published_version_id is not None
        found[preprint.published_version_id] = preprint  # the newest wins, as in preprint_for
    return found
