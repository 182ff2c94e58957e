"""A send: the ledger, the message, the limiter and a pool of connections, put together.

One dispatcher reads due ledger rows in id order and claims a few at a time
(committed as ``sending``) as connections free up; each connection takes a
row, waits for the global rate limiter, sends, and waits until the outcome is
committed before it takes the next one. Outcomes of all connections are
committed together (one transaction for whatever finished meanwhile), so the
database keeps up with the relay without ever lagging behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from newsletter.core.clock import Clock
from newsletter.core.errors import RelayRefusedError, StoreError
from newsletter.core.models import DeliveryStatus
from newsletter.core.settings import Settings
from newsletter.core.store import retry_busy
from newsletter.send.deliver import Answer, RelayConnection, SmtpFactory
from newsletter.send.ledger import Ledger, Outcome, Row, backoff_delay
from newsletter.send.message import IssueMessage
from newsletter.send.ratelimit import DAY, HOUR, RateLimiter

T = TypeVar("T")


class SendEvents(Protocol):
    """What a send reports while it runs (the CLI draws a progress bar from it)."""

    def begin(self, *, total: int, done: int) -> None: ...

    def outcome(self, row: Row, outcome: Outcome, answer: Answer | None) -> None: ...

    def skipped(self, rows: list[Row]) -> None: ...

    def waiting(self, reason: str, until: datetime | None) -> None: ...


class NoEvents:
    def begin(self, *, total: int, done: int) -> None:
        pass

    def outcome(self, row: Row, outcome: Outcome, answer: Answer | None) -> None:
        pass

    def skipped(self, rows: list[Row]) -> None:
        pass

    def waiting(self, reason: str, until: datetime | None) -> None:
        pass


@dataclass(frozen=True)
class SendOptions:
    """How a send behaves: from settings.send, with the command's flags on top."""

    rate: float = 10.0
    hourly_cap: int = 0
    daily_cap: int = 0
    concurrency: int = 4
    max_attempts: int = 5
    retry_base_seconds: float = 30.0
    reconnect_base_seconds: float = 0.5
    stop_after_relay_failures: int = 0  # 0: max(5, 2 x concurrency)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> SendOptions:
        s = settings.send
        values: dict[str, Any] = {
            "rate": s.rate,
            "hourly_cap": s.hourly_cap,
            "daily_cap": s.daily_cap,
            "concurrency": s.concurrency,
            "max_attempts": s.max_attempts,
            "retry_base_seconds": s.retry_base_seconds,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def relay_failure_limit(self) -> int:
        return self.stop_after_relay_failures or max(5, 2 * self.concurrency)


@dataclass
class RunTally:
    """What this run did (the ledger holds the totals)."""

    sent: int = 0
    deferred: int = 0
    failed: int = 0
    suppressed: int = 0
    skipped: int = 0
    stopped: str = ""
    connections: int = 0
    failures: list[tuple[str, Answer]] = field(default_factory=list)


class _GroupCommit:
    """Commits outcomes from every connection together; each caller waits for its commit."""

    def __init__(self, run_db: Callable[..., Any], ledger: Ledger, clock: Clock) -> None:
        self._run_db = run_db
        self._ledger = ledger
        self._clock = clock
        self._items: list[tuple[Outcome, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()

    async def submit(self, outcome: Outcome) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._items.append((outcome, future))
        self._wake.set()
        await future

    def take(self) -> list[Outcome]:
        """Outcomes handed in and not yet picked up for a commit (their callers stop waiting)."""
        batch, self._items = self._items, []
        return [outcome for outcome, _ in batch]

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._items = self._items, []
            if not batch:
                continue
            try:
                await self._run_db(
                    self._ledger.record, [o for o, _ in batch], now=self._clock.now()
                )
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(None)


class Sender:
    """Delivers one issue to the rows of its ledger."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        message: IssueMessage,
        smtp_factory: SmtpFactory,
        where: str,
        options: SendOptions,
        clock: Clock,
        events: SendEvents | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.ledger = ledger
        self.message = message
        self.smtp_factory = smtp_factory
        self.where = where
        self.options = options
        self.clock = clock
        self.events: SendEvents = events or NoEvents()
        self.rng = rng or random.Random()
        self.limiter = RateLimiter(
            rate=options.rate,
            hourly_cap=options.hourly_cap,
            daily_cap=options.daily_cap,
            clock=clock,
        )
        self.limiter.on_wait = self._cap_wait
        self.tally = RunTally()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slice-ledger")
        self._slots = 3 * options.concurrency  # rows claimed and not yet finished, at most
        self._relay_failures = 0
        self._stop = asyncio.Event()
        self._fatal: BaseException | None = None

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            # each ledger call is one whole transaction: a busy database is waited for
            work = partial(fn, *args, **kwargs)
            seconds = self.ledger.store.busy_seconds
            return await loop.run_in_executor(
                self._executor, partial(retry_busy, work, seconds=seconds)
            )
        except (SQLAlchemyError, StoreError) as exc:
            first = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0]
            raise StoreError(
                f"the delivery ledger could not be written ({first}); the send stopped and "
                "nothing was lost: run the same `slice send` again."
            ) from exc

    def _halt(self, reason: str, fatal: BaseException | None = None) -> None:
        if not self.tally.stopped:
            self.tally.stopped = reason
            self._fatal = fatal
        self._stop.set()

    async def run(self) -> RunTally:
        """Send every due row; returns this run's tally. The ledger is left consistent."""
        try:
            if self.limiter.has_caps:
                since = self.clock.now() - timedelta(
                    seconds=DAY if self.options.daily_cap else HOUR
                )
                await self._db(lambda: self.limiter.seed(list(self.ledger.sent_since(since))))
            await self._run()
        finally:
            self._executor.shutdown(wait=True)
        if self._fatal is not None:
            raise self._fatal
        return self.tally

    async def _run(self) -> None:
        n = self.options.concurrency
        queue: asyncio.Queue[Row | None] = asyncio.Queue()
        slots = asyncio.Semaphore(self._slots)
        committer = _GroupCommit(self._db, self.ledger, self.clock)
        commit_task = asyncio.create_task(committer.run())
        workers = [asyncio.create_task(self._worker(queue, slots, committer)) for _ in range(n)]
        try:
            await self._dispatch(queue, slots, n)
            for _ in workers:
                queue.put_nowait(None)
            await asyncio.gather(*workers)
        except asyncio.CancelledError:
            # Interrupted (Ctrl-C): messages in flight stay 'sending' and go again on the
            # next run; rows still waiting for a connection go back untried.
            self._halt("interrupted")
            for task in workers:
                task.cancel()
            # Python 3.11's wait_for (inside aiosmtplib) can swallow a cancellation that
            # arrives as the relay answers; such a worker goes on, sees the stop, and
            # leaves at its sentinel instead of waiting for a row forever.
            for _ in workers:
                queue.put_nowait(None)
            await asyncio.gather(*workers, return_exceptions=True)
            waiting = [row for row in _drain(queue) if row is not None]
            untried = [self._untried(row, "the send was interrupted") for row in waiting]
            # outcomes the relay already gave (a 250 among them) are written before leaving,
            # or those readers would get the issue again on the next run
            known = committer.take()
            await asyncio.shield(
                self._db(self.ledger.record, known + untried, now=self.clock.now())
            )
            raise
        finally:
            commit_task.cancel()
            await asyncio.gather(commit_task, return_exceptions=True)

    async def _dispatch(
        self, queue: asyncio.Queue[Row | None], slots: asyncio.Semaphore, n: int
    ) -> None:
        cursor = 0
        while not self._stop.is_set():
            rows = await self._db(self.ledger.due, after_id=cursor, now=self.clock.now())
            if not rows:
                if not await self._wait_for_more(queue, slots, n):
                    return
                cursor = 0
                continue
            i = 0
            while i < len(rows) and not self._stop.is_set():
                # claim in groups: wait until a connection's worth of slots is free,
                # then take every free slot (fewer, larger ledger transactions)
                want = min(n, len(rows) - i)
                taken = 0
                while taken < want:
                    await slots.acquire()
                    taken += 1
                while taken < len(rows) - i and not slots.locked():
                    await slots.acquire()
                    taken += 1
                if self._stop.is_set():
                    for _ in range(taken):
                        slots.release()
                    return
                chunk = rows[i : i + taken]
                i += taken
                cursor = chunk[-1].delivery_id
                ids = {r.delivery_id: self.message.message_id(r.reader.uid) for r in chunk}
                claim = asyncio.ensure_future(
                    self._db(self.ledger.claim, chunk, now=self.clock.now(), message_ids=ids)
                )
                try:
                    claimed, skipped = await asyncio.shield(claim)
                except asyncio.CancelledError:
                    # Interrupted while the claim ran in its thread: it still commits, so
                    # queue what it claimed; the interrupt hands queued rows back as untried.
                    with contextlib.suppress(Exception):
                        for row in (await claim)[0]:
                            queue.put_nowait(row)
                    raise
                for _ in range(len(chunk) - len(claimed)):
                    slots.release()
                if skipped:
                    self.tally.skipped += len(skipped)
                    self.events.skipped(skipped)
                for row in claimed:
                    queue.put_nowait(row)

    async def _wait_for_more(
        self, queue: asyncio.Queue[Row | None], slots: asyncio.Semaphore, n: int
    ) -> bool:
        """Nothing due now: wait for rows in flight, then for the next retry. False when done."""
        for _ in range(self._slots):  # every claimed row has finished when all slots are back
            await slots.acquire()
        for _ in range(self._slots):
            slots.release()
        if self._stop.is_set():
            return False
        if await self._db(self.ledger.due, after_id=0, now=self.clock.now(), limit=1):
            return True
        retry_at = await self._db(self.ledger.next_retry_at)
        if retry_at is None:
            return False
        self.events.waiting("retry", retry_at)
        delay = (retry_at - self.clock.now()).total_seconds()
        waits = [
            asyncio.create_task(self._stop.wait()),
            asyncio.create_task(self.clock.wait(delay)),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        self.events.waiting("", None)
        return not self._stop.is_set()

    async def _worker(
        self, queue: asyncio.Queue[Row | None], slots: asyncio.Semaphore, committer: _GroupCommit
    ) -> None:
        connection = RelayConnection(self.smtp_factory, where=self.where)
        try:
            while (row := await queue.get()) is not None:
                try:
                    answer: Answer | None = None
                    outcome = self._untried(row, "the send stopped before this message")
                    if not self._stop.is_set():
                        try:
                            answer = await self._attempt(connection, row)
                            outcome = self._outcome(row, answer)
                        except RelayRefusedError as exc:
                            self._halt(str(exc))
                            outcome = self._untried(row, str(exc))
                    await committer.submit(outcome)  # committed before the next message
                    self._count(row, outcome, answer)
                except StoreError as exc:  # the ledger cannot be written: stop everything
                    self._halt(str(exc), exc)
                finally:
                    slots.release()
        finally:
            self.tally.connections += connection.opened
            await connection.close()

    async def _attempt(self, connection: RelayConnection, row: Row) -> Answer:
        await self.limiter.acquire()
        data = await self.message.render_wire(row.reader, now=self.clock.now())
        answer = await connection.send(
            self.message.envelope_sender(row.delivery_id), row.reader.email, data, wire=True
        )
        if answer.kind == "relay" or (answer.kind == "soft" and answer.code is None):
            self._relay_failures += 1
            if self._relay_failures >= self.options.relay_failure_limit:
                self._halt(
                    f"the relay at {self.where} refuses every message "
                    f"({answer.describe()}, {self._relay_failures} times in a row); stopped early "
                    "and nothing was lost: fix the relay and run the same `slice send` again."
                )
            elif answer.kind == "relay":
                delay = self.options.reconnect_base_seconds * 2 ** min(self._relay_failures - 1, 6)
                delay *= self.rng.uniform(0.5, 1.5)
                # shown on the progress line, so a person sees why nothing moves
                self._cap_wait("relay", delay)
                await self.clock.wait(delay)
        else:
            if self._relay_failures:
                self.events.waiting("", None)  # the relay answers again: clear the note
            self._relay_failures = 0
        return answer

    def _cap_wait(self, reason: str, seconds: float) -> None:
        self.events.waiting(reason, self.clock.now() + timedelta(seconds=seconds))

    def _untried(self, row: Row, why: str) -> Outcome:
        return Outcome(row.delivery_id, row.subscriber_id, DeliveryStatus.PENDING, None, why)

    def _outcome(self, row: Row, answer: Answer) -> Outcome:
        d, s = row.delivery_id, row.subscriber_id
        if answer.kind == "sent":
            return Outcome(d, s, DeliveryStatus.SENT, answer.code)
        if answer.kind == "relay":
            return Outcome(d, s, DeliveryStatus.PENDING, answer.code, answer.describe())
        if answer.kind == "hard":
            return Outcome(d, s, DeliveryStatus.FAILED, answer.code, answer.text, suppress=True)
        if answer.kind == "reject":
            return Outcome(d, s, DeliveryStatus.FAILED, answer.code, answer.text)
        attempts = row.attempts + 1
        if attempts >= self.options.max_attempts:
            why = f"gave up after {attempts} tries: {answer.describe()}"
            return Outcome(d, s, DeliveryStatus.FAILED, answer.code, why)
        jitter = self.rng.uniform(0.5, 1.5)
        delay = backoff_delay(attempts, base=self.options.retry_base_seconds, jitter=jitter)
        text = answer.text if answer.code else answer.describe()
        return Outcome(d, s, DeliveryStatus.DEFERRED, answer.code, text, self.clock.now() + delay)

    def _count(self, row: Row, outcome: Outcome, answer: Answer | None) -> None:
        t = self.tally
        if outcome.status == DeliveryStatus.SENT:
            t.sent += 1
        elif outcome.status == DeliveryStatus.DEFERRED:
            t.deferred += 1
        elif outcome.status == DeliveryStatus.FAILED:
            t.failed += 1
            t.suppressed += int(outcome.suppress)
            if answer is not None:
                t.failures.append((row.reader.email, answer))
                del t.failures[:-100]
        self.events.outcome(row, outcome, answer)


def _drain(queue: asyncio.Queue[Row | None]) -> list[Row | None]:
    items: list[Row | None] = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items
