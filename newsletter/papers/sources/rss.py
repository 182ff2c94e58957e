"""Any RSS or Atom feed (feedparser), arXiv's daily RSS included.

arXiv's feed entries carry the id as ``oai:arXiv.org:2508.13167v1``, all
authors in one ``dc:creator`` string, and a summary that opens with
"arXiv:<id> Announce Type: new Abstract: ..."; that preface is removed and the
announce type kept in ``extra``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from typing import Any

from pydantic import Field

from newsletter.core.errors import ParseError, SourceHTTPError
from newsletter.papers.headings import clean_abstract
from newsletter.papers.names import split_authors
from newsletter.papers.sources.arxiv import arxiv_id
from newsletter.papers.sources.base import (
    FetchContext,
    FetchWindow,
    Options,
    PaperRecord,
    SourceKind,
)
from newsletter.papers.text import clean_markup, clean_plain, clean_title

_ANNOUNCE = re.compile(r"^\s*arXiv:(\S+)\s+Announce Type:\s*([\w-]+)\s*(?:Abstract:\s*)?", re.I)
_DOI = re.compile(r"\b(10\.\d{4,9}/[^\s\"<>]+)")


class RssOptions(Options):
    url: str = Field(description="The feed's address.")
    kind: str = Field(
        "paper", pattern="^(paper|preprint)$", description="What the feed's items are."
    )
    label: str = Field("rss", description="The source name stored on each paper.")
    interval: float = Field(1.0, ge=0)


def _entry_date(entry: Any) -> date | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            return date(value.tm_year, value.tm_mon, value.tm_mday)
    return None


def _authors(entry: Any) -> list[str]:
    names: list[str] = []
    for author in entry.get("authors") or []:
        name = author.get("name", "") if isinstance(author, dict) else str(author)
        names.extend(split_authors(name))
    if not names and entry.get("author"):
        names = split_authors(entry["author"])
    return names


def to_record(entry: Any, *, kind: str, label: str) -> PaperRecord:
    ident_raw = str(entry.get("id", "") or "")
    link = str(entry.get("link", "") or "")
    summary = str(entry.get("summary", "") or "")
    extra: dict[str, Any] = {}
    aid, version = arxiv_id(ident_raw) if "arxiv" in ident_raw.lower() else ("", "")
    if not aid and "arxiv.org/abs/" in link:
        aid, version = arxiv_id(link)
    announce = _ANNOUNCE.match(summary)
    if announce:
        aid = aid or arxiv_id(announce.group(1))[0]
        extra["announce_type"] = announce.group(2).lower()
        summary = summary[announce.end() :]
    if aid:
        kind = "preprint"
        if version:
            extra["version"] = version
    is_html = bool(re.search(r"<[a-zA-Z/]", summary))
    abstract = clean_markup(summary) if is_html else clean_plain(summary)
    title = str(entry.get("title", "") or "")
    doi = None
    for key in ("prism_doi", "dc_identifier"):
        value = str(entry.get(key, "") or "")
        found = _DOI.search(value)
        if found:
            doi = found.group(1)
            break
    tags = [t.get("term") for t in entry.get("tags") or [] if t.get("term")]
    if tags:
        extra["categories"] = tags
    return PaperRecord(
        title=clean_title(clean_plain(title, tex=bool(aid))),
        authors=_authors(entry),
        abstract=clean_abstract(abstract),
        source="arxiv" if aid else label,
        kind=kind,
        published=_entry_date(entry),
        url=f"https://arxiv.org/abs/{aid}" if aid else link,
        journal=str(entry.get("prism_publicationname", "") or ""),
        doi=doi or (f"10.48550/arxiv.{aid}" if aid and "/" not in aid else None),
        arxiv_id=aid or None,
        extra=extra,
    )


def parse_feed(
    body: bytes, *, kind: str = "paper", label: str = "rss", where: str = "feed"
) -> list[PaperRecord]:
    head = body[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        raise SourceHTTPError(
            f"{where}: an HTML page, not an RSS/Atom feed; check the feed's address."
        )
    import feedparser  # here: an ingest of other formats need not load it

    parsed = feedparser.parse(body)
    if parsed.bozo and not parsed.entries:
        problem = parsed.get("bozo_exception")
        raise ParseError(f"{where}: not a readable RSS/Atom feed ({problem})")
    if not parsed.version and not parsed.entries:
        raise ParseError(f"{where}: not an RSS/Atom feed")
    records = []
    for position, entry in enumerate(parsed.entries, 1):
        record = to_record(entry, kind=kind, label=label)
        record.extra["position"] = position
        records.append(record)
    return records


class RssSource:
    kind = "rss"

    def __init__(self, name: str, options: RssOptions) -> None:
        self.name = name
        self.options = options

    def fetch(self, ctx: FetchContext, window: FetchWindow) -> Iterator[PaperRecord]:
        ctx.http.limit(self.options.url, interval=self.options.interval)
        response = ctx.http.get(self.options.url, what=f"source '{self.name}'")
        records = parse_feed(
            response.content,
            kind=self.options.kind,
            label=self.options.label,
            where=f"source '{self.name}'",
        )
        ctx.progress(len(records))
        for record in records:
            # a feed has no date query: keep what falls in the window (undated items too)
            if record.published is None or window.since <= record.published <= window.until:
                yield record


KIND = SourceKind(
    kind="rss",
    options=RssOptions,
    build=lambda name, options: RssSource(name, options),
    summary="any RSS/Atom feed: option `url`",
)
