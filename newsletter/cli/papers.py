"""`slice fetch`, `slice ingest`, `slice papers`: papers in, and what is stored."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from newsletter.cli.base import err, out, plural, state
from newsletter.core.errors import ConfigError, SomeSourcesFailed
from newsletter.papers.formats import FORMATS

if TYPE_CHECKING:  # ingest and the sources load when a command runs, not for --help
    from newsletter.core.settings import Settings
    from newsletter.core.store import Store
    from newsletter.papers.ingest import IngestResult


def _date(value: str | None, flag: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        # one line, as compose says it (a usage error would print the usage block first)
        raise ConfigError(f"{flag} {value!r} is not a date; write it like 2025-06-09.") from None


def results_table(results: Sequence[IngestResult], title: str) -> Table:
    table = Table(
        title=title,
        title_justify="left",
        box=None,  # no borders: seven counts and a file name fit an 80-column terminal
        pad_edge=False,
        caption="unchanged: stored already, as it was; merged: duplicates merged into a stored "
        "record; linked: preprint and journal version linked",
        caption_justify="left",
    )
    # long file names fold; the counts never shrink away in a narrow terminal
    table.add_column("source", overflow="fold", min_width=20)
    for name in ("fetched", "new", "updated", "unchanged", "merged", "linked", "rejected"):
        table.add_column(name, justify="right", no_wrap=True, min_width=min(len(name), 7))
    for r in results:
        if r.error:
            table.add_row(r.origin, "failed", "-", "-", "-", "-", "-", "-")
            continue
        table.add_row(
            r.origin,
            str(r.fetched),
            str(r.new),
            str(r.updated),
            str(r.unchanged),
            str(r.merged),
            str(r.linked),
            str(len(r.rejected)),
        )
    return table


def _report(results: Sequence[IngestResult], title: str, what: str) -> None:
    out().print(results_table(results, title))
    console = err()
    for r in results:
        for warning in r.warnings:
            console.print(f"Warning: {r.origin}: {warning}")
        for rejection in r.rejected[:20]:
            console.print(f"Rejected: {r.origin}: {rejection.where}: {rejection.reason}")
        if len(r.rejected) > 20:
            console.print(f"Rejected: {r.origin}: ... and {len(r.rejected) - 20} more")
    failed = [r for r in results if r.error]
    if failed:
        kept = "; the others were stored" if len(failed) < len(results) else ""
        reasons = "; ".join(str(r.error).rstrip(".") for r in failed)
        raise SomeSourcesFailed(f"{plural(len(failed), what)} failed{kept}: {reasons}")


class Bars:
    """One progress line per source or file on stderr: records so far, then done or failed."""

    def __init__(self) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[counted]}"),
            TimeElapsedColumn(),
            console=err(),
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> Bars:
        self.progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.progress.stop()

    def start(self, name: str) -> None:
        self.tasks[name] = self.progress.add_task(name, total=None, counted=plural(0, "record"))

    def move(self, name: str, count: int) -> None:
        self.progress.update(self.tasks[name], counted=plural(count, "record"))

    def done(self, result: IngestResult) -> None:
        status = "failed" if result.error else "done"
        self.progress.update(
            self.tasks[result.origin],
            total=1,
            completed=1,
            counted=plural(result.fetched, "record"),
            description=f"{result.origin} ({status})",
        )


def fetch(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(help="First day to fetch (YYYY-MM-DD).")] = None,
    until: Annotated[
        str | None, typer.Option(help="Last day to fetch (YYYY-MM-DD); default today.")
    ] = None,
    source: Annotated[
        list[str] | None, typer.Option("--source", help="Only this source (by name); repeatable.")
    ] = None,
) -> None:
    """Fetch new papers from the sources in slice.toml and store them (one record per work).

    Source kinds for [[sources]] in slice.toml: arxiv (option `query`), pubmed (`term`),
    medrxiv and biorxiv (`category`), rss (`url`). Every kind takes `base_url` or `url`.
    Without --since, reaches back [fetch] lookback_days.
    """
    app = state(ctx)
    settings = app.settings()
    from newsletter.core.timezone import local_today
    from newsletter.papers.fetch import fetch_window, run_fetch, select_sources

    window = fetch_window(
        since=_date(since, "--since"),
        until=_date(until, "--until"),
        today=local_today(datetime.now(UTC), settings.newsletter.tz),
        lookback_days=settings.fetch.lookback_days,
    )
    select_sources(settings, source or ())  # a bad option stops here, before any request
    store = app.store()
    import httpx

    with Bars() as bars, httpx.Client() as client, _scored_after(settings, store):
        report = run_fetch(
            settings,
            store,
            client=client,
            window=window,
            only=source or (),
            on_start=bars.start,
            on_progress=bars.move,
            on_done=bars.done,
        )
    _report(report.results, f"Fetched {window.since} to {window.until}", "source")


@contextlib.contextmanager
def _scored_after(settings: Settings, store: Store) -> Iterator[None]:
    """Score the papers just stored against the profile (the archive lists on-topic ones),
    even when some sources or files failed and the others were stored."""
    try:
        yield
    finally:
        from newsletter.issue.relevance import refresh_store

        refresh_store(settings, store)


def ingest(
    ctx: typer.Context,
    files: Annotated[
        list[Path],
        typer.Argument(
            help="Files to read: PubMed XML, arXiv Atom/RSS, bioRxiv JSON, RSS, Slice JSON/JSONL/CSV."
        ),
    ],
    format: Annotated[
        str | None, typer.Option("--format", help=f"Skip detection: one of {', '.join(FORMATS)}.")
    ] = None,
) -> None:
    """Store papers from local files; the format is detected from each file's content."""
    if format is not None and format not in FORMATS:
        raise ConfigError(f"--format {format!r} is not a format; use one of {', '.join(FORMATS)}.")
    app_state = state(ctx)
    store = app_state.store()
    with Bars() as bars, _scored_after(app_state.settings(), store):
        from newsletter.papers.ingest import ingest_files

        results = ingest_files(
            store, files, fmt=format, on_start=bars.start, on_progress=bars.move, on_done=bars.done
        )
    _report(results, "Ingested", "file")


def papers(
    ctx: typer.Context,
    week: Annotated[
        str | None, typer.Option(help="Only papers published in this ISO week, e.g. 2025-W24.")
    ] = None,
    search: Annotated[
        str, typer.Option(help="Only papers whose title, abstract or authors hold these words.")
    ] = "",
    source: Annotated[
        str, typer.Option(help="Only papers from this source (arxiv, pubmed, or a source's name).")
    ] = "",
    limit: Annotated[int, typer.Option(min=1, help="At most this many papers.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print paper records as JSON.")] = False,
) -> None:
    """List the stored papers, newest first."""
    from newsletter.papers.queries import PaperQuery, as_record, iso_week, list_papers
    from newsletter.papers.text import plain_text

    since, until = iso_week(week) if week else (None, None)
    with state(ctx).store().read() as session:
        # one more than asked for: whether the list stops at --limit or at the last paper
        found = list_papers(
            session,
            PaperQuery(since=since, until=until, search=search, source=source, limit=limit + 1),
        )
    more = len(found) > limit
    found = found[:limit]
    if as_json:
        typer.echo(json.dumps([as_record(p) for p in found], ensure_ascii=False, indent=2))
        return
    if not found:
        filtered = week or search or source
        err().print(
            "No stored paper matches."
            if filtered
            else "No papers stored yet: `slice fetch` gets them from the sources in slice.toml, "
            "`slice ingest FILE` from saved files."
        )
        return
    title = plural(len(found), "paper")
    if more:
        title = f"The first {title}; more are stored (raise --limit to see them)"
    table = Table(title=title, title_justify="left")
    # "id" is the number `slice compose --pin/--exclude` take; the identifier says where it is from
    table.add_column("id", justify="right", no_wrap=True)
    for column in ("published", "source", "kind", "title", "identifier"):
        table.add_column(column, overflow="fold")
    for p in found:
        ident = (
            p.doi
            or (f"PMID {p.pmid}" if p.pmid else "")
            or (f"arXiv {p.arxiv_id}" if p.arxiv_id else "")
        )
        table.add_row(
            str(p.id), p.published.isoformat(), p.source, p.kind, plain_text(p.title), ident
        )
    out().print(table)


def register(app: typer.Typer) -> None:
    app.command()(fetch)
    app.command()(ingest)
    app.command()(papers)
