"""Time, from one place: the real clock, and a fake one that moves only when slept on.

Everything that reads the time or waits takes a `Clock`, so tests run a fetch's
polite spacing or a send's rate limit and backoff without waiting. Synchronous
code (the sources) waits with `Clock.sleep`; code on the event loop (the send)
with ``await Clock.wait``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Where a part gets the time from, and how it waits."""

    def monotonic(self) -> float: ...

    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> None: ...

    async def wait(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    async def wait(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


@dataclass
class FakeClock:
    """A clock that moves only when someone sleeps or waits on it; records every pause."""

    start: datetime = field(default_factory=lambda: datetime(2025, 6, 9, 8, 0, tzinfo=UTC))
    elapsed: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.elapsed

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.sleeps.append(seconds)
            self.elapsed += seconds

    async def wait(self, seconds: float) -> None:
        self.sleep(seconds)
        await asyncio.sleep(0)  # let other tasks run, as a real wait would


@dataclass
class Spacing:
    """Events at most one per ``interval`` seconds, evenly spaced (monotonic time).

    `slot` says when the next event may happen; the caller waits until then and
    `take`s that slot. The slot after it is one interval after the slot taken,
    not after the moment the caller woke up, so late wake-ups do not add up;
    and an event after an idle gap takes the current moment as its slot, so
    the one after it still waits a whole interval (no burst).
    """

    interval: float
    _next: float | None = None

    def slot(self, now: float) -> float:
        return now if self._next is None else max(now, self._next)

    def take(self, slot: float) -> None:
        self._next = slot + self.interval
