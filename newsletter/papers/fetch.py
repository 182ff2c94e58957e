"""`slice fetch`: run the configured sources and store what they bring.

Each source is fetched whole, then stored in one transaction; a source that
fails is reported with its reason and stores nothing, and the others go on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import httpx

from newsletter.core.clock import Clock
from newsletter.core.errors import ConfigError, NewsletterError
from newsletter.core.settings import Settings, SourceSettings
from newsletter.core.store import Store
from newsletter.papers.ingest import IngestResult, ingest
from newsletter.papers.sources import FetchContext, FetchWindow, Source, build_source
from newsletter.papers.sources.http import PoliteClient


@dataclass
class FetchReport:
    window: FetchWindow
    results: list[IngestResult] = field(default_factory=list)
    # (time on the injected clock, URL) of every request sent, retries included
    requests: list[tuple[float, str]] = field(default_factory=list)

    @property
    def failed(self) -> list[IngestResult]:
        return [r for r in self.results if not r.ok]


def fetch_window(
    *, since: date | None, until: date | None, today: date, lookback_days: int
) -> FetchWindow:
    """The window to fetch: --since/--until, or the last ``lookback_days`` days up to today."""
    end = until or today
    start = since or (end - timedelta(days=lookback_days))
    if start > end:
        raise ConfigError(f"--since {start} is after --until {end}; swap them.")
    return FetchWindow(start, end)


def select_sources(
    settings: Settings, only: Sequence[str] = ()
) -> list[tuple[SourceSettings, Source]]:
    """The sources to run, built and checked up front (a bad option stops before any request)."""
    entries = settings.sources
    if not entries:
        raise ConfigError(
            "no sources configured: add a [[sources]] entry (name, kind, options) to slice.toml."
        )
    names = {e.name for e in entries}
    for name in only:
        if name not in names:
            raise ConfigError(f"no source named '{name}'; configured: {', '.join(sorted(names))}.")
    chosen = [e for e in entries if e.name in only] if only else [e for e in entries if e.enabled]
    if not chosen:
        raise ConfigError(
            "every source in slice.toml has enabled = false; enable one, or run one by name "
            "with --source NAME."
        )
    return [(entry, build_source(entry)) for entry in chosen]


def run_fetch(
    settings: Settings,
    store: Store,
    *,
    client: httpx.Client,
    window: FetchWindow,
    only: Sequence[str] = (),
    clock: Clock | None = None,
    on_start: Callable[[str], None] | None = None,
    on_progress: Callable[[str, int], None] | None = None,
    on_done: Callable[[IngestResult], None] | None = None,
) -> FetchReport:
    sources = select_sources(settings, only)
    polite = PoliteClient(
        client,
        clock=clock,
        retries=settings.fetch.retries,
        timeout=settings.fetch.timeout,
        contact=settings.fetch.contact_email,
    )
    report = FetchReport(window, requests=polite.log.entries)
    for entry, source in sources:
        if on_start:
            on_start(entry.name)
        ctx = FetchContext(
            http=polite,
            contact_email=settings.fetch.contact_email,
            pubmed_api_key=settings.secrets.pubmed_api_key,
            progress=_progress_for(entry.name, on_progress),
        )
        try:
            records = list(source.fetch(ctx, window))
            result = ingest(store, records, origin=entry.name)
        except NewsletterError as exc:
            result = IngestResult(origin=entry.name, error=" ".join(str(exc).split()))
        result.warnings.extend(getattr(source, "warnings", []))
        report.results.append(result)
        if on_done:
            on_done(result)
    return report


def _progress_for(
    name: str, on_progress: Callable[[str, int], None] | None
) -> Callable[[int], None]:
    def report(count: int) -> None:
        if on_progress is not None:
            on_progress(name, count)

    return report
