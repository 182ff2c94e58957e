"""Opening the database: engine, sessions, and migrations on first use.

SQLite is the default and is set up for two processes at once (`slice serve`
and `slice send`): WAL journal, a busy timeout, foreign keys on, and write
transactions that take the write lock at BEGIN (``BEGIN IMMEDIATE``) so that a
writer waits for its turn instead of failing halfway. PostgreSQL is reached by
URL with the psycopg (3) driver.

A busy database is waited for, never a failure at once: `retry_busy` runs a
piece of work again with backoff while the database says it is locked (SQLite's
"database is locked", PostgreSQL's deadlock, serialization and lock-timeout
errors), for up to ``database.busy_retry_seconds``, and then raises
`StoreBusyError`, which says "the database is busy" and not that the URL is
wrong. Every SQLite write transaction takes its lock through it; work that can
be run again whole goes through `Store.transact`.
"""

from __future__ import annotations

import contextlib
import logging
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import NullPool
from sqlmodel import Session

from newsletter.core.errors import StoreBusyError, StoreError
from newsletter.core.migrations import applied, discover, migrate
from newsletter.core.settings import Settings
from newsletter.core.turns import WriterTurns

T = TypeVar("T")
log = logging.getLogger(__name__)

BUSY_SECONDS = 30.0  # default of database.busy_retry_seconds
# PostgreSQL: serialization failure, deadlock, lock not available, too many connections
_PG_BUSY = frozenset({"40001", "40P01", "55P03", "53300"})
_SQLITE_BUSY = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED (primary codes)


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is locked or congested now, so trying again may work."""
    if isinstance(exc, StoreBusyError):
        return True
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(orig, sqlite3.OperationalError):
        code = getattr(orig, "sqlite_errorcode", None)
        if isinstance(code, int):
            return code & 0xFF in _SQLITE_BUSY
        text = str(orig).lower()
        return "database is locked" in text or "database table is locked" in text
    return getattr(orig, "sqlstate", None) in _PG_BUSY


def retry_busy(
    fn: Callable[[], T],
    *,
    seconds: float = BUSY_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``fn()``, run again with backoff while the database is busy, for up to ``seconds``.

    ``fn`` must be safe to run again: one whole transaction, or taking a lock.
    Any other error goes through at once. Raises `StoreBusyError` when time is up.
    """
    deadline = time.monotonic() + seconds
    delay = 0.01
    attempt = 0
    while True:
        try:
            return fn()
        except (DBAPIError, StoreBusyError) as exc:
            if not is_busy(exc):
                raise
            left = deadline - time.monotonic()
            attempt += 1
            if left <= 0:
                if isinstance(exc, StoreBusyError):
                    raise
                raise StoreBusyError.after(seconds) from exc
            log.debug("database busy (attempt %d), trying again", attempt)
            # jitter, so that writers that woke together do not collide again
            sleep(min(left, delay * (0.5 + random.random())))
            delay = min(delay * 2, 0.5)


def normalize_url(url: str) -> URL:
    """Parse a database URL; plain ``postgresql://`` means the psycopg (3) driver."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            f"not a database URL: {url!r}; use e.g. sqlite:///subscribers/slice.db "
            "or postgresql://user@host/dbname"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(
            f"unsupported database {parsed.get_backend_name()!r}: Slice runs on SQLite or PostgreSQL."
        )
    return parsed


def make_engine(
    url: str, *, busy_timeout_ms: int = 10_000, busy_seconds: float = BUSY_SECONDS
) -> Engine:
    """An engine for ``url``, set up for concurrent use. Creates a SQLite file's folder."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed,
            connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False},
            poolclass=NullPool if database in ("", ":memory:") else None,
        )
        _setup_sqlite(engine, busy_timeout_ms, busy_seconds, writer_turns(engine))
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def writer_turns(engine: Engine) -> WriterTurns | None:
    """The waiting mark of a SQLite file's writers (None for PostgreSQL or memory)."""
    database = engine.url.database or ""
    if engine.dialect.name != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:"):
        return None
    return WriterTurns(Path(database))


def _setup_sqlite(
    engine: Engine, busy_timeout_ms: int, busy_seconds: float, turns: WriterTurns | None
) -> None:
    # pysqlite opens transactions lazily and not before DDL; take over BEGIN so
    # that migrations are transactional and writers can ask for the lock up front.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if not options.get("slice_write", False):
            conn.exec_driver_sql("BEGIN")
            return
        # SQLite's own busy handler waits in each attempt (never past the deadline);
        # retry_busy tries again when it gives up, until the deadline.
        seconds = float(options.get("slice_busy_seconds", busy_seconds))
        deadline = time.monotonic() + seconds

        def take_lock() -> None:
            if turns is not None:
                conn.exec_driver_sql("PRAGMA busy_timeout=0")
                try:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                    return
                except DBAPIError as exc:
                    if not is_busy(exc):
                        raise
            left_ms = max(1, int((deadline - time.monotonic()) * 1000))
            conn.exec_driver_sql(f"PRAGMA busy_timeout={min(busy_timeout_ms, left_ms)}")
            # taken: wait, marked as waiting, so that a long writer gives way (core.turns)
            with turns.waiting() if turns is not None else contextlib.nullcontext():
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        retry_busy(take_lock, seconds=seconds)
        # the connection's other statements wait as configured, not as this BEGIN did
        conn.exec_driver_sql(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")


class Store:
    """The database: an engine plus sessions. Migrates itself on first use."""

    def __init__(
        self, engine: Engine, *, migrate_now: bool = True, busy_seconds: float = BUSY_SECONDS
    ) -> None:
        self.engine = engine
        self.busy_seconds = busy_seconds
        self._writer = engine.execution_options(slice_write=True)
        self._turns = writer_turns(engine)
        if migrate_now:
            self.migrate()

    @classmethod
    def open(
        cls, url: str, *, busy_timeout_ms: int = 10_000, busy_seconds: float = BUSY_SECONDS
    ) -> Store:
        engine = make_engine(url, busy_timeout_ms=busy_timeout_ms, busy_seconds=busy_seconds)
        try:
            return cls(engine, busy_seconds=busy_seconds)
        except StoreError:
            engine.dispose()
            raise
        except OperationalError as exc:
            engine.dispose()
            raise StoreError(f"cannot open the database {_safe(url)}: {exc.orig}") from exc

    def migrate(self) -> list[str]:
        try:
            # a read first: an up-to-date database is not write-locked by every command
            if set(applied(self.engine)) >= {m.name for m in discover()}:
                return []
            return retry_busy(lambda: migrate(self.engine), seconds=self.busy_seconds)
        except OperationalError as exc:
            if is_busy(exc):
                raise StoreBusyError.after(self.busy_seconds) from exc
            raise StoreError(
                f"cannot open the database {_safe(str(self.engine.url))}: "
                f"{str(exc.orig).strip().splitlines()[0]}; check SLICE_DATABASE_URL."
            ) from exc

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading (and small writes that may wait)."""
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def write(self, *, busy_seconds: float | None = None) -> Iterator[Session]:
        """A session that holds the write lock from its first statement; commits on exit.

        On SQLite, waiting for the lock is retried for ``busy_seconds`` (default: the
        store's ``busy_seconds``) before `StoreBusyError`.
        """
        bind = self._writer
        if busy_seconds is not None:
            bind = bind.execution_options(slice_busy_seconds=busy_seconds)
        with Session(bind, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def write_connection(self, *, busy_seconds: float | None = None) -> Iterator[Connection]:
        """A Core connection in a write transaction (as `write`), for work below the ORM."""
        bind = self._writer
        if busy_seconds is not None:
            bind = bind.execution_options(slice_busy_seconds=busy_seconds)
        with bind.begin() as conn:
            yield conn

    def transact(self, fn: Callable[[Session], T], *, busy_seconds: float | None = None) -> T:
        """``fn(session)`` in one write transaction, run again whole while the database is busy."""
        seconds = self.busy_seconds if busy_seconds is None else busy_seconds

        def once() -> T:
            with self.write(busy_seconds=seconds) as session:
                return fn(session)

        return retry_busy(once, seconds=seconds)

    def give_way(self) -> bool:
        """Between two write transactions of a long job: pause if other writers wait.

        SQLite only (PostgreSQL queues its waiters); see `newsletter.core.turns`.
        """
        return self._turns.give_way() if self._turns is not None else False

    def dispose(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.dispose()


def _safe(url: str) -> str:
    """A URL fit to print: the password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except SQLAlchemyError:
        return "<database>"


def open_store(settings: Settings) -> Store:
    """The project's store, from settings (``settings.database_url``)."""
    return Store.open(
        settings.database_url,
        busy_timeout_ms=settings.database.busy_timeout_ms,
        busy_seconds=settings.database.busy_retry_seconds,
    )
