"""A paper record checked before it is stored: required fields, kinds, identifiers.

`validate` normalizes a record in place (sanitized title and abstract,
normalized identifiers and names) or says why it must be rejected. A big file's
records are validated in the read-ahead process (`newsletter.papers.readahead`),
a rejected one carrying its reason to ingest as ``extra["problem"]``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from newsletter.papers.names import normalize_name, title_key
from newsletter.papers.sources.arxiv import arxiv_id as split_arxiv_id
from newsletter.papers.sources.base import PaperRecord
from newsletter.papers.text import (
    bound_nesting,
    clean_tex,
    needs_scrub,
    plain_text,
    sanitize,
    scrub,
)

# PaperKind's values, spelled out: the read-ahead process that validates a big file's records
# need not import the models and SQLAlchemy (a test checks that the two agree)
KINDS = frozenset({"paper", "preprint"})
IDS = ("doi", "pmid", "pmcid", "arxiv_id")
_DOI_PREFIX = re.compile(r"^(?:https?://(?:dx\.)?doi\.org/|doi:\s*)", re.I)


# --- identifiers ------------------------------------------------------------


def normalize_doi(value: str | None) -> str | None:
    """'https://doi.org/10.1101/ABC' → '10.1101/abc'; None when it is not a DOI."""
    if not value:
        return None
    doi = _DOI_PREFIX.sub("", value.strip()).strip().rstrip(".").lower()
    return doi if re.match(r"^10\.\d{4,9}/\S+$", doi) else None


def normalize_pmid(value: str | None) -> str | None:
    text = (value or "").strip()
    return text if text.isdigit() and text != "0" else None


def normalize_pmcid(value: str | None) -> str | None:
    text = (value or "").strip().upper()
    if text.isdigit():
        text = "PMC" + text
    return text if re.fullmatch(r"PMC\d+", text) else None


def normalize_arxiv_id(value: str | None) -> str | None:
    ident, _version = split_arxiv_id(value or "")
    return ident or None


# --- validation -------------------------------------------------------------

_TEXT_FIELDS = ("title", "abstract", "source", "kind", "url", "journal")
_ID_FIELDS = ("doi", "arxiv_id", "pmid", "pmcid", "published_doi")
_SCRUBBED_FIELDS = _TEXT_FIELDS + _ID_FIELDS


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    if isinstance(value, dict):
        return {scrub(str(k)): _scrubbed(v) for k, v in value.items()}
    return value


def _gather(value: Any, out: list[str]) -> bool:
    """Add every string in ``value`` to ``out``; False if `_scrubbed` would change a non-string
    (a key that is no string, which it turns into one)."""
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, list):
        return all(_gather(v, out) for v in value)
    elif isinstance(value, dict):
        for key, item in value.items():
            if type(key) is not str or not _gather(item, out):
                return False
            out.append(key)
    return True


def _clean_already(record: PaperRecord) -> bool:
    """True when no text of the record holds a character `scrub` removes (the common case).

    One regex pass over all the texts joined by newlines (which `scrub` keeps),
    instead of one per field, author and extra value.
    """
    texts: list[str] = []
    for name in _SCRUBBED_FIELDS:
        value = getattr(record, name)
        if isinstance(value, str):
            texts.append(value)
    for author in record.authors:
        if type(author) is not str:
            return False
        texts.append(author)
    return _gather(record.extra, texts) and not needs_scrub("\n".join(texts))


def _copied(value: Any) -> Any:
    if isinstance(value, list):
        return [_copied(v) for v in value]
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    return value


def _scrub_record(record: PaperRecord) -> None:
    """Every text a source gave, whatever the source: no control characters."""
    if _clean_already(record):  # copied all the same, as the long way does
        record.authors = list(record.authors)
        record.extra = _copied(record.extra)
        return
    for name in _TEXT_FIELDS:
        value = getattr(record, name)
        if isinstance(value, str):
            setattr(record, name, scrub(value))
    for key in _ID_FIELDS:
        value = getattr(record, key)
        if isinstance(value, str):
            setattr(record, key, scrub(value))
    record.authors = [scrub(str(a)) for a in record.authors]
    record.extra = _scrubbed(record.extra)


# journals date issues months ahead (PubMed's print dates); nothing is dated further
FUTURE_DAYS = 400
EARLIEST = date(1800, 1, 1)


def _plausible(published: date) -> bool:
    return EARLIEST <= published <= date.today() + timedelta(days=FUTURE_DAYS)


_NORMALIZERS: dict[str, Callable[[str | None], str | None]] = {
    "doi": normalize_doi,
    "pmid": normalize_pmid,
    "pmcid": normalize_pmcid,
    "arxiv_id": normalize_arxiv_id,
}


def validate(record: PaperRecord) -> str | None:
    """Normalize the record in place; the reason it must be rejected, or None."""
    problem = record.extra.pop("problem", None)
    if problem:
        return str(problem)
    if record.checked:  # normalized already, by validate itself (in the read-ahead process)
        return None
    _scrub_record(record)
    record.title = " ".join(clean_tex(bound_nesting(sanitize(record.title))).split())
    record.abstract = clean_tex(bound_nesting(sanitize(record.abstract))).strip()
    if not plain_text(record.title).strip():
        return "no title"
    if record.published is None:
        return "no publication date"
    if not isinstance(record.published, date):
        return "publication date is not a date"
    if not _plausible(record.published):
        # a paper dated 2099 would head the archive's newest-first list for decades
        return f"publication date {record.published.isoformat()} is not plausible"
    record.kind = (record.kind or "").strip().lower()
    if record.kind not in KINDS:
        return f"kind must be 'paper' or 'preprint', not {record.kind!r}"
    record.source = (record.source or "").strip().lower()
    if not record.source:
        return "no source"
    for key, normalize in _NORMALIZERS.items():
        raw = getattr(record, key)
        if raw in (None, ""):
            setattr(record, key, None)
            continue
        value = normalize(str(raw))
        if value is None:
            return f"{key} {raw!r} is not valid"
        setattr(record, key, value)
    record.published_doi = normalize_doi(record.published_doi)
    if record.published_doi == record.doi:
        record.published_doi = None
    record.authors = [a for a in (normalize_name(str(n)) for n in record.authors) if a]
    record.extra.pop("position", None)
    record.keyed_title = (record.title, title_key(record.title))
    record.checked = True
    return None
