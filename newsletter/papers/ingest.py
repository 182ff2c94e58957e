"""Paper records into the store: validated, deduplicated, a chunk at a time.

`ingest` validates each record (`newsletter.papers.records`) and hands valid
ones to the `newsletter.papers.merge.Merger`, which finds each one's stored twin
(one record per work, preprints linked to their journal versions).

Records are stored a chunk at a time, each chunk in its own short write
transaction (a few tens of milliseconds), so that a long ingest never keeps the
signup form, an unsubscribe or a send waiting. A file that breaks halfway keeps
the chunks stored before the break; ingesting it again, fixed, stores the rest,
and nothing twice. Rows are read and written below the ORM (`newsletter.papers.rows`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from newsletter.core.errors import NewsletterError, ParseError, StoreError
from newsletter.core.models import utcnow
from newsletter.core.store import Store, retry_busy
from newsletter.papers.merge import Merger
from newsletter.papers.records import validate
from newsletter.papers.sources.base import PaperRecord

# --- results ----------------------------------------------------------------


@dataclass
class Rejection:
    where: str
    reason: str


@dataclass
class IngestResult:
    """What one file or one source brought: counts, rejections, and any failure."""

    origin: str
    fetched: int = 0
    new: int = 0
    updated: int = 0
    merged: int = 0
    linked: int = 0
    unchanged: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    longest_write_ms: float = 0.0  # the longest write transaction (chunk) of this ingest

    @property
    def stored(self) -> int:
        return self.new + self.updated + self.merged + self.linked + self.unchanged

    @property
    def ok(self) -> bool:
        return self.error is None


CHUNK = 250  # records per write transaction (each well under a second of write lock)
INGEST_LOCK = 5173012  # PostgreSQL advisory lock held by each ingest transaction


# --- the entry point --------------------------------------------------------


def ingest(
    store: Store,
    records: Iterable[PaperRecord],
    *,
    origin: str,
    now: datetime | None = None,
    progress: Callable[[int], None] | None = None,
    result: IngestResult | None = None,
) -> IngestResult:
    """Store ``records`` a chunk at a time; a record that fails validation is counted, not stored.

    An exception while the records are read (a truncated file, a source that
    stops answering) propagates; the chunks stored before it stay, and are
    counted in ``result`` when the caller passes one.
    """
    result = result if result is not None else IngestResult(origin=origin)
    merger_now = now or utcnow()
    chunk: list[PaperRecord] = []
    for record in records:
        result.fetched += 1
        where = record.ref()
        reason = validate(record)
        if reason:
            result.rejected.append(Rejection(where, reason))
            continue
        chunk.append(record)
        if len(chunk) >= CHUNK:
            _store_chunk(store, chunk, result, merger_now)
            chunk = []
            if progress is not None:
                progress(result.fetched)
    if chunk:
        _store_chunk(store, chunk, result, merger_now)
    if progress is not None:
        progress(result.fetched)
    return result


def _store_chunk(
    store: Store, chunk: list[PaperRecord], result: IngestResult, moment: datetime
) -> None:
    """One chunk in one short write transaction, run again whole while the database is busy."""

    def once() -> list[str]:
        started = time.perf_counter()
        with store.write_connection() as conn:
            if conn.dialect.name == "postgresql":
                # ingests take turns, as SQLite's write lock makes them do: each one's
                # reads then see every paper the one before it stored
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": INGEST_LOCK})
            outcomes = Merger(conn, origin=result.origin, now=moment).add_many(chunk)
        held = (time.perf_counter() - started) * 1000
        result.longest_write_ms = max(result.longest_write_ms, held)
        return outcomes

    try:
        try:
            outcomes = retry_busy(once, seconds=store.busy_seconds)
        except IntegrityError:
            # another writer (not an ingest) stored one of these works between our
            # read and write: read again, and this time the chunk meets it
            outcomes = retry_busy(once, seconds=store.busy_seconds)
    except IntegrityError as exc:
        raise StoreError(
            f"{result.origin}: another program kept storing the same papers at the same time; "
            f"{result.stored} records were stored before it, run the ingest again for the rest."
        ) from exc
    for outcome in outcomes:
        setattr(result, outcome, getattr(result, outcome) + 1)
    # the next chunk's lock waits if others wait for theirs: readers leaving, signups
    store.give_way()


def ingest_files(
    store: Store,
    paths: Iterable[Path],
    *,
    fmt: str | None = None,
    now: datetime | None = None,
    on_start: Callable[[str], None] | None = None,
    on_progress: Callable[[str, int], None] | None = None,
    on_done: Callable[[IngestResult], None] | None = None,
) -> list[IngestResult]:
    """Each file in turn; a file that cannot be read is a result with an error."""
    from newsletter.papers.readahead import read_records

    results = []
    for path in paths:
        origin = f"file:{path.name}"
        if on_start is not None:
            on_start(origin)

        def progress(count: int, origin: str = origin) -> None:
            if on_progress is not None:
                on_progress(origin, count)

        result = IngestResult(origin=origin)
        try:
            if path.is_dir():
                raise ParseError(f"{path}: is a folder; name the files in it (e.g. {path}/*.xml)")
            if path.exists() and not path.is_file():
                raise ParseError(f"{path}: not a regular file; save the feed to a file first")
            if not path.is_file():
                raise ParseError(f"{path}: no such file")
            ingest(
                store,
                read_records(path, fmt),
                origin=origin,
                now=now,
                progress=progress,
                result=result,
            )
        except NewsletterError as exc:
            result.error = " ".join(str(exc).split())
            if result.stored:
                result.error += (
                    f" ({result.stored} records before it were stored; ingesting the file again "
                    "once it is fixed stores the rest, and nothing twice)"
                )
        results.append(result)
        if on_done is not None:
            on_done(result)
    return results
