"""ISO weeks, read one way everywhere (`slice papers --week`, `slice compose --week`)."""

from __future__ import annotations

import re
from datetime import date, timedelta

_WEEK = re.compile(r"\s*(\d{4})-?W(\d{1,2})\s*", re.I)


def parse_iso_week(text: str) -> tuple[date, date]:
    """'2025-W24' (also 2025-w24, 2025W24, 2025-W4) -> (Monday, Sunday) of that ISO week.

    Raises ValueError saying how to write it.
    """
    match = _WEEK.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not an ISO week; write it like 2025-W24")
    try:
        monday = date.fromisocalendar(int(match.group(1)), int(match.group(2)), 1)
    except ValueError:
        raise ValueError(f"{text!r}: {match.group(1)} has no week {match.group(2)}") from None
    return monday, monday + timedelta(days=6)
