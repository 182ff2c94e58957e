"""What every source shares: the paper record, the fetch window, the protocol."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # httpx is imported by fetching, not by reading a file (ingest's reader)
    from newsletter.papers.sources.http import PoliteClient


@dataclass
class PaperRecord:
    """One paper as a source reported it: what every source hands to ingest.

    Title and abstract are clean HTML fragments (see `newsletter.papers.text`).
    ``published_doi`` is the journal version's DOI that a preprint server
    reports; it links the preprint to its journal version, never merges them.
    """

    title: str
    source: str
    published: date | None
    authors: list[str] = field(default_factory=list)
    abstract: str = ""
    kind: str = "paper"
    url: str = ""
    journal: str = ""
    doi: str | None = None
    arxiv_id: str | None = None
    pmid: str | None = None
    pmcid: str | None = None
    published_doi: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # set by `newsletter.papers.records.validate` once it has normalized the record (in
    # the read-ahead process, for big files), so that ingest does not do it again
    checked: bool = field(default=False, repr=False, compare=False)
    # (title, its `newsletter.papers.names.title_key`), worked out by validate on the
    # read-ahead process's core, where a big file's records are validated
    keyed_title: tuple[str, str] | None = field(default=None, repr=False, compare=False)

    def ref(self) -> str:
        """A short way to name this record in a message."""
        for label, value in (
            ("DOI", self.doi),
            ("PMID", self.pmid),
            ("arXiv", self.arxiv_id),
            ("PMCID", self.pmcid),
        ):
            if value:
                return f"{label} {value}"
        if self.title:
            short = self.title if len(self.title) <= 60 else self.title[:57] + "..."
            return f"'{short}'"
        where = self.extra.get("position")
        return f"record {where}" if where else "a record"


@dataclass(frozen=True)
class FetchWindow:
    """The days to fetch, both ends included."""

    since: date
    until: date


@dataclass
class FetchContext:
    """What a source may use while fetching: the polite client and a few settings."""

    http: PoliteClient
    contact_email: str = ""
    pubmed_api_key: str = ""
    progress: Callable[[int], None] = lambda _n: None


class Source(Protocol):
    """A configured source: fetches the records of a window."""

    name: str
    kind: str

    def fetch(self, ctx: FetchContext, window: FetchWindow) -> Iterator[PaperRecord]: ...


class Options(BaseModel):
    """A source kind's options from its [[sources]] entry; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class SourceKind:
    """A kind of source in the registry: its options model and how to build one."""

    kind: str
    options: type[Options]
    build: Callable[[str, Any], Source]
    summary: str


def xml_problem(exc: Exception) -> str:
    """Where and why lxml refused a file, said once: 'at line 7: Premature end of data in
    tag summary line 7' (lxml's own text repeats ', line 7, column 81' and the file name)."""
    message = str(getattr(exc, "msg", None) or exc).strip()
    message = re.sub(r",? line \d+, column \d+$", "", message)
    line = getattr(exc, "lineno", None)
    return f"at line {line}: {message}" if line else message
