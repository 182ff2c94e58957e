"""`OneClick`: a worker's one-click unsubscribes, written together as they arrive.

A mail provider sends RFC 8058 one-click POSTs in bursts, on many connections
at once. Each used to take a thread of the pool, and each thread a turn at the
write lock (one writer at a time on SQLite, and this process's threads queue for
it), a transaction and a commit: under 20 concurrent POSTs most of a worker's
time went to threads handing the lock and the interpreter to each other, and a
second worker added little.

Here the route stays on the event loop (a token is checked in microseconds) and
hands the subscriber's uid to one writer task, which writes what has arrived in
one transaction while the next ones gather; every POST is answered once its
unsubscribe is committed, or spooled when the database does not take it, as before.

On SQLite the writer task writes on the event loop itself when the write lock is
free (`Leaving.unsubscribe_many_now`): a batch is a millisecond or two of CPU with
no network in it, and handing it to a thread cost more than the write, since the
thread then waits for the interpreter while the loop serves requests (measured in
bench/README.md). When another writer holds the lock, the loop goes on serving for
a moment (the newcomers join the batch) and looks again; past `LOOP_WAIT_SECONDS`
(a long ingest chunk, a send) the batch goes to a thread that waits in line with
the other writers, and spools when the database stays busy. On PostgreSQL a write
is round trips to a server: the batch is awaited on the loop over a connection of
the worker's own (`PostgresBatches`), and goes to the thread when that fails.
"""

from __future__ import annotations

import asyncio

from newsletter.readers.leaving import PostgresBatches, Unsubscribing
from newsletter.readers.outcomes import UnsubscribeResult
from newsletter.readers.subscribers import Subscribers

# The most written in one transaction: a write lock held for a few ms, not longer
MOST_AT_ONCE = 200
# How long the event loop keeps looking for a free write lock before a thread waits for it
LOOP_WAIT_SECONDS = 0.02
LOOK_AGAIN_SECONDS = 0.0005


class OneClick:
    """The one-click unsubscribes of one process's event loop (see the module's docstring)."""

    def __init__(self, subscribers: Subscribers) -> None:
        self.subscribers = subscribers
        dialect = subscribers.store.engine.dialect.name
        self._on_loop = dialect == "sqlite"
        self._postgres = PostgresBatches(subscribers.store) if dialect == "postgresql" else None
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
        loop = asyncio.get_running_loop()
        give_up: float | None = None
        while self._waiting:
            batch = self._waiting[:MOST_AT_ONCE]
            asked = [one for one, _ in batch]
            results = None
            if self._on_loop:
                results = self.subscribers.unsubscribe_many_now(asked)
            elif self._postgres is not None:  # newcomers meanwhile wait for the next batch
                results = await self._postgres.write(asked)
            if results is None and self._on_loop:
                give_up = give_up if give_up is not None else loop.time() + LOOP_WAIT_SECONDS
                if loop.time() < give_up:  # another writer has the lock: serve, then look again
                    await asyncio.sleep(LOOK_AGAIN_SECONDS)
                    continue
            give_up = None
            del self._waiting[: len(batch)]
            if results is None:
                try:
                    results = await asyncio.to_thread(self.subscribers.unsubscribe_many, asked)
                except Exception as exc:  # every one waiting for this batch is told
                    for _, recorded in batch:
                        if not recorded.done():
                            recorded.set_exception(exc)
                    continue
            for (_, recorded), result in zip(batch, results, strict=True):
                if not recorded.done():  # a caller that went away is simply not told
                    recorded.set_result(result)
            await asyncio.sleep(0)  # the answers go out before the next batch is written

    async def aclose(self) -> None:
        """Close what the writer keeps open (PostgreSQL's connection), when the server stops."""
        if self._postgres is not None:
            await self._postgres.close()
