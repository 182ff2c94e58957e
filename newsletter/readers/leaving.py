"""`Leaving`: unsubscribe, the editor's remove and forget, and the unsubscribe spool.

An unsubscribe is never lost: when the database stays busy (or is down) it is
written to the spool (`newsletter.readers.spool`) and applied later with the time
it was asked for. Part of `newsletter.readers.subscribers.Subscribers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import Select, String, any_, bindparam, delete, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.sql.compiler import Compiled
from sqlmodel import Session, col

from newsletter.core.errors import StoreError, error_line
from newsletter.core.models import SUPPRESSED, Subscriber, SubscriberStatus, table
from newsletter.core.store import Store
from newsletter.readers.addresses import normalize_email
from newsletter.readers.listbase import ListBase
from newsletter.readers.listrows import as_utc, by_key, by_uid, not_found
from newsletter.readers.outcomes import UnsubscribeResult
from newsletter.readers.spool import SpooledUnsubscribe

log = logging.getLogger(__name__)

# How long a one-click unsubscribe waits for a busy database before it is spooled
UNSUBSCRIBE_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class Unsubscribing:
    """One unsubscribe asked for: whose (a token's uid), why, and when it was asked."""

    uid: str
    reason: str
    at: datetime


class Leaving(ListBase):
    """Taking people off the list: their own unsubscribe, or the editor's remove and forget."""

    def unsubscribe_url(self, uid: str) -> str:
        return f"{self.settings.web.base_url}/unsubscribe/{self.tokens.unsubscribe_token(uid)}"

    def read_unsubscribe(self, token: str) -> Subscriber | None:
        """The subscriber an unsubscribe token names (None if gone). Raises TokenError."""
        return self.by_uid(self.tokens.read_unsubscribe(token))

    def unsubscribe(self, token: str, *, reason: str = "one-click") -> UnsubscribeResult:
        """Unsubscribe the token's subscriber. Idempotent. Raises TokenError for a bad token.

        A database that stays busy for `UNSUBSCRIBE_WAIT_SECONDS`, or does not
        answer, gets the request spooled instead (``spooled`` in the result).
        Raises StoreError only when neither the database nor the spool can take it.
        """
        uid = self.tokens.read_unsubscribe(token)
        [result] = self.unsubscribe_many([Unsubscribing(uid, reason, self.clock())])
        return result

    def unsubscribe_many(self, asked: Sequence[Unsubscribing]) -> list[UnsubscribeResult]:
        """`unsubscribe` for several subscribers at once (their tokens already read), in order.

        One write transaction for all of them: a server takes the write lock and
        commits once for the one-click POSTs that arrived together, instead of once
        each. Spooled all together when the database does not take them.
        """
        wait = min(self.store.busy_seconds, UNSUBSCRIBE_WAIT_SECONDS)
        try:
            with self._write(busy_seconds=wait) as session:
                if len(asked) == 1:
                    [one] = asked
                    return [_unsubscribe_uid(session, one.uid, one.reason, one.at)]
                return _unsubscribe_uids(session, asked)
        except (StoreError, OperationalError) as exc:
            return [self._spool_unsubscribe(one, exc) for one in asked]

    def unsubscribe_many_now(
        self, asked: Sequence[Unsubscribing]
    ) -> list[UnsubscribeResult] | None:
        """`unsubscribe_many` if the write lock is free at this moment, without waiting.

        SQLite only (PostgreSQL's loop has `PostgresBatches`): the batch goes to the
        driver directly (`_SqliteBatch`). None, with nothing written, when another
        writer holds the lock or the database fails (or on PostgreSQL): the caller, an
        event loop that must not sleep, writes them with `unsubscribe_many` instead,
        which waits and spools.
        """
        if self._write_lock is None or not self._write_lock.acquire(blocking=False):
            return None
        try:
            with self._turns.turn(0) if self._turns else nullcontext():
                return self._sqlite_batch_now(asked)
        except (StoreError, SQLAlchemyError, sqlite3.Error):
            return None
        finally:
            self._write_lock.release()

    def _sqlite_batch_now(self, asked: Sequence[Unsubscribing]) -> list[UnsubscribeResult]:
        statements = _SqliteBatch.of(self.store.engine.dialect)
        raw = self.store.engine.raw_connection()  # set up by the store (WAL, foreign keys)
        try:
            driver = raw.driver_connection
            assert isinstance(driver, sqlite3.Connection)
            [(waits,)] = driver.execute("PRAGMA busy_timeout").fetchall()
            driver.execute("PRAGMA busy_timeout=0")  # taken: give way at once, not in 10 s
            try:
                driver.execute("BEGIN IMMEDIATE")
                try:
                    results = statements.write(driver, asked)
                    driver.execute("COMMIT")
                finally:
                    if driver.in_transaction:  # a statement or the commit failed
                        driver.execute("ROLLBACK")
            finally:
                driver.execute(f"PRAGMA busy_timeout={int(waits)}")
            return results
        finally:
            raw.close()  # back to the pool

    def _spool_unsubscribe(self, one: Unsubscribing, cause: Exception) -> UnsubscribeResult:
        try:
            self.spool.add(one.uid, reason=one.reason, at=one.at)
        except OSError as exc:
            raise StoreError(
                f"an unsubscribe could not be recorded: the database did not take it ({cause}) "
                f"and {self.spool.path} cannot be written ({exc.strerror or exc})."
            ) from cause
        log.warning(
            "database busy or down (%s): unsubscribe spooled to %s",
            error_line(cause),
            self.spool.path,
        )
        email: str | None = None
        try:  # reads go on while another program writes (WAL); if not, the page says less
            found = self.by_uid(one.uid)
            email = found.email if found is not None else None
        except SQLAlchemyError:
            pass
        return UnsubscribeResult(
            changed=True, email=email, status=SubscriberStatus.UNSUBSCRIBED.value, spooled=True
        )

    def apply_spooled(self) -> int:
        """Apply the spooled unsubscribes, each with the time it was asked for; how many.

        Leaves the spool for the next call when the database is still busy.
        """
        applied = 0
        for path in self.spool.take():
            entries = self.spool.read(path)

            def apply(entries: list[SpooledUnsubscribe] = entries) -> None:
                with self._write() as session:
                    for entry in entries:
                        sub = by_uid(session, entry.uid, lock=True)
                        if sub is not None and as_utc(sub.confirmed_at) > as_utc(entry.at):
                            continue  # they came back (subscribed and confirmed) after asking
                        self._unsubscribe(session, sub, entry.reason, now=entry.at)

            try:
                self._retrying(apply)
            except (StoreError, OperationalError) as exc:
                log.warning(
                    "spooled unsubscribes not applied yet (%s); trying again later", error_line(exc)
                )
                break
            self.spool.done(path)
            applied += len(entries)
        return applied

    def remove(self, email: str, *, reason: str = "removed by the editor") -> UnsubscribeResult:
        """Unsubscribe an address (the editor's `remove`). Raises SubscriberNotFoundError."""
        key = normalize_email(email).key
        with self._write() as session:
            sub = by_key(session, key, lock=True)
            if sub is None:
                raise not_found(email)
            return self._unsubscribe(session, sub, reason)

    def _unsubscribe(
        self, session: Session, sub: Subscriber | None, reason: str, *, now: datetime | None = None
    ) -> UnsubscribeResult:
        if sub is None:
            return UnsubscribeResult(changed=False, email=None)
        if sub.status in SUPPRESSED:
            # Already suppressed; a pending re-confirmation link dies with this request.
            sub.confirm_nonce = None
            return UnsubscribeResult(changed=False, email=sub.email, status=sub.status)
        now = now or self.clock()
        sub.status = SubscriberStatus.UNSUBSCRIBED.value
        sub.unsubscribed_at = now
        sub.confirm_nonce = None
        sub.status_reason = reason
        sub.updated_at = now
        return UnsubscribeResult(changed=True, email=sub.email, status=sub.status)

    def forget(self, email: str) -> str:
        """Delete everything stored about an address (and its delivery records)."""
        key = normalize_email(email).key
        with self._write() as session:
            sub = by_key(session, key, lock=True)
            if sub is None:
                raise not_found(email)
            session.execute(delete(Subscriber).where(col(Subscriber.id) == sub.id))
            return sub.email


_SUBSCRIBERS = table(Subscriber)
_SUPPRESSED = sorted(s.value for s in SUPPRESSED)
# what an unsubscribe writes into a row; a statement binds "at" and "why"
_LEAVES: dict[str, object] = {
    "status": SubscriberStatus.UNSUBSCRIBED.value,
    "unsubscribed_at": bindparam("at"),
    "confirm_nonce": None,
    "status_reason": bindparam("why"),
    "updated_at": bindparam("at"),
}
# built once: a one-click POST only binds its values
_UNSUBSCRIBE = (
    update(_SUBSCRIBERS)
    .where(
        _SUBSCRIBERS.c.uid == bindparam("that_uid"),
        _SUBSCRIBERS.c.status.not_in(_SUPPRESSED),
    )
    .values(_LEAVES)
    .returning(_SUBSCRIBERS.c.email)
)
# already suppressed: a pending re-confirmation link dies with the request all the same
_FORGET_NONCE = (
    update(_SUBSCRIBERS)
    .where(_SUBSCRIBERS.c.uid == bindparam("that_uid"))
    .values(confirm_nonce=None)
    .returning(_SUBSCRIBERS.c.email, _SUBSCRIBERS.c.status)
)


def _unsubscribe_uid(session: Session, uid: str, reason: str, now: datetime) -> UnsubscribeResult:
    """`Leaving._unsubscribe` by uid, written as one statement in the usual case.

    A one-click POST holds the write lock only for this one UPDATE (no ORM load,
    no flush); a second statement runs only for an address already suppressed or gone.
    """
    conn = session.connection()
    changed = conn.execute(_UNSUBSCRIBE, {"that_uid": uid, "at": now, "why": reason}).first()
    if changed is not None:
        return UnsubscribeResult(
            changed=True, email=changed[0], status=SubscriberStatus.UNSUBSCRIBED.value
        )
    found = conn.execute(_FORGET_NONCE, {"that_uid": uid}).first()
    if found is None:
        return UnsubscribeResult(changed=False, email=None)
    return UnsubscribeResult(changed=False, email=found[0], status=found[1])


# The batch's statements, built once (a batch binds only its values). The rows are
# read first, locked: on PostgreSQL by FOR UPDATE, on SQLite by the write lock the
# transaction holds from BEGIN, so what was read still holds when it is written.
_FIND_MANY = select(_SUBSCRIBERS.c.uid, _SUBSCRIBERS.c.email, _SUBSCRIBERS.c.status).where(
    _SUBSCRIBERS.c.uid.in_(bindparam("uids", expanding=True))
)
# run once per row (executemany): no IN list, which executemany refuses
_UNSUBSCRIBE_EACH = (
    update(_SUBSCRIBERS).where(_SUBSCRIBERS.c.uid == bindparam("that_uid")).values(_LEAVES)
)
_FORGET_NONCES = (
    update(_SUBSCRIBERS)
    .where(_SUBSCRIBERS.c.uid.in_(bindparam("uids", expanding=True)))
    .values(confirm_nonce=None)
)


def _unsubscribe_uids(session: Session, asked: Sequence[Unsubscribing]) -> list[UnsubscribeResult]:
    """`_unsubscribe_uid` for several at once, in three statements however many they are.

    Each row gets its own request's time and reason. The statements are built once:
    building one per batch (a CASE on the uid for each value) cost half the batch's
    CPU, and the thread writing it competes with the event loop for the interpreter.
    """
    first = _first_asks(asked)
    conn = session.connection()
    find = _FIND_MANY.with_for_update() if conn.dialect.name == "postgresql" else _FIND_MANY
    found = {
        uid: (email, status) for uid, email, status in conn.execute(find, {"uids": list(first)})
    }
    leaving, staying = _split(found)
    if leaving:
        conn.execute(
            _UNSUBSCRIBE_EACH,
            [{"that_uid": uid, "at": first[uid].at, "why": first[uid].reason} for uid in leaving],
        )
    if staying:  # already suppressed: their pending re-confirmation links die all the same
        conn.execute(_FORGET_NONCES, {"uids": staying})
    return _results(asked, found, leaving, staying)


def _first_asks(asked: Sequence[Unsubscribing]) -> dict[str, Unsubscribing]:
    """Each uid's first request: the same link twice counts once, with its first time."""
    first: dict[str, Unsubscribing] = {}
    for one in asked:
        first.setdefault(one.uid, one)
    return first


def _split(found: dict[str, tuple[str, str]]) -> tuple[list[str], list[str]]:
    """The uids found that leave now, and those already suppressed (their links die all the same)."""
    leaving = [uid for uid, (_, status) in found.items() if status not in _SUPPRESSED]
    return leaving, [uid for uid, (_, status) in found.items() if status in _SUPPRESSED]


def _results(
    asked: Sequence[Unsubscribing],
    found: dict[str, tuple[str, str]],
    leaving: list[str],
    staying: list[str],
) -> list[UnsubscribeResult]:
    """Each request's answer, in order, from the rows found and what was done to them."""
    done = {
        uid: UnsubscribeResult(
            changed=True, email=found[uid][0], status=SubscriberStatus.UNSUBSCRIBED.value
        )
        for uid in leaving
    }
    for uid in staying:
        done[uid] = UnsubscribeResult(changed=False, email=found[uid][0], status=found[uid][1])
    gone = UnsubscribeResult(changed=False, email=None)
    return [done.get(one.uid, gone) for one in asked]


# The event loop's batch on SQLite (`Leaving.unsubscribe_many_now`): the statements of
# `_unsubscribe_uids`, compiled once by SQLAlchemy and run by the sqlite3 driver. Through
# the session a batch cost about 0.5 ms of CPU before its first row (six statements, each
# through SQLAlchemy's execution machinery, on the loop that also serves the requests)
# and 0.035 ms a row; a one-click batch is a few rows. The uids go in as one JSON array
# (json_each), so each statement's text is the same whatever the batch's size.
_UIDS: Select[Any] = select(literal_column("value")).select_from(func.json_each(bindparam("uids")))
_FIND_JSON = select(_SUBSCRIBERS.c.uid, _SUBSCRIBERS.c.email, _SUBSCRIBERS.c.status).where(
    _SUBSCRIBERS.c.uid.in_(_UIDS)
)
_FORGET_JSON = update(_SUBSCRIBERS).where(_SUBSCRIBERS.c.uid.in_(_UIDS)).values(confirm_nonce=None)


class _SqliteBatch:
    """`_unsubscribe_uids` for the sqlite3 driver: its statements' texts and their binding."""

    def __init__(self, dialect: Dialect) -> None:
        self._find = _FIND_JSON.compile(dialect=dialect)
        self._forget = _FORGET_JSON.compile(dialect=dialect)
        self._leave = _UNSUBSCRIBE_EACH.compile(dialect=dialect)
        self._when = _time_binder(dialect)

    @staticmethod
    @functools.lru_cache(maxsize=8)  # one per engine's dialect, compiled on first use
    def of(dialect: Dialect) -> _SqliteBatch:
        return _SqliteBatch(dialect)

    def write(
        self, driver: sqlite3.Connection, asked: Sequence[Unsubscribing]
    ) -> list[UnsubscribeResult]:
        first = _first_asks(asked)
        found = {
            uid: (email, status)
            for uid, email, status in driver.execute(
                self._find.string, _bound(self._find, uids=json.dumps(list(first)))
            )
        }
        leaving, staying = _split(found)
        if leaving:
            driver.executemany(
                self._leave.string,
                [
                    _bound(
                        self._leave,
                        at=self._when(first[uid].at),
                        why=first[uid].reason,
                        that_uid=uid,
                    )
                    for uid in leaving
                ],
            )
        if staying:
            driver.execute(self._forget.string, _bound(self._forget, uids=json.dumps(staying)))
        return _results(asked, found, leaving, staying)


def _time_binder(dialect: Dialect) -> Callable[[Any], Any]:
    """A time as SQLAlchemy binds it for the unsubscribe columns on this dialect (the same
    stored value, the column type's conversion to UTC included)."""
    when = _SUBSCRIBERS.c.unsubscribed_at.type.dialect_impl(dialect)
    return when.bind_processor(dialect) or (lambda value: value)


def _bound(compiled: Compiled, **values: object) -> list[object]:
    """A compiled statement's parameters in its order: ``values`` over those it fixed."""
    every = compiled.params | values
    return [every[name] for name in compiled.positiontup or []]  # type: ignore[attr-defined]


# The event loop's batch on PostgreSQL (`PostgresBatches`): the same statements, the
# uids bound as one array.
_FIND_ANY = (
    select(_SUBSCRIBERS.c.uid, _SUBSCRIBERS.c.email, _SUBSCRIBERS.c.status)
    .where(_SUBSCRIBERS.c.uid == any_(bindparam("uids", type_=ARRAY(String))))
    .with_for_update()
)
_FORGET_ANY = (
    update(_SUBSCRIBERS)
    .where(_SUBSCRIBERS.c.uid == any_(bindparam("uids", type_=ARRAY(String))))
    .values(confirm_nonce=None)
)
# Rows another transaction holds (an editor's remove) send the batch to the thread instead
_LOCK_WAIT = "SET LOCAL lock_timeout = '50ms'"
# After a failure (no server, no connection) the loop leaves batches to the thread this long
_PG_REST_SECONDS = 1.0
_PG_CONNECT_SECONDS = 2


class PostgresBatches:
    """One-click batches written from a `slice serve` worker's event loop on PostgreSQL.

    Written in a thread, each statement of a batch is a round trip during which
    the thread and the event loop hand the interpreter to each other; a sampled
    two-worker run measured 1.13x one worker. Here the batch is awaited on the
    loop over one connection of psycopg's own (asynchronous) that the worker
    keeps; the statements are `_unsubscribe_uids`'s, compiled once by SQLAlchemy.
    Anything that goes wrong (no server, rows locked past `_LOCK_WAIT`, a failed
    statement) rolls back and answers None, and the caller hands the batch to
    `Leaving.unsubscribe_many`, which waits, retries and spools.
    """

    def __init__(self, store: Store) -> None:
        url = store.engine.url
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        dialect = store.engine.dialect
        self._find = _FIND_ANY.compile(dialect=dialect)
        self._forget = _FORGET_ANY.compile(dialect=dialect)
        self._leave = _UNSUBSCRIBE_EACH.compile(dialect=dialect)
        self._when = _time_binder(dialect)
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._resting_until = 0.0

    async def write(self, asked: Sequence[Unsubscribing]) -> list[UnsubscribeResult] | None:
        """The batch's answers once committed, or None with nothing written."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._resting_until:
            return None
        try:
            conn = await self._connection(loop)
            async with conn.transaction(), conn.cursor() as cur:
                await cur.execute(_LOCK_WAIT)
                return await self._statements(cur, asked)
        except (psycopg.Error, OSError) as exc:
            log.info("one-click batch left to a thread: %s", error_line(exc))
            self._resting_until = loop.time() + _PG_REST_SECONDS
            await self.close()
            return None

    async def _statements(
        self, cur: psycopg.AsyncCursor[Any], asked: Sequence[Unsubscribing]
    ) -> list[UnsubscribeResult]:
        first = _first_asks(asked)
        await cur.execute(self._find.string, {"uids": list(first)})
        found = {uid: (email, status) for uid, email, status in await cur.fetchall()}
        leaving, staying = _split(found)
        if leaving:
            await cur.executemany(
                self._leave.string,
                [
                    self._leave.params
                    | {"at": self._when(first[uid].at), "why": first[uid].reason, "that_uid": uid}
                    for uid in leaving
                ],
            )
        if staying:
            await cur.execute(self._forget.string, self._forget.params | {"uids": staying})
        return _results(asked, found, leaving, staying)

    async def _connection(self, loop: asyncio.AbstractEventLoop) -> psycopg.AsyncConnection[Any]:
        if self._conn is not None and (self._loop is not loop or self._conn.closed):
            self._conn = None  # made on another loop (a test's), or gone: not ours to use
        if self._conn is None:
            self._conn = await psycopg.AsyncConnection.connect(
                self._conninfo, connect_timeout=_PG_CONNECT_SECONDS
            )
            self._loop = loop
        return self._conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._loop is asyncio.get_running_loop():
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()
