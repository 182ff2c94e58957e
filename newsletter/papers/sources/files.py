"""Local files for `slice ingest`: the format is detected from the content.

Formats: arXiv API Atom, arXiv RSS, PubMed efetch XML (streamed), bioRxiv /
medRxiv API JSON, any RSS/Atom feed, and Slice's own paper records as JSON
(a list, or ``{"papers": [...]}``), JSON Lines or CSV (authors separated by
``;``).
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

from newsletter.core.errors import ParseError, UnknownFormatError
from newsletter.papers.formats import FORMATS
from newsletter.papers.headings import clean_abstract
from newsletter.papers.names import normalize_name, split_authors
from newsletter.papers.sources import arxiv, biorxiv, pubmed, rss
from newsletter.papers.sources.base import PaperRecord
from newsletter.papers.text import clean_markup, clean_title

RECORD_FIELDS = (
    "title",
    "authors",
    "abstract",
    "source",
    "kind",
    "published",
    "url",
    "journal",
    "doi",
    "arxiv_id",
    "pmid",
    "pmcid",
    "published_doi",
)
HEAD_BYTES = 16384


def detect_format(path: Path) -> str:
    """The format of a file, from its first bytes; UnknownFormatError names what was found."""
    try:
        with path.open("rb") as fh:
            head = fh.read(HEAD_BYTES)
    except OSError as exc:
        raise ParseError(f"{path}: cannot read: {exc.strerror}") from exc
    if not head.strip():
        raise UnknownFormatError(f"{path}: the file is empty")
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    lower = text[:HEAD_BYTES].lower()
    if text.startswith(b"<"):
        if b"<pubmedarticleset" in lower or b"<pubmedarticle>" in lower:
            return "pubmed"
        if b"<esearchresult" in lower:
            raise UnknownFormatError(
                f"{path}: a PubMed esearch answer holds only ids, not papers; save the efetch XML instead."
            )
        if lower.startswith((b"<!doctype html", b"<html")) or b"<html" in lower[:300]:
            raise UnknownFormatError(
                f"{path}: an HTML page, not a paper file (was an error page saved?)"
            )
        if b"<oai-pmh" in lower:
            if b"arxiv.org/oai/arxiv" in lower:
                return "arxiv-oai"
            raise UnknownFormatError(
                f"{path}: OAI-PMH, but not in arXiv's metadata format; harvest with metadataPrefix=arXiv."
            )
        if b"<feed" in lower:
            if b"rss.arxiv.org" in lower or b"oai:arxiv.org" in lower:
                return "arxiv-rss"
            if b"arxiv.org/api" in lower or b"opensearch" in lower:
                return "arxiv"
            return "rss"
        if b"<rss" in lower or b"<rdf:rdf" in lower:
            return "rss"
        raise UnknownFormatError(
            f"{path}: XML, but not PubMed, Atom or RSS; formats Slice reads: {_names()}"
        )
    if text.startswith((b"{", b"[")):
        first_line = text.split(b"\n", 1)[0].strip()
        if b'"collection"' in lower and b'"messages"' in lower:
            return "biorxiv"
        if text.startswith(b"[") and _biorxiv_items(lower):
            return "biorxiv"  # the API's collection saved on its own, without its envelope
        if (
            text.startswith(b"{")
            and first_line.endswith(b"}")
            and b"\n{" in text.replace(b"\r", b"")
        ):
            return "jsonl"
        return "json"
    first = text.split(b"\n", 1)[0].decode("utf-8", "replace").lower()
    if _csv_delimiter(first) is not None:
        return "csv"
    raise UnknownFormatError(f"{path}: unknown format; Slice reads {_names()}")


def _biorxiv_items(lower: bytes) -> bool:
    """Whether a JSON list holds bioRxiv/medRxiv API items (keys no Slice record has)."""
    return any(key in lower for key in (b'"jatsxml"', b'"author_corresponding"')) or (
        b'"server"' in lower and b'"version"' in lower and b'"date"' in lower
    )


def _names() -> str:
    return ", ".join(FORMATS.values())


def read_file(path: Path, fmt: str | None = None) -> Iterator[PaperRecord]:
    """The records of a file (detected format unless ``fmt`` is given), streamed where it matters."""
    fmt = fmt or detect_format(path)
    label = str(path)
    if fmt == "pubmed":
        with path.open("rb") as fh:
            yield from pubmed.iter_articles(fh, label=label)
        return
    if fmt in ("json", "jsonl", "csv", "biorxiv"):
        _check_utf8(path)
    if fmt == "biorxiv":
        with path.open("rb") as fh:
            yield from biorxiv.read_file(fh, label=label)
    elif fmt == "arxiv":
        with path.open("rb") as fh:
            yield from arxiv.parse_feed(fh, label=label)[0]
    elif fmt == "arxiv-oai":
        with path.open("rb") as fh:
            yield from arxiv.parse_oai(fh, label=label)
    elif fmt in ("arxiv-rss", "rss"):
        yield from rss.parse_feed(path.read_bytes(), where=label)
    elif fmt == "json":
        yield from _json_records(path)
    elif fmt == "jsonl":
        yield from _jsonl_records(path)
    elif fmt == "csv":
        yield from _csv_records(path)
    else:
        raise UnknownFormatError(f"{path}: unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def _check_utf8(path: Path) -> None:
    utf8 = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            try:
                utf8.decode(chunk)
            except UnicodeDecodeError as exc:
                raise ParseError(
                    f"{path}: not UTF-8 text (byte 0x{chunk[exc.start]:02x} at offset {offset + exc.start}); "
                    "save the file as UTF-8 and ingest it again."
                ) from None
            offset += len(chunk)
        try:
            utf8.decode(b"", final=True)
        except UnicodeDecodeError:
            raise ParseError(
                f"{path}: not UTF-8 text (cut in the middle of a character at the end)"
            ) from None


def _json_records(path: Path) -> Iterator[PaperRecord]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise ParseError(
            f"{path}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    except RecursionError:
        raise ParseError(f"{path}: JSON nested too deeply to hold paper records") from None
    items = data.get("papers") if isinstance(data, dict) and "papers" in data else data
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        raise ParseError(f'{path}: expected a list of paper records or {{"papers": [...]}}')
    for position, item in enumerate(items, 1):
        yield from_mapping(item, position=f"#{position}")


def _jsonl_records(path: Path) -> Iterator[PaperRecord]:
    with path.open(encoding="utf-8-sig") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ParseError(f"{path}: line {number} is not valid JSON: {exc.msg}") from exc
            except RecursionError:
                raise ParseError(f"{path}: line {number}: JSON nested too deeply") from None
            yield from_mapping(item, position=f"line {number}")


def _csv_delimiter(header: str) -> str | None:
    """The delimiter of a CSV header line that names a title column (comma, semicolon or tab)."""
    for delimiter in (",", ";", "\t"):
        columns = [c.strip().strip('"').lower() for c in header.strip().split(delimiter)]
        if len(columns) > 1 and "title" in columns:
            return delimiter
    return None


def _csv_records(path: Path) -> Iterator[PaperRecord]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        delimiter = _csv_delimiter(fh.readline()) or ","
        fh.seek(0)
        reader = csv.DictReader(fh, delimiter=delimiter)
        unknown = [f for f in reader.fieldnames or [] if f and f.strip() not in RECORD_FIELDS]
        if unknown:
            raise ParseError(
                f"{path}: unknown CSV column '{unknown[0]}'; columns are {', '.join(RECORD_FIELDS)}"
            )
        try:
            for row in reader:
                clean = {k.strip(): v for k, v in row.items() if k}
                yield from_mapping(clean, position=f"line {reader.line_num}")
        except csv.Error as exc:
            raise ParseError(f"{path}: malformed CSV at line {reader.line_num}: {exc}") from exc


def _as_date(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    text = str(value or "").strip()
    if not text:
        return None
    try:
        return (
            datetime.fromisoformat(text.replace("Z", "+00:00")).date()
            if "T" in text
            else date.fromisoformat(text)
        )
    except ValueError:
        return biorxiv.loose_date(text)


def _shape_problem(item: dict[str, Any]) -> str | None:
    """Why a record's fields cannot be read as text, if one cannot: a list where a title
    belongs would be stored as "['a', 'b']". Numbers are fine (a PMID is often one)."""
    for key in RECORD_FIELDS:
        value = item.get(key)
        if key == "authors" and isinstance(value, list):
            if not all(isinstance(a, str | int | float) for a in value):
                return "'authors' holds something other than names"
            continue
        if isinstance(value, bool | list | dict):
            kind = "true/false" if isinstance(value, bool) else type(value).__name__
            kind = {"list": "a list", "dict": "an object"}.get(kind, kind)
            return f"'{key}' is {kind}, not text"
    return None


def from_mapping(item: Any, *, position: str) -> PaperRecord:
    """A paper record from a Slice JSON/JSONL/CSV item; problems become a rejectable record."""
    if not isinstance(item, dict):
        record = PaperRecord(title="", source="file", published=None)
        record.extra.update(position=position, problem="not a JSON object")
        return record
    problem = _shape_problem(item)
    if problem:
        record = PaperRecord(title="", source="file", published=None)
        record.extra.update(position=position, problem=problem)
        return record
    authors_raw = item.get("authors", [])
    if isinstance(authors_raw, str):
        authors = (
            split_authors(authors_raw)
            if ";" in authors_raw
            else [normalize_name(authors_raw)]
            if authors_raw.strip()
            else []
        )
    elif isinstance(authors_raw, list):
        authors = [normalize_name(str(a)) for a in authors_raw if str(a).strip()]
    else:
        authors = []
    published = _as_date(item.get("published"))
    extra = dict(item.get("extra") or {}) if isinstance(item.get("extra"), dict) else {}
    extra["position"] = position
    if item.get("published") and published is None:
        extra["problem"] = (
            f"published date {item.get('published')!r} is not an ISO date (YYYY-MM-DD)"
        )
    record = PaperRecord(
        title=clean_title(clean_markup(str(item.get("title") or ""))),
        authors=[a for a in authors if a],
        abstract=clean_abstract(clean_markup(str(item.get("abstract") or ""))),
        source=str(item.get("source") or "file").strip().lower(),
        kind=str(item.get("kind") or "paper").strip().lower(),
        published=published,
        url=str(item.get("url") or "").strip(),
        journal=str(item.get("journal") or "").strip(),
        extra=extra,
    )
    for key in ("doi", "arxiv_id", "pmid", "pmcid", "published_doi"):
        value = item.get(key)
        if value not in (None, ""):
            setattr(record, key, str(value).strip())
    return record
