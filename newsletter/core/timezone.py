"""The editor's time zone: what "this week", "last week" and readers' dates mean.

Stored timestamps stay UTC. The week an issue covers, the days `slice fetch` asks
for and the dates printed for readers are the editor's, so a cron line at Monday
06:00 in Tokyo composes the week that has just ended there, not UTC's Sunday.
"""

from __future__ import annotations

import os
from datetime import date, datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone(name: str) -> tzinfo:
    """The zone called ``name`` (IANA, e.g. Asia/Tokyo), or the machine's when empty.

    Raises ValueError naming the zone when there is no such zone.
    """
    name = name.strip()
    if not name:
        return machine_zone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a time zone; write it like Europe/Brussels") from None


def machine_zone() -> tzinfo:
    """This machine's zone: $TZ, then /etc/localtime, then the current UTC offset."""
    for name in (os.environ.get("TZ", "").lstrip(":"), _localtime_name()):
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    local = datetime.now().astimezone().tzinfo
    assert local is not None
    return local


def _localtime_name() -> str:
    try:
        target = str(Path("/etc/localtime").resolve())
    except OSError:
        return ""
    _, found, name = target.partition("/zoneinfo/")
    return name if found else ""


def local_today(now: datetime, where: tzinfo) -> date:
    """The date it is in ``where`` at the (aware) moment ``now``."""
    return now.astimezone(where).date()
