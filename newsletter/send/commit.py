"""Outcomes written in bulk: on a short timer or once enough have gathered.

Connections hand their outcomes over and go on with the next message; the
writer commits whatever has gathered every ``seconds`` (or at ``rows``), in
one transaction. A crash (SIGKILL, power) loses at most the outcomes of one
such batch: their rows are still 'sending', so they go again with the same
Message-ID. A clean stop (the send's end, Ctrl-C, SIGTERM) writes everything
before the process leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from newsletter.core.clock import Clock
from newsletter.send.ledger import Outcome

RunDb = Callable[..., Awaitable[Any]]


class OutcomeWriter:
    def __init__(
        self,
        run_db: RunDb,
        record: Callable[..., None],
        clock: Clock,
        *,
        seconds: float,
        rows: int,
        on_error: Callable[[BaseException], None],
    ) -> None:
        self._run_db = run_db
        self._record = record
        self._clock = clock
        self._seconds = seconds
        self._rows = rows
        self._on_error = on_error
        self._items: list[Outcome] = []
        self._some = asyncio.Event()
        self._full = asyncio.Event()
        self._lock = asyncio.Lock()

    def add(self, outcome: Outcome) -> None:
        self._items.append(outcome)
        self._some.set()
        if len(self._items) >= self._rows:
            self._full.set()

    async def run(self) -> None:
        """Write on the timer until cancelled (then `flush` writes the rest)."""
        while True:
            await self._some.wait()
            # real time, not the send's clock: this is how long outcomes may wait, not a pace
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self._seconds)
            await self.flush()

    async def flush(self) -> None:
        """Write every outcome handed over so far."""
        async with self._lock:
            batch, self._items = self._items, []
            self._some.clear()
            self._full.clear()
            if not batch:
                return
            try:
                await self._run_db(self._record, batch, now=self._clock.now())
            except Exception as exc:
                self._on_error(exc)
