"""One rate and one pair of caps for every worker of a send, kept in the database.

Workers take blocks of send slots from one row (``send_pace``, locked while
taken): a block is a run of consecutive slots, one interval apart, starting at
the row's next free slot or now, whichever is later. Slots of all workers are
therefore disjoint and evenly spaced, so no second holds more than the rate
(+1 at a block's edge) however many workers there are, and an idle gap never
turns into a burst. A slot a worker reaches too late (it was busy) is dropped,
not used in a hurry. Slots granted per second are counted in
``send_pace_seconds`` for the hourly and daily caps, so a cap also holds
across workers and machines. Time is the workers' wall clock (keep the
machines' clocks in sync, as NTP does).
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from newsletter.core.clock import Clock
from newsletter.core.models import Delivery, SendPace, SendPaceSecond, table
from newsletter.core.store import Store
from newsletter.send.ledger import as_utc
from newsletter.send.ratelimit import DAY, HOUR

P = table(SendPace)
PS = table(SendPaceSecond)
D = table(Delivery)

ROW = "global"
SKEW = 30.0  # a next slot further ahead than this is a clock that jumped: start from now


@dataclass(frozen=True)
class Grant:
    start: float  # epoch seconds of the first slot
    count: int  # slots in the block; 0 when a cap is reached
    wait_reason: str = ""  # "hourly" or "daily" when count is 0


class SharedPace:
    """Takes blocks of slots from the database (runs on the ledger's thread)."""

    def __init__(
        self, store: Store, *, rate: float, hourly_cap: int, daily_cap: int, block_seconds: float
    ) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.block = max(1, round(rate * block_seconds)) if rate > 0 else 50
        self.caps = [
            (c, s, n) for c, s, n in ((hourly_cap, HOUR, "hourly"), (daily_cap, DAY, "daily")) if c
        ]
        self._writer = store.engine.execution_options(slice_write=True)
        pg = store.engine.dialect.name == "postgresql"
        self._insert = postgresql.insert if pg else sqlite.insert
        # the larger / smaller of two values: GREATEST and LEAST, or SQLite's two-argument MAX, MIN
        self._greatest = func.greatest if pg else func.max
        self._least = func.least if pg else func.min
        self._made = False

    def take(self, now: float) -> Grant:
        if not self.caps:
            return self._take_rate(now)
        with self._writer.begin() as conn:
            conn.execute(
                self._insert(P).values(name=ROW, next_at=0.0, seeded=0).on_conflict_do_nothing()
            )
            next_at, seeded = conn.execute(
                select(P.c.next_at, P.c.seeded).where(P.c.name == ROW).with_for_update()
            ).one()
            if self.caps and not seeded:
                self._seed(conn, now)
            start = max(now, min(float(next_at), now + SKEW))
            count = self.block
            for cap, span, name in self.caps:
                first = math.floor(start) - span
                used = conn.execute(
                    select(func.coalesce(func.sum(PS.c.granted), 0)).where(PS.c.second > first)
                ).scalar_one()
                if used >= cap:  # wait until the oldest second in the window leaves it
                    oldest = conn.execute(
                        select(func.min(PS.c.second)).where(PS.c.second > first)
                    ).scalar_one()
                    return Grant(float(oldest) + span + 1, 0, name)
                count = min(count, cap - int(used))
            slots = Counter(math.floor(start + i * self.interval) for i in range(count))
            if self.caps:
                stmt = self._insert(PS)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=[PS.c.second],
                        set_={"granted": PS.c.granted + stmt.excluded.granted},
                    ),
                    [{"second": s, "granted": n} for s, n in sorted(slots.items())],
                )
                conn.execute(delete(PS).where(PS.c.second < math.floor(now) - DAY - 1))
            conn.execute(
                update(P).where(P.c.name == ROW).values(next_at=start + count * self.interval)
            )
            return Grant(start, count)

    def _take_rate(self, now: float) -> Grant:
        """No caps: one statement (a round trip) moves the next free slot on."""
        span = self.block * self.interval
        with self._writer.begin() as conn:
            if not self._made:
                conn.execute(
                    self._insert(P).values(name=ROW, next_at=0.0, seeded=0).on_conflict_do_nothing()
                )
                self._made = True
            start = self._greatest(self._least(P.c.next_at, now + SKEW), now)
            end = conn.execute(
                update(P).where(P.c.name == ROW).values(next_at=start + span).returning(P.c.next_at)
            ).scalar_one()
        return Grant(float(end) - span, self.block)

    def _seed(self, conn: Any, now: float) -> None:
        """Count what was sent before the shared pace existed (once)."""
        since = datetime.fromtimestamp(now, UTC) - timedelta(seconds=DAY)
        sent = Counter(
            math.floor((as_utc(t) or since).timestamp())
            for (t,) in conn.execute(select(D.c.sent_at).where(D.c.sent_at >= since))
        )
        if sent:
            conn.execute(insert(PS), [{"second": s, "granted": n} for s, n in sent.items()])
        conn.execute(update(P).where(P.c.name == ROW).values(seeded=1))


class SharedLimiter:
    """`RateLimiter`'s place when several workers share one send: slots from `SharedPace`.

    The next block is asked for while the current one is still being used, on a
    thread and connection of its own (never queued behind the ledger's writes),
    so the database's answer time never becomes a gap in the rate.
    """

    def __init__(
        self,
        pace: SharedPace,
        *,
        clock: Clock,
        wrap_errors: Callable[[BaseException], BaseException],
        on_wait: Callable[[str, float], None] | None = None,
    ) -> None:
        self.pace = pace
        self.clock = clock
        self._wrap = wrap_errors
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slice-pace")
        self._slots: deque[float] = deque()
        self._lock = asyncio.Lock()
        self._next: asyncio.Task[Grant] | None = None
        self.on_wait = on_wait

    async def _take(self, now: float) -> Grant:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self.pace.take, now)
        except Exception as exc:
            raise self._wrap(exc) from exc

    def _prefetch(self) -> asyncio.Task[Grant]:
        if self._next is None:
            self._next = asyncio.ensure_future(self._take(self.clock.now().timestamp()))
        return self._next

    async def acquire(self) -> float:
        """Wait for this message's slot; returns its (epoch) time."""
        async with self._lock:
            while True:
                now = self.clock.now().timestamp()
                interval = self.pace.interval
                while interval and self._slots and self._slots[0] < now - interval:
                    self._slots.popleft()  # too late for it (this worker was busy): let it go
                if self._slots:
                    break
                fetch = self._prefetch()
                try:
                    grant = await asyncio.shield(fetch)
                finally:
                    if fetch.done():
                        self._next = None
                if grant.count:
                    self._slots.extend(grant.start + i * interval for i in range(grant.count))
                    continue
                if self.on_wait is not None:
                    self.on_wait(grant.wait_reason, grant.start - now)
                await self.clock.wait(grant.start - now)
            slot = self._slots.popleft()
            if len(self._slots) <= self.pace.block // 2:
                self._prefetch()
            if slot > now:
                await self.clock.wait(slot - now)
            return slot

    async def close(self) -> None:
        """Wait for a block still being asked for (its slots simply go unused)."""
        if self._next is not None:
            await asyncio.gather(self._next, return_exceptions=True)
        self._executor.shutdown(wait=True)
