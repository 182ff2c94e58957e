"""Opening the database: engine, sessions, and migrations on first use.

SQLite is the default and is set up for two processes at once (`slice serve`
and `slice send`): WAL journal, a busy timeout, foreign keys on, and write
transactions that take the write lock at BEGIN (``BEGIN IMMEDIATE``) so that a
writer waits for its turn instead of failing halfway. PostgreSQL is reached by
URL with the psycopg (3) driver.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import NullPool
from sqlmodel import Session

from newsletter.core.errors import StoreError
from newsletter.core.migrations import migrate
from newsletter.core.settings import Settings


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


def make_engine(url: str, *, busy_timeout_ms: int = 10_000) -> Engine:
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
        _setup_sqlite(engine, busy_timeout_ms)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def _setup_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
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
        write = conn.get_execution_options().get("slice_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Store:
    """The database: an engine plus sessions. Migrates itself on first use."""

    def __init__(self, engine: Engine, *, migrate_now: bool = True) -> None:
        self.engine = engine
        self._writer = engine.execution_options(slice_write=True)
        if migrate_now:
            self.migrate()

    @classmethod
    def open(cls, url: str, *, busy_timeout_ms: int = 10_000) -> Store:
        engine = make_engine(url, busy_timeout_ms=busy_timeout_ms)
        try:
            return cls(engine)
        except StoreError:
            engine.dispose()
            raise
        except OperationalError as exc:
            engine.dispose()
            raise StoreError(f"cannot open the database {_safe(url)}: {exc.orig}") from exc

    def migrate(self) -> list[str]:
        try:
            return migrate(self.engine)
        except OperationalError as exc:
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
    def write(self) -> Iterator[Session]:
        """A session that holds the write lock from its first statement; commits on exit."""
        with Session(self._writer, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

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
    return Store.open(settings.database_url, busy_timeout_ms=settings.database.busy_timeout_ms)
