"""Matching records to stored papers: one record per work, preprints linked to journal versions.

A record matches a stored paper by, in order: normalized DOI, PMID, PMCID,
arXiv id without version, and last the normalized title with the same first
author and a year at most one apart. A match from another source is merged
(missing fields and identifiers filled in); the same source reporting again
updates its own fields; nothing new changes nothing, so re-ingesting the same
data leaves the database as it was.

A preprint and its journal version are two works that know each other: the
preprint's ``published_version_id`` points at the journal paper (found by the
journal DOI the preprint server reports, or by title, first author and year
when the kinds differ). They are never merged. `newsletter.papers.queries`
reads the links.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy.engine import Connection

from newsletter.core.models import PaperKind
from newsletter.papers.names import surname, title_key
from newsletter.papers.records import IDS
from newsletter.papers.rows import StoredPaper, insert_new, read_matching, update_changed
from newsletter.papers.sources.base import PaperRecord

# --- merging ----------------------------------------------------------------

# the kinds as plain strings: an enum member's .value is a property, looked up per record
_PREPRINT = PaperKind.PREPRINT.value
_PAPER = PaperKind.PAPER.value


def _title_key(record: PaperRecord) -> str:
    """The record's title key, as validate worked it out when the title is still the same."""
    keyed = record.keyed_title
    if keyed is not None and keyed[0] == record.title:
        return keyed[1]
    return title_key(record.title)


def _year_close(a: date, b: date) -> bool:
    return abs(a.year - b.year) <= 1


def _same_first_author(a: list[str], b: list[str]) -> bool:
    if not a or not b:
        return True
    return surname(a[0]) == surname(b[0])


def _conflicting_ids(paper: StoredPaper, record: PaperRecord) -> bool:
    return any(
        getattr(paper, key) and getattr(record, key) and getattr(paper, key) != getattr(record, key)
        for key in IDS
    )


class Merger:
    """Stores records a chunk at a time, finding each one's stored twin.

    For each chunk the stored papers it could match are read with a handful of
    indexed queries (by each identifier, title key, and the DOIs that link
    preprints and journal versions); the records are then matched in memory, in
    order, so that two records of one work in the same chunk also meet. New
    papers are inserted in one statement, changed ones updated in a few.
    """

    def __init__(self, conn: Connection, *, origin: str, now: datetime) -> None:
        self.conn = conn
        self.origin = origin
        self.now = now
        self.stamp = f"{origin}@{now.date().isoformat()}"
        self._reset()

    def _reset(self) -> None:
        self.by_id: dict[str, dict[str, StoredPaper]] = {key: {} for key in IDS}
        self.by_title: dict[str, list[StoredPaper]] = {}
        self.naming: dict[str, list[StoredPaper]] = {}  # preprints by the journal DOI they name
        self.links: list[tuple[StoredPaper, StoredPaper]] = []  # (preprint, journal)
        self.touched: dict[int, StoredPaper] = {}  # every paper of this chunk, by object id

    def _index(self, paper: StoredPaper) -> None:
        for key in IDS:
            value = getattr(paper, key)
            if value:
                self.by_id[key].setdefault(value, paper)
        same_title = self.by_title.setdefault(paper.title_key, [])
        if all(p is not paper for p in same_title):
            same_title.append(paper)
        if paper.published_doi:
            naming = self.naming.setdefault(paper.published_doi, [])
            if all(p is not paper for p in naming):
                naming.append(paper)

    def _prefetch(self, records: list[PaperRecord]) -> None:
        wanted: list[tuple[str, set[str]]] = [
            (key, {getattr(r, key) for r in records if getattr(r, key)}) for key in IDS
        ]
        wanted.append(("title_key", {_title_key(r) for r in records}))
        wanted.append(("doi", {r.published_doi for r in records if r.published_doi}))
        wanted.append(("published_doi", {r.doi for r in records if r.doi}))
        seen: dict[int, StoredPaper] = {}
        for column, values in wanted:
            if values:
                for paper in read_matching(self.conn, column, values):
                    assert paper.id is not None
                    # one object per row, however many queries found it
                    paper = seen.setdefault(paper.id, paper)
                    self.touched[id(paper)] = paper
                    self._index(paper)

    def add_many(self, records: list[PaperRecord]) -> list[str]:
        """Store valid records; for each: 'new', 'merged', 'updated', 'linked' or 'unchanged'."""
        self._reset()
        self._prefetch(records)
        done = [self._add(record) for record in records]
        insert_new(self.conn, [p for p, outcome in done if outcome == "new"])
        linked = self._resolve_links()
        update_changed(self.conn, self.touched.values())
        outcomes = [
            "linked" if id(paper) in linked and outcome != "merged" else outcome
            for paper, outcome in done
        ]
        self._reset()  # keep memory bounded on big files
        return outcomes

    def _add(self, record: PaperRecord) -> tuple[StoredPaper, str]:
        existing = self._by_ids(record)
        counterpart: StoredPaper | None = None
        if existing is None:
            existing, counterpart = self._by_title(record)
        if existing is not None:
            outcome = self._merge(existing, record)
            self._index(existing)
            self._plan_links(existing, None)
            return existing, outcome
        paper = StoredPaper(
            title=record.title,
            authors=list(record.authors),
            abstract=record.abstract,
            source=record.source,
            kind=record.kind,
            published=record.published or date.today(),
            url=record.url,
            journal=record.journal,
            doi=record.doi,
            arxiv_id=record.arxiv_id,
            pmid=record.pmid,
            pmcid=record.pmcid,
            title_key=_title_key(record),
            seen_in=[self.stamp],
            published_doi=record.published_doi,
            extra=dict(record.extra),
            first_seen=self.now,
            updated_at=self.now,
        )
        self.touched[id(paper)] = paper
        self._index(paper)
        self._plan_links(paper, counterpart)
        return paper, "new"

    def _by_ids(self, record: PaperRecord) -> StoredPaper | None:
        for key in IDS:  # the order of trust: DOI, PMID, PMCID, arXiv id
            value = getattr(record, key)
            if value and value in self.by_id[key]:
                return self.by_id[key][value]
        return None

    def _by_title(self, record: PaperRecord) -> tuple[StoredPaper | None, StoredPaper | None]:
        """(the same work, or None; a counterpart of the other kind to link, or None)."""
        key = _title_key(record)
        if len(key) < 12:  # too short to tell works apart
            return None, None
        counterpart = None
        assert record.published is not None
        for paper in self.by_title.get(key, []):
            if not _year_close(paper.published, record.published):
                continue
            if not _same_first_author(paper.authors, record.authors):
                continue
            if paper.kind != record.kind:
                counterpart = counterpart or paper
                continue
            if _conflicting_ids(paper, record):
                continue
            return paper, None
        return None, counterpart

    def _plan_links(self, paper: StoredPaper, counterpart: StoredPaper | None) -> None:
        """Note the preprint/journal pairs this paper completes (set once ids exist)."""
        if counterpart is not None:
            if paper.kind == _PREPRINT:
                self.links.append((paper, counterpart))
            else:
                self.links.append((counterpart, paper))
        if paper.kind == _PREPRINT and paper.published_doi:
            target = self.by_id["doi"].get(paper.published_doi)
            if target is not None and target is not paper:
                self.links.append((paper, target))
        if paper.kind == _PAPER and paper.doi:
            for preprint in self.naming.get(paper.doi, []):
                if preprint is not paper:
                    self.links.append((preprint, paper))

    def _resolve_links(self) -> set[int]:
        """Set the planned links; the (Python) ids of the papers that gained one."""
        touched: set[int] = set()
        for preprint, journal in self.links:
            if preprint.published_version_id is not None or journal.id is None:
                continue
            if preprint.kind != _PREPRINT or journal is preprint:
                continue
            preprint.published_version_id = journal.id
            preprint.updated_at = self.now
            touched.update((id(preprint), id(journal)))
        return touched

    def _merge(self, paper: StoredPaper, record: PaperRecord) -> str:
        changed = False
        same_source = record.source == paper.source
        newer = same_source and _version(record.extra) >= _version(paper.extra)
        for key in IDS:
            value = getattr(record, key)
            if value and not getattr(paper, key) and value not in self.by_id[key]:
                setattr(paper, key, value)
                changed = True
        if record.published_doi and not paper.published_doi:
            paper.published_doi = record.published_doi
            changed = True
        fields: dict[str, Any] = {
            "title": record.title,
            "abstract": record.abstract,
            "authors": list(record.authors),
            "url": record.url,
            "journal": record.journal,
        }
        for name, value in fields.items():
            if not value:
                continue
            current = getattr(paper, name)
            if current == value:
                continue
            if not current or newer:
                setattr(paper, name, value)
                changed = True
        if newer and record.published and record.published != paper.published:
            paper.published = record.published
            changed = True
        if paper.title_key != title_key(paper.title):
            paper.title_key = title_key(paper.title)
        extra = dict(paper.extra)
        for name, value in record.extra.items():
            if name not in extra or (newer and extra[name] != value):
                extra[name] = value
        if extra != paper.extra:
            paper.extra = extra
            changed = True
        new_origin = not any(s.split("@", 1)[0] == self.origin for s in paper.seen_in)
        if new_origin:
            paper.seen_in = [*paper.seen_in, self.stamp]
        if changed or new_origin:
            paper.updated_at = self.now
        if new_origin:
            return "merged"
        return "updated" if changed else "unchanged"


def _version(extra: dict[str, Any]) -> int:
    raw = str(extra.get("version", "0")).lstrip("v")
    return int(raw) if raw.isdigit() else 0
