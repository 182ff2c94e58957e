"""medRxiv and bioRxiv: the api.biorxiv.org ``details`` endpoint.

A date window returns every version of every preprint posted in it: the
highest version per DOI wins. Pages are asked for by cursor, advancing by the
page size the answer reports (``messages[0].count``: 100 documented, 30 seen),
until a page comes back empty; "total" over-counts and is not trusted. "no
posts found" and an empty body are an empty result, not an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from datetime import date
from typing import IO, Any

from pydantic import Field

from newsletter.core.errors import ParseError, SourceHTTPError
from newsletter.papers.headings import clean_abstract
from newsletter.papers.names import split_authors
from newsletter.papers.sources.base import (
    FetchContext,
    FetchWindow,
    Options,
    PaperRecord,
    SourceKind,
)
from newsletter.papers.text import clean_plain, clean_title

DEFAULT_URL = "https://api.biorxiv.org"
MAX_PAGES = 2000


class BiorxivOptions(Options):
    category: str = Field(
        "", description="Subject category, e.g. 'radiology and imaging'; empty for all."
    )
    base_url: str = DEFAULT_URL


def loose_date(text: str) -> date | None:
    """'2026-6-30' or '2026-06-30' → a date (the API does not pad)."""
    match = re.fullmatch(r"\s*(\d{4})-(\d{1,2})-(\d{1,2})\s*", text or "")
    if not match:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


def _version(item: dict[str, Any]) -> int:
    try:
        return int(str(item.get("version", "1")).strip() or 1)
    except ValueError:
        return 1


_TEXT_KEYS = ("doi", "title", "authors", "abstract", "date", "published", "server")


def _kind_of(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    return "a list" if isinstance(value, list) else "an object"


def _texts(item: dict[str, Any]) -> tuple[dict[str, str], str | None]:
    """The item's text fields (a missing or null one is empty); and why it is unusable, if it is."""
    texts: dict[str, str] = {}
    for key in _TEXT_KEYS:
        value = item.get(key)
        if value is None:
            texts[key] = ""
        elif isinstance(value, str):
            texts[key] = value
        else:
            return texts, f"'{key}' is {_kind_of(value)}, not text"
    return texts, None


def to_record(item: Any, *, server: str = "") -> PaperRecord:
    """A record from one item of a collection; an unusable item is a record with its problem."""
    if not isinstance(item, dict):
        record = PaperRecord(title="", source=server or "biorxiv", published=None)
        record.extra["problem"] = f"{_kind_of(item)}, not a JSON object"
        return record
    texts, problem = _texts(item)
    if problem:
        record = PaperRecord(title="", source=server or "biorxiv", published=None)
        record.extra["problem"] = problem
        record.doi = texts.get("doi", "").strip() or None
        return record
    server = (server or texts["server"] or "biorxiv").lower()
    doi = texts["doi"].strip() or None
    version = _version(item)
    published = texts["published"].strip()
    extra: dict[str, Any] = {"version": version}
    for key in (
        "category",
        "type",
        "license",
        "author_corresponding",
        "author_corresponding_institution",
    ):
        value = item.get(key)
        if value and value != "NA":
            extra[key] = value
    return PaperRecord(
        title=clean_title(clean_plain(texts["title"], tex=False)),
        authors=split_authors(texts["authors"]),
        abstract=clean_abstract(clean_plain(texts["abstract"], tex=False)),
        source=server if server in ("medrxiv", "biorxiv") else "biorxiv",
        kind="preprint",
        published=loose_date(texts["date"]),
        url=f"https://www.{server}.org/content/{doi}v{version}" if doi else "",
        doi=doi,
        published_doi=published if published and published != "NA" else None,
        extra=extra,
    )


def highest_versions(items: Iterable[Any]) -> list[Any]:
    """One item per DOI: its highest version (first seen order kept); items that are not
    objects, or name no DOI as text, pass through for `to_record` to judge."""
    best: dict[str, dict[str, Any]] = {}
    loose: list[Any] = []
    for item in items:
        doi = item.get("doi") if isinstance(item, dict) else None
        doi = doi.strip().lower() if isinstance(doi, str) else ""
        if not doi:
            loose.append(item)
            continue
        if doi not in best or _version(item) >= _version(best[doi]):
            best[doi] = item
    return [*best.values(), *loose]


def parse_page(body: bytes | str, *, label: str) -> tuple[list[Any], int]:
    """(collection, page size) of one answer; an empty body or 'no posts found' is empty."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    if not text.strip():
        return [], 0
    if text.lstrip()[:15].lower().startswith(("<!doctype html", "<html")):
        raise SourceHTTPError(
            f"{label}: the API answered with an HTML page, not JSON; check base_url."
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(
            f"{label}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    except RecursionError:
        raise ParseError(f"{label}: JSON nested too deeply to be a bioRxiv answer") from None
    if isinstance(data, list):  # a collection saved without the answer around it
        return list(data), len(data)
    if not isinstance(data, dict):
        raise ParseError(f"{label}: expected a JSON object with 'messages' and 'collection'")
    messages = data.get("messages") or [{}]
    first = (
        messages[0]
        if isinstance(messages, list) and messages and isinstance(messages[0], dict)
        else {}
    )
    status = str(first.get("status", "ok")).strip().lower()
    collection = data.get("collection") or []
    if status != "ok" and not collection:
        if "no posts found" in status or "not found" in status:
            return [], 0
        raise SourceHTTPError(f"{label}: the API said: {first.get('status')}")
    if not isinstance(collection, list):
        raise ParseError(f"{label}: 'collection' is not a list")
    try:
        count = int(first.get("count", len(collection)))
    except (TypeError, ValueError):
        count = len(collection)
    # items that are not objects stay: each is rejected by name, not dropped unseen
    return list(collection), count or len(collection)


def read_file(stream: IO[bytes], *, label: str) -> Iterator[PaperRecord]:
    """A saved details/pubs answer: highest version per DOI."""
    collection, _ = parse_page(stream.read(), label=label)
    positions = {id(item): position for position, item in enumerate(collection, 1)}
    for item in highest_versions(collection):
        position = positions[id(item)]
        if (
            isinstance(item, dict) and "preprint_doi" in item and "doi" not in item
        ):  # the pubs/ endpoint
            item = {
                "doi": item.get("preprint_doi"),
                "title": item.get("preprint_title", ""),
                "authors": item.get("preprint_authors", ""),
                "abstract": item.get("preprint_abstract", ""),
                "date": item.get("preprint_date", ""),
                "category": item.get("preprint_category", ""),
                "published": item.get("published_doi", ""),
                "server": item.get("preprint_platform", ""),
            }
        record = to_record(item)
        record.extra["position"] = f"#{position}"
        yield record


class BiorxivSource:
    def __init__(self, name: str, options: BiorxivOptions, *, server: str) -> None:
        self.name = name
        self.options = options
        self.kind = server
        self.server = server

    def fetch(self, ctx: FetchContext, window: FetchWindow) -> Iterator[PaperRecord]:
        base = self.options.base_url.rstrip("/")
        label = f"source '{self.name}'"
        ctx.http.limit(base, per_second=2)
        wanted = self.options.category.strip().lower().replace("_", " ")
        span = f"{window.since.isoformat()}/{window.until.isoformat()}"
        params = {"category": wanted.replace(" ", "_")} if wanted else None
        cursor = 0
        items: list[dict[str, Any]] = []
        for _page in range(MAX_PAGES):
            response = ctx.http.get(
                f"{base}/details/{self.server}/{span}/{cursor}", params=params, what=label
            )
            collection, count = parse_page(response.content, label=label)
            if not collection:
                break
            items.extend(
                c
                for c in collection
                if not wanted
                or (isinstance(c, dict) and str(c.get("category", "")).strip().lower() == wanted)
            )
            ctx.progress(len(items))
            cursor += count or len(collection)
        for item in highest_versions(items):
            yield to_record(item, server=self.server)


MEDRXIV = SourceKind(
    kind="medrxiv",
    options=BiorxivOptions,
    build=lambda name, options: BiorxivSource(name, options, server="medrxiv"),
    summary="medRxiv preprints by date window: option `category`",
)
BIORXIV = SourceKind(
    kind="biorxiv",
    options=BiorxivOptions,
    build=lambda name, options: BiorxivSource(name, options, server="biorxiv"),
    summary="bioRxiv preprints by date window: option `category`",
)
