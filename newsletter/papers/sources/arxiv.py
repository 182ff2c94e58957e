"""arXiv: the export API (Atom), both the legacy and the Nov-2025 response formats.

The API is asked for one page at a time, newest first, restricted to the
window with ``submittedDate:[.. TO ..]``; at most one request every 3 seconds.
Errors arrive as HTTP 200 with one entry titled "Error", or as the plain text
"Rate exceeded."; both are errors, never papers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime
from typing import IO

from lxml import etree
from pydantic import Field

from newsletter.core.errors import ParseError, SourceError, SourceHTTPError
from newsletter.papers.names import normalize_name
from newsletter.papers.sources.base import (
    FetchContext,
    FetchWindow,
    Options,
    PaperRecord,
    SourceKind,
    xml_problem,
)
from newsletter.papers.text import clean_plain, clean_title

ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"
DEFAULT_URL = "https://export.arxiv.org/api/query"
EMPTY_PAGE_RETRIES = 2

_ID = re.compile(
    r"(?:arxiv\.org/abs/|^arXiv:|^oai:arXiv\.org:|^)([a-z-]+(?:\.[A-Z]{2})?/\d{7}|\d{4}\.\d{4,5})(v\d+)?$",
    re.I,
)


def arxiv_id(raw: str) -> tuple[str, str]:
    """('2201.13452', 'v1') from an entry id, URL or 'arXiv:2201.13452v1'; old ids too."""
    match = _ID.search(raw.strip())
    if not match:
        return "", ""
    return match.group(1), (match.group(2) or "")


class ArxivOptions(Options):
    query: str = Field(description="arXiv search query, e.g. 'cat:eess.IV AND abs:radiology'.")
    base_url: str = DEFAULT_URL
    page_size: int = Field(100, ge=1, le=2000)
    max_results: int = Field(2000, ge=1, le=30000)
    interval: float = Field(3.0, ge=0, description="Seconds between requests (arXiv asks for 3).")


def _date(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00")).date()
    except ValueError:
        return None


def _text(el: etree._Element | None) -> str:
    return "".join(el.itertext()) if el is not None else ""


def check_body(body: bytes, *, label: str) -> None:
    """Plain-text and HTML answers where Atom was expected are errors."""
    head = body[:512].lstrip()
    if head.startswith(b"Rate exceeded"):
        raise SourceHTTPError(
            f"{label}: arXiv says 'Rate exceeded.'; wait a few minutes and fetch again."
        )
    if head[:15].lower().startswith((b"<!doctype html", b"<html")):
        raise SourceHTTPError(
            f"{label}: arXiv answered with an HTML page, not Atom; check base_url."
        )


def parse_feed(
    source: bytes | IO[bytes], *, label: str = "arXiv"
) -> tuple[list[PaperRecord], int | None]:
    """Records of one API answer, and the total the answer reports."""
    if isinstance(source, bytes):
        check_body(source, label=label)
        try:
            root = etree.fromstring(
                source, parser=etree.XMLParser(resolve_entities=False, no_network=True)
            )
        except etree.XMLSyntaxError as exc:
            raise ParseError(
                f"{label}: malformed or truncated Atom XML {xml_problem(exc)}"
            ) from exc
    else:
        try:
            root = etree.parse(
                source, parser=etree.XMLParser(resolve_entities=False, no_network=True)
            ).getroot()
        except etree.XMLSyntaxError as exc:
            raise ParseError(
                f"{label}: malformed or truncated Atom XML {xml_problem(exc)}"
            ) from exc
    if root.tag != f"{ATOM}feed":
        raise ParseError(f"{label}: expected an Atom <feed>, found <{etree.QName(root).localname}>")
    total_el = root.find(f"{OPENSEARCH}totalResults")
    total = (
        int(total_el.text)
        if total_el is not None and (total_el.text or "").strip().isdigit()
        else None
    )
    records = []
    for entry in root.iterfind(f"{ATOM}entry"):
        title = _text(entry.find(f"{ATOM}title")).strip()
        entry_id = _text(entry.find(f"{ATOM}id")).strip()
        if title == "Error" and "/api/errors" in entry_id:
            message = " ".join(_text(entry.find(f"{ATOM}summary")).split())
            raise SourceError(
                f"{label}: arXiv refused the query: {message}; check the source's query."
            )
        records.append(_record(entry, entry_id, title))
    return records, total


def _record(entry: etree._Element, entry_id: str, title: str) -> PaperRecord:
    ident, version = arxiv_id(entry_id)
    authors = [
        normalize_name(_text(a.find(f"{ATOM}name"))) for a in entry.iterfind(f"{ATOM}author")
    ]
    categories = [c.get("term", "") for c in entry.iterfind(f"{ATOM}category") if c.get("term")]
    primary = entry.find(f"{ARXIV}primary_category")
    journal_ref = " ".join(_text(entry.find(f"{ARXIV}journal_ref")).split())
    published_doi = _text(entry.find(f"{ARXIV}doi")).strip() or None
    extra: dict[str, object] = {"categories": categories}
    if primary is not None and primary.get("term"):
        extra["primary_category"] = primary.get("term")
    if version:
        extra["version"] = version
    if journal_ref:
        extra["journal_ref"] = journal_ref
    comment = " ".join(_text(entry.find(f"{ARXIV}comment")).split())
    if comment:
        extra["comment"] = comment
    updated = _date(_text(entry.find(f"{ATOM}updated")))
    if updated:
        extra["updated"] = updated.isoformat()
    return PaperRecord(
        title=clean_title(clean_plain(title)),
        authors=[a for a in authors if a],
        abstract=clean_plain(_text(entry.find(f"{ATOM}summary"))),
        source="arxiv",
        kind="preprint",
        published=_date(_text(entry.find(f"{ATOM}published"))),
        # built from the id, never picked from <link> attributes (they changed in 2025)
        url=f"https://arxiv.org/abs/{ident}" if ident else "",
        doi=f"10.48550/arxiv.{ident}" if ident and "/" not in ident else None,
        arxiv_id=ident or None,
        published_doi=published_doi,
        extra=extra,
    )


class ArxivSource:
    kind = "arxiv"

    def __init__(self, name: str, options: ArxivOptions) -> None:
        self.name = name
        self.options = options
        self.warnings: list[str] = []

    def query_for(self, window: FetchWindow) -> str:
        span = f"submittedDate:[{window.since:%Y%m%d}0000 TO {window.until:%Y%m%d}2359]"
        return f"({self.options.query}) AND {span}"

    def fetch(self, ctx: FetchContext, window: FetchWindow) -> Iterator[PaperRecord]:
        opts = self.options
        ctx.http.limit(opts.base_url, interval=opts.interval)
        start = 0
        seen = 0
        empty_pages = 0
        while start < opts.max_results:
            size = min(opts.page_size, opts.max_results - start)
            response = ctx.http.get(
                opts.base_url,
                params={
                    "search_query": self.query_for(window),
                    "start": start,
                    "max_results": size,
                    "sortBy": "submittedDate",
                    "sortOrder": "descending",
                },
                what=f"source '{self.name}'",
            )
            records, total = parse_feed(response.content, label=f"source '{self.name}'")
            if not records and total is not None and start < total:
                # the API now and then answers a page empty although more remain: ask again
                empty_pages += 1
                if empty_pages <= EMPTY_PAGE_RETRIES:
                    continue
                self.warnings.append(
                    f"arXiv kept answering an empty page at {start} of {total} results; "
                    "the rest were not fetched, run `slice fetch` again later."
                )
                break
            empty_pages = 0
            yield from records
            seen += len(records)
            ctx.progress(seen)
            start += len(records)
            if not records or (start >= total if total is not None else len(records) < size):
                break


KIND = SourceKind(
    kind="arxiv",
    options=ArxivOptions,
    build=lambda name, options: ArxivSource(name, options),
    summary="arXiv API search (Atom): option `query`",
)


# --- OAI-PMH (bulk harvests saved to a file) ---------------------------------

OAI = "{http://www.openarchives.org/OAI/2.0/}"
OAI_ARXIV = "{http://arxiv.org/OAI/arXiv/}"


def parse_oai(source: IO[bytes], *, label: str = "arXiv OAI-PMH") -> Iterator[PaperRecord]:
    """Records of an OAI-PMH ListRecords answer in the ``arXiv`` metadata format."""
    try:
        context = etree.iterparse(
            source, events=("end",), tag=f"{OAI}record", resolve_entities=False, no_network=True
        )
        for position, (_event, node) in enumerate(context, 1):
            header = node.find(f"{OAI}header")
            meta = node.find(f"{OAI}metadata/{OAI_ARXIV}arXiv")
            if header is None or header.get("status") == "deleted" or meta is None:
                node.clear()
                continue
            record = _oai_record(meta)
            record.extra["position"] = position
            yield record
            node.clear()
    except etree.XMLSyntaxError as exc:
        raise ParseError(f"{label}: malformed or truncated XML {xml_problem(exc)}") from exc


def _oai_record(meta: etree._Element) -> PaperRecord:
    def text(tag: str) -> str:
        return _text(meta.find(f"{OAI_ARXIV}{tag}"))

    ident, _version = arxiv_id(text("id"))
    authors = []
    for author in meta.iterfind(f"{OAI_ARXIV}authors/{OAI_ARXIV}author"):
        parts = [
            _text(author.find(f"{OAI_ARXIV}{part}")).strip()
            for part in ("forenames", "keyname", "suffix")
        ]
        name = " ".join(p for p in parts if p)
        if name:
            authors.append(clean_plain(name))
    extra: dict[str, object] = {"categories": text("categories").split()}
    journal_ref = " ".join(text("journal-ref").split())
    if journal_ref:
        extra["journal_ref"] = journal_ref
    return PaperRecord(
        title=clean_title(clean_plain(text("title"))),
        authors=authors,
        abstract=clean_plain(text("abstract")),
        source="arxiv",
        kind="preprint",
        published=_date(text("created")),
        url=f"https://arxiv.org/abs/{ident}" if ident else "",
        doi=f"10.48550/arxiv.{ident}" if ident and "/" not in ident else None,
        arxiv_id=ident or None,
        published_doi=text("doi").strip() or None,
        extra=extra,
    )
