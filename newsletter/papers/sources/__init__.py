"""Paper sources: one protocol, one registry.

A source kind joins the registry the same way the built-in ones do: a
`SourceKind` naming its options model (unknown options are errors) and a
factory. `build_source` turns a ``[[sources]]`` entry of slice.toml into a
source, with a one-line error naming the source and the bad key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError

from newsletter.core.errors import ConfigError
from newsletter.papers.sources import arxiv, biorxiv, pubmed, rss
from newsletter.papers.sources.base import (
    FetchContext,
    FetchWindow,
    Options,
    PaperRecord,
    Source,
    SourceKind,
)

if TYPE_CHECKING:  # the settings (pydantic-settings) are not needed to read a file
    from newsletter.core.settings import SourceSettings

__all__ = [
    "REGISTRY",
    "FetchContext",
    "FetchWindow",
    "Options",
    "PaperRecord",
    "Source",
    "SourceKind",
    "build_source",
    "register",
]

REGISTRY: dict[str, SourceKind] = {}


def register(kind: SourceKind) -> None:
    """Add a source kind (a later registration of the same kind replaces the earlier)."""
    REGISTRY[kind.kind] = kind


for _kind in (arxiv.KIND, pubmed.KIND, biorxiv.MEDRXIV, biorxiv.BIORXIV, rss.KIND):
    register(_kind)


def build_source(entry: SourceSettings) -> Source:
    """A source from its ``[[sources]]`` entry; ConfigError names the source and the key."""
    kind = REGISTRY.get(entry.kind)
    where = f"[[sources]] '{entry.name}'"
    if kind is None:
        raise ConfigError(
            f"{where}: unknown kind '{entry.kind}'; use one of {', '.join(sorted(REGISTRY))}."
        )
    try:
        options = kind.options.model_validate(entry.options)
    except ValidationError as exc:
        # a misspelt key also leaves the right one missing: name the misspelling
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        err = errors[0]
        key = ".".join(str(p) for p in err["loc"]) or "options"
        if err["type"] == "extra_forbidden":
            known = ", ".join(kind.options.model_fields)
            raise ConfigError(
                f"{where} (kind {entry.kind}): unknown option '{key}'; options are {known}."
            ) from None
        if err["type"] == "missing":
            raise ConfigError(
                f"{where} (kind {entry.kind}): option '{key}' is required ({kind.summary})."
            ) from None
        raise ConfigError(f"{where} (kind {entry.kind}): option '{key}': {err['msg']}.") from None
    return kind.build(entry.name, options)
