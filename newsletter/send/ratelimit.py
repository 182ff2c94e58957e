"""One global rate limiter for every connection of a send.

`RateLimiter` spaces messages evenly at ``rate`` per second (a token bucket
holding one token: no bursts), and, when set, keeps to an hourly and a daily
cap counted over a sliding window, like a relay's quota. It never calls
`time.sleep`: time comes from a `Clock`, so tests drive it with `FakeClock`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime

from newsletter.core.clock import Clock, Spacing, SystemClock

HOUR = 3600.0
DAY = 86400.0


class _Window:
    """How many messages went in the last ``span`` seconds, counted per whole second."""

    def __init__(self, cap: int, span: float) -> None:
        self.cap = cap
        self.span = span
        self._buckets: deque[list[float]] = deque()  # [second, count]
        self._total = 0

    def _expire(self, now: float) -> None:
        # a second's messages leave the window once all of that second has left it
        while self._buckets and self._buckets[0][0] + 1 + self.span <= now:
            self._total -= int(self._buckets.popleft()[1])

    def add(self, at: float, count: int = 1) -> None:
        second = float(int(at // 1))
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += count
        elif self._buckets and self._buckets[-1][0] > second:  # seeding out of order
            self._buckets.append([second, count])
            self._buckets = deque(sorted(self._buckets))
        else:
            self._buckets.append([second, count])
        self._total += count

    def free_at(self, now: float) -> float:
        """The earliest time a message may go without passing the cap."""
        self._expire(now)
        if self._total < self.cap:
            return now
        # drop whole seconds, oldest first, until one message fits
        excess = self._total - self.cap + 1
        for second, count in self._buckets:
            excess -= int(count)
            if excess <= 0:
                return second + 1 + self.span
        return now + self.span  # pragma: no cover - the loop always returns


class RateLimiter:
    """Messages per second plus optional hourly and daily caps, shared by all connections."""

    def __init__(
        self,
        *,
        rate: float,
        hourly_cap: int = 0,
        daily_cap: int = 0,
        clock: Clock | None = None,
    ) -> None:
        self.rate = rate
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.clock: Clock = clock or SystemClock()
        self._windows = [
            w for w in (_Window(hourly_cap, HOUR), _Window(daily_cap, DAY)) if w.cap > 0
        ]
        self._spacing = Spacing(self.interval)
        self._lock = asyncio.Lock()
        # told (reason, seconds) before a wait for a cap; not for the ordinary spacing
        self.on_wait: Callable[[str, float], None] | None = None

    def seed(self, sent_at: Iterable[datetime]) -> int:
        """Count messages already sent (this run's quota window reaches back before it)."""
        now_wall = self.clock.now()
        now_mono = self.clock.monotonic()
        count = 0
        for when in sent_at:
            age = (now_wall - when).total_seconds()
            for window in self._windows:
                if age < window.span:
                    window.add(now_mono - age)
            count += 1
        return count

    @property
    def has_caps(self) -> bool:
        return bool(self._windows)

    def _slot(self, now: float) -> tuple[float, str]:
        at = self._spacing.slot(now)
        reason = ""
        for window in self._windows:
            free = window.free_at(at)
            if free > at:
                at, reason = free, ("hourly" if window.span == HOUR else "daily")
        return at, reason

    async def acquire(self) -> float:
        """Wait for this message's turn; returns the (monotonic) time it was granted."""
        async with self._lock:  # one waiter at a time keeps the order and the spacing exact
            slot: float | None = None  # the time waited for, if this message waited
            while True:
                now = self.clock.monotonic()
                at, reason = self._slot(now)
                if at <= now:
                    break
                if reason and self.on_wait is not None:
                    self.on_wait(reason, at - now)
                slot = at
                await self.clock.wait(at - now)
            self._spacing.take(now if slot is None else min(slot, now))
            for window in self._windows:
                window.add(now)
            return now
