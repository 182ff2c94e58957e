"""`OneClick`: a worker's one-click unsubscribes, written together as they arrive.

A mail provider sends RFC 8058 one-click POSTs in bursts, on many connections
at once. Each used to take a thread of the pool, and each thread a turn at the
write lock (one writer at a time on SQLite, and this process's threads queue for
it), a transaction and a commit: under 20 concurrent POSTs most of a worker's
time went to threads handing the lock and the interpreter to each other, and a
second worker added little.

Here the route stays on the event loop (a token is checked in microseconds) and
hands the subscriber's uid to one writer task, which writes what has arrived in
one transaction (`Leaving.unsubscribe_many`, in a thread) while the next ones
gather; every POST is answered once its unsubscribe is committed, or spooled
when the database does not take it, as before.
"""

from __future__ import annotations

import asyncio

from newsletter.readers.leaving import Unsubscribing
from newsletter.readers.outcomes import UnsubscribeResult
from newsletter.readers.subscribers import Subscribers

# The most written in one transaction: a write lock held for a few ms, not longer
MOST_AT_ONCE = 200


class OneClick:
    """The one-click unsubscribes of one process's event loop (see the module's docstring)."""

    def __init__(self, subscribers: Subscribers) -> None:
        self.subscribers = subscribers
        self._waiting: list[tuple[Unsubscribing, asyncio.Future[UnsubscribeResult]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def unsubscribe(self, token: str, *, reason: str = "one-click") -> UnsubscribeResult:
        """Unsubscribe the token's subscriber; the result once it is recorded.

        Raises TokenError for a bad token, StoreError when neither the database
        nor the spool can take it (as `Leaving.unsubscribe`).
        """
        uid = self.subscribers.tokens.read_unsubscribe(token)
        loop = asyncio.get_running_loop()
        recorded: asyncio.Future[UnsubscribeResult] = loop.create_future()
        self._waiting.append((Unsubscribing(uid, reason, self.subscribers.clock()), recorded))
        writer = self._writer
        if writer is None or writer.done() or writer.get_loop() is not loop:
            self._writer = loop.create_task(self._write_all())
        return await recorded

    async def _write_all(self) -> None:
        while self._waiting:
            batch = self._waiting[:MOST_AT_ONCE]
            del self._waiting[:MOST_AT_ONCE]
            try:
                results = await asyncio.to_thread(
                    self.subscribers.unsubscribe_many, [asked for asked, _ in batch]
                )
            except Exception as exc:  # every one waiting for this batch is told
                for _, recorded in batch:
                    if not recorded.done():
                        recorded.set_exception(exc)
                continue
            for (_, recorded), result in zip(batch, results, strict=True):
                if not recorded.done():  # a caller that went away is simply not told
                    recorded.set_result(result)
