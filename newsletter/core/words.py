"""Counted words in what a person reads: "1 paper", "2 papers"."""

from __future__ import annotations


def plural(n: int, one: str, many: str | None = None) -> str:
    """ "1 paper", "2 papers", "0 papers" (``many`` for irregular words)."""
    return f"{n} {one if n == 1 else (many or one + 's')}"
