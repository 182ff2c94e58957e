"""The parameters of an archive search: all of them live in the URL.

`parse_params` reads them from a query string and never fails: anything unusable is
dropped with a note for the page; `SearchParams.query_string` writes them back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, Literal
from urllib.parse import urlencode

from newsletter.core.models import PaperKind
from newsletter.papers.searchquery import clean_text

Sort = Literal["newest", "oldest", "relevance"]
SORTS: tuple[Sort, ...] = ("newest", "oldest", "relevance")
PER_PAGE_CHOICES = (10, 25, 50)
DEFAULT_PER_PAGE = 10
MAX_PAGE = 1_000_000

_SOURCE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,39}$")


@dataclass(frozen=True)
class SearchParams:
    """What a reader asked for. `query_string` turns it back into a URL."""

    q: str = ""
    source: str = ""
    kind: str = ""
    since: date | None = None
    until: date | None = None
    sort: Sort | None = None  # None: relevance with a query, newest without
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE

    @property
    def effective_sort(self) -> Sort:
        if self.sort == "relevance" and not self.q.strip():
            return "newest"
        return self.sort or ("relevance" if self.q.strip() else "newest")

    @property
    def filtered(self) -> bool:
        return bool(self.q.strip() or self.source or self.kind or self.since or self.until)

    def query_string(self, **changes: Any) -> str:
        """``?q=...`` for these parameters with ``changes``; defaults left out."""
        params = replace(self, **changes)
        pairs: list[tuple[str, str]] = []
        if params.q:
            pairs.append(("q", params.q))
        for name in ("source", "kind"):
            if getattr(params, name):
                pairs.append((name, getattr(params, name)))
        for name in ("since", "until"):
            value = getattr(params, name)
            if value is not None:
                pairs.append((name, value.isoformat()))
        if params.sort:
            pairs.append(("sort", params.sort))
        if params.per_page != DEFAULT_PER_PAGE:
            pairs.append(("per_page", str(params.per_page)))
        if params.page != 1:
            pairs.append(("page", str(params.page)))
        return "?" + urlencode(pairs) if pairs else "?"


def _int(value: str) -> int | None:
    value = value.strip()
    if not value.isascii() or not value.isdigit():
        return None
    return int(value) if len(value) <= 9 else MAX_PAGE


def _date(value: str) -> date | None:
    try:
        return date.fromisoformat(value.strip()) if value.isascii() else None
    except ValueError:
        return None


def parse_params(query: Mapping[str, str]) -> tuple[SearchParams, list[str]]:
    """Read the URL's parameters; anything unusable is dropped with a note, never an error."""
    notes: list[str] = []
    q = clean_text(query.get("q", "")).strip()
    source = clean_text(query.get("source", "")).strip().lower()
    if source and not _SOURCE.match(source):
        notes.append("That source name is not one Slice knows; showing every source.")
        source = ""
    kind = clean_text(query.get("kind", "")).strip().lower()
    if kind and kind not in {k.value for k in PaperKind}:
        notes.append("Kind can be 'paper' (peer-reviewed) or 'preprint'; showing both.")
        kind = ""
    dates: dict[str, date | None] = {}
    for name in ("since", "until"):
        raw = clean_text(query.get(name, "")).strip()
        dates[name] = _date(raw) if raw else None
        if raw and dates[name] is None:
            notes.append(f"'{name}' needs a date like 2025-06-09; it was left out.")
    since, until = dates["since"], dates["until"]
    if since and until and since > until:
        since, until = until, since
        notes.append("The dates were the wrong way round; they have been swapped.")
    sort_raw = clean_text(query.get("sort", "")).strip().lower()
    sort: Sort | None = None
    for candidate in SORTS:
        if sort_raw == candidate:
            sort = candidate
    if sort_raw and sort is None:
        notes.append("Results can be sorted by newest, oldest or relevance; using the default.")
    page = 1
    if (raw_page := query.get("page", "").strip()) != "":
        parsed = _int(raw_page)
        if parsed is None or parsed < 1:
            notes.append("The page number was not a number; showing the first page.")
        else:
            page = parsed
    per_page = DEFAULT_PER_PAGE
    if (raw_per := query.get("per_page", "").strip()) != "":
        chosen = _int(raw_per)
        if chosen in PER_PAGE_CHOICES:
            per_page = chosen
        else:
            notes.append("Results come 10, 25 or 50 to a page; showing 10.")
    params = SearchParams(
        q=q,
        source=source,
        kind=kind,
        since=since,
        until=until,
        sort=sort,
        page=page,
        per_page=per_page,
    )
    return params, notes
