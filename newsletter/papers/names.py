"""Author names and titles as ingest compares them.

Names are normalized ('Bruce, E. A.' → 'E. A. Bruce') and author strings split
into lists; `fold`, `title_key` and `surname` give the accent-, markup- and
case-free forms that duplicate detection compares.
"""

from __future__ import annotations

import html
import re
import unicodedata
from functools import lru_cache

from newsletter.papers.text import plain_text

_INITIALS = re.compile(r"^(?:[A-Z][a-z]?\.?[\s-]*){1,4}$")


def normalize_name(name: str) -> str:
    """'Bruce, E. A.' → 'E. A. Bruce'; whitespace tidied; collective names kept as they are."""
    name = " ".join(html.unescape(name).split()).strip(" ,;")
    if name.count(",") == 1:
        last, first = (p.strip() for p in name.split(","))
        if last and first and not re.search(r"\b(?:Jr|Sr|II|III|IV)\.?$", first):
            return f"{first} {last}"
    return name


def split_authors(value: str) -> list[str]:
    """An author string as a list: 'Last, F.; Last, F.' or 'A Name, B Name and C Name'."""
    value = " ".join(value.split())
    if not value:
        return []
    if ";" in value:
        parts = value.split(";")
    else:
        pieces = [p.strip() for p in re.split(r",\s*(?:and\s+)?|\s+and\s+", value) if p.strip()]
        # 'Last, F., Last, F.' pairs: every second piece is initials
        if (
            len(pieces) >= 2
            and len(pieces) % 2 == 0
            and all(_INITIALS.match(p) for p in pieces[1::2])
        ):
            parts = [f"{a}, {b}" for a, b in zip(pieces[0::2], pieces[1::2], strict=True)]
        else:
            parts = pieces
    return [n for n in (normalize_name(p) for p in parts) if n]


def fold(text: str) -> str:
    """Lowercase ASCII-ish form for comparisons: accents, markup and punctuation dropped."""
    text = plain_text(text)
    if text.isascii():  # nothing to decompose: the same as the long way, faster
        text = text.lower()
    else:
        text = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


@lru_cache(maxsize=8192)
def title_key(title: str) -> str:
    """The normalized title used for the last-resort duplicate check."""
    return fold(title)


def surname(name: str) -> str:
    """The folded family name of an author ('E. A. Bruce' → 'bruce')."""
    folded = fold(name)
    return folded.split()[-1] if folded else ""
