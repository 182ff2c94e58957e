"""One worker of a send: claims, a pool of connections, the limiter and the outcome writer.

A dispatcher claims due rows in large batches (`newsletter.send.claims`) and
keeps a queue of them filled; each connection takes a row, waits for its slot
of the rate (shared by every worker when several run), sends, and hands the
outcome to the writer (`newsletter.send.commit`), which commits outcomes in
bulk on a short timer. A heartbeat renews the leases on the rows this worker
holds. DKIM signatures are made on a small thread pool (the hashing and RSA
release the GIL, so they use a second core).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from newsletter.core.clock import Clock
from newsletter.core.errors import RelayRefusedError, StoreError
from newsletter.core.models import DeliveryStatus
from newsletter.core.store import retry_busy
from newsletter.send.claims import Claims
from newsletter.send.commit import OutcomeWriter
from newsletter.send.deliver import Answer, RelayConnection, SmtpFactory
from newsletter.send.ledger import Ledger, Outcome, Row, backoff_delay
from newsletter.send.message import IssueMessage
from newsletter.send.options import NoEvents, RunTally, SendEvents, SendOptions
from newsletter.send.pacing import SharedLimiter, SharedPace
from newsletter.send.ratelimit import DAY, HOUR, RateLimiter

T = TypeVar("T")
STATUS_SECONDS = 2.0  # how stale `slice send --status` may show a worker's count and rate
__all__ = ["NoEvents", "RunTally", "SendEvents", "SendOptions", "Sender"]


class Sender:
    """Delivers one issue to the rows of its ledger, as one worker among any number."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        claims: Claims,
        message: IssueMessage,
        smtp_factory: SmtpFactory,
        where: str,
        options: SendOptions,
        clock: Clock,
        events: SendEvents | None = None,
        rng: random.Random | None = None,
        pace: SharedPace | None = None,
    ) -> None:
        self.ledger = ledger
        self.claims = claims
        self.message = message
        self.smtp_factory = smtp_factory
        self.where = where
        self.options = options
        self.clock = clock
        self.events: SendEvents = events or NoEvents()
        self.rng = rng or random.Random()
        self.limiter: RateLimiter | SharedLimiter
        if pace is not None:
            self.limiter = SharedLimiter(
                pace, clock=clock, wrap_errors=_store_error, on_wait=self._cap_wait
            )
        else:
            self.limiter = RateLimiter(
                rate=options.rate,
                hourly_cap=options.hourly_cap,
                daily_cap=options.daily_cap,
                clock=clock,
            )
            self.limiter.on_wait = self._cap_wait
        self.tally = RunTally()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slice-ledger")
        self._signing = (
            ThreadPoolExecutor(max_workers=options.sign_threads, thread_name_prefix="slice-dkim")
            if message.signer is not None
            else None
        )
        self._writer = OutcomeWriter(
            self._db,
            claims.record,
            clock,
            seconds=options.commit_seconds,
            rows=options.commit_rows,
            on_error=self._store_failed,
        )
        self._relay_failures = 0
        self._stop = asyncio.Event()
        self._fatal: BaseException | None = None
        self._busy = 0
        self._quiet = asyncio.Event()
        self._taken = asyncio.Event()

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
            raise _store_error(exc) from exc

    def _store_failed(self, exc: BaseException) -> None:
        self._halt(str(exc), exc)

    def _halt(self, reason: str, fatal: BaseException | None = None) -> None:
        if not self.tally.stopped:
            self.tally.stopped = reason
            self._fatal = fatal
        self._stop.set()

    async def run(self) -> RunTally:
        """Send every due row; returns this run's tally. The ledger is left consistent."""
        try:
            await self._db(self.claims.register, self.clock.now())
            if isinstance(self.limiter, RateLimiter) and self.limiter.has_caps:
                since = self.clock.now() - timedelta(
                    seconds=DAY if self.options.daily_cap else HOUR
                )
                await self._db(lambda: self.limiter.seed(list(self.ledger.sent_since(since))))  # type: ignore[union-attr]
            await self._run()
        finally:
            # every outcome known (the relay's 250s among them) is written before leaving,
            # also when interrupted: otherwise those readers would get the issue again
            await asyncio.shield(self._finish())
        if self._fatal is not None:
            raise self._fatal
        return self.tally

    async def _finish(self) -> None:
        try:
            if isinstance(self.limiter, SharedLimiter):
                await self.limiter.close()
            await self._writer.flush()
            with contextlib.suppress(StoreError):
                await self._db(self.claims.unregister)
        finally:
            self._executor.shutdown(wait=True)
            if self._signing is not None:
                self._signing.shutdown(wait=True)

    async def _run(self) -> None:
        n = self.options.concurrency
        queue: asyncio.Queue[Row | None] = asyncio.Queue()
        background = [
            asyncio.create_task(self._writer.run()),
            asyncio.create_task(self._heartbeat()),
        ]
        connections = [asyncio.create_task(self._connection(queue)) for _ in range(n)]
        try:
            await self._dispatch(queue)
            for _ in connections:
                queue.put_nowait(None)
            await asyncio.gather(*connections)
        except asyncio.CancelledError:
            # Interrupted (Ctrl-C, SIGTERM): messages on the wire stay 'sending' and go
            # again on the next run; rows still waiting for a connection go back untried.
            self._halt("interrupted")
            for task in connections:
                task.cancel()
            # Python 3.11's wait_for (inside aiosmtplib) can swallow a cancellation that
            # arrives as the relay answers; such a connection goes on, sees the stop, and
            # leaves at its sentinel instead of waiting for a row forever.
            for _ in connections:
                queue.put_nowait(None)
            await asyncio.gather(*connections, return_exceptions=True)
            raise
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            for row in _drain(queue):
                if row is not None:
                    self._writer.add(self._untried(row, "the send stopped before this message"))

    async def _heartbeat(self) -> None:
        # the worker's count and rate for `slice send --status` every few seconds; the
        # leases (a write to every row held) a third of a lease apart
        renew_every = max(0.2, self.options.lease_seconds / 3)
        every = min(STATUS_SECONDS, renew_every)
        ticks = max(1, round(renew_every / every))
        last_sent, last_at = 0, self.clock.monotonic()
        for tick in itertools.count(1):
            await asyncio.sleep(every)  # real time: leases are real time for other workers
            now_mono = self.clock.monotonic()
            rate = (self.tally.sent - last_sent) / max(1e-6, now_mono - last_at)
            last_sent, last_at = self.tally.sent, now_mono
            try:
                await self._db(
                    self.claims.heartbeat,
                    self.clock.now(),
                    sent=self.tally.sent,
                    rate=rate,
                    renew=tick % ticks == 0,
                )
            except StoreError as exc:
                self._halt(str(exc), exc)
                return

    async def _dispatch(self, queue: asyncio.Queue[Row | None]) -> None:
        size = self.options.claim_size
        low = max(2 * self.options.concurrency, size // 4)
        while not self._stop.is_set():
            while queue.qsize() > low and not self._stop.is_set():
                self._taken.clear()
                await self._taken.wait()
            if self._stop.is_set():
                return
            claimed, skipped = await self._db(self.claims.claim, size, now=self.clock.now())
            if skipped:
                self.tally.skipped += len(skipped)
                self.events.skipped(skipped)
            for row in claimed:
                queue.put_nowait(row)
            if not claimed and not skipped and not await self._wait_for_more(queue):
                return

    async def _wait_for_more(self, queue: asyncio.Queue[Row | None]) -> bool:
        """Nothing to claim now: wait for rows in flight, retries and other workers. False when done."""
        while not queue.empty() or self._busy:
            self._quiet.clear()
            await self._quiet.wait()
        await self._writer.flush()
        if self._stop.is_set():
            return False
        now = self.clock.now()
        await self._db(self.claims.release_dead, now)
        left = await self._db(self.claims.open_rows, now)
        if left.due:
            return True
        wake: list[datetime] = []
        if left.next_retry_at is not None:
            wake.append(left.next_retry_at)
            self.events.waiting("retry", left.next_retry_at)
        if left.held_elsewhere:  # other workers are sending: finish together, or take over
            poll = now + timedelta(seconds=min(1.0, self.options.lease_seconds / 3))
            wake.append(min(poll, left.lease_ends or poll))
        if not wake:
            return False
        delay = (min(wake) - now).total_seconds()
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

    async def _connection(self, queue: asyncio.Queue[Row | None]) -> None:
        connection = RelayConnection(self.smtp_factory, where=self.where)
        try:
            while (row := await queue.get()) is not None:
                self._taken.set()
                self._busy += 1
                try:
                    answer: Answer | None = None
                    mid = self.message.message_id(row.reader.uid)
                    if self._stop.is_set():
                        outcome = self._untried(row, "the send stopped before this message", mid)
                    else:
                        try:
                            answer = await self._attempt(connection, row, mid)
                            outcome = replace(self._judge(row, answer), message_id=mid)
                        except RelayRefusedError as exc:
                            self._halt(str(exc))
                            outcome = self._untried(row, str(exc), mid)
                    self._writer.add(outcome)
                    self._count(row, outcome, answer)
                finally:
                    self._busy -= 1
                    if not self._busy and queue.empty():
                        self._quiet.set()
        finally:
            self.tally.connections += connection.opened
            await connection.close()

    async def _attempt(self, connection: RelayConnection, row: Row, mid: str) -> Answer:
        await self.limiter.acquire()
        data = await self.message.render_wire(
            row.reader, now=self.clock.now(), executor=self._signing, message_id=mid
        )
        answer = await connection.send(
            self.message.envelope_sender(row.delivery_id), row.reader.email, data, wire=True
        )
        if answer.kind == "relay" or (answer.kind == "soft" and answer.code is None):
            self._relay_failures += 1
            if self._relay_failures >= self.options.relay_failure_limit:
                what, fix = "refuses every message", "fix the relay"
                if answer.stage == "connect" and answer.code is None:  # no answer at all
                    what = "cannot be reached"
                    fix = (
                        "check smtp.host, smtp.port and that the relay runs "
                        "(`slice dev-smtp` is one for a local test)"
                    )
                self._halt(
                    f"the relay at {self.where} {what} ({answer.describe()}, "
                    f"{self._relay_failures} times in a row); stopped early and nothing was "
                    f"lost: {fix}, then run the same `slice send` again."
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

    def _untried(self, row: Row, why: str, mid: str | None = None) -> Outcome:
        d, s = row.delivery_id, row.subscriber_id
        mid = mid or self.message.message_id(row.reader.uid)
        return Outcome(d, s, DeliveryStatus.PENDING, None, why, message_id=mid)

    def _judge(self, row: Row, answer: Answer) -> Outcome:
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


def _store_error(exc: BaseException) -> BaseException:
    if not isinstance(exc, SQLAlchemyError | StoreError):
        return exc
    first = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0]
    return StoreError(
        f"the delivery ledger could not be written ({first}); the send stopped and "
        "nothing was lost: run the same `slice send` again."
    )
