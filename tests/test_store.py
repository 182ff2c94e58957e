"""The store: migrations on empty and existing databases, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlmodel import select

from newsletter.core.errors import MigrationError, StoreError
from newsletter.core.migrations import Migration, applied, discover, migrate
from newsletter.core.models import Delivery, Issue, Paper, Subscriber
from newsletter.core.store import Store, make_engine


def test_fresh_database_gets_every_migration(db_url: str) -> None:
    with Store.open(db_url) as store:
        names = applied(store.engine)
        assert names == [m.name for m in discover()]
        tables = set(inspect(store.engine).get_table_names())
        assert {"papers", "subscribers", "issues", "deliveries", "slice_migrations"} <= tables


def test_reopening_applies_nothing_and_keeps_data(db_url: str) -> None:
    with Store.open(db_url) as store, store.write() as session:
        session.add(
            Paper(title="A study", source="pubmed", published=date(2025, 6, 2), doi="10.1/x")
        )
    with Store.open(db_url) as store:
        assert store.migrate() == []
        with store.read() as session:
            assert session.exec(select(Paper.title)).all() == ["A study"]


def test_new_migration_runs_on_an_existing_database(db_url: str) -> None:
    with Store.open(db_url) as store:

        def add_column(conn):  # type: ignore[no-untyped-def]
            conn.execute(text("ALTER TABLE issues ADD COLUMN note TEXT"))

        extra = Migration("m999_test_note", add_column)
        assert migrate(store.engine, [*discover(), extra]) == ["m999_test_note"]
        assert migrate(store.engine, [*discover(), extra]) == []
        assert "note" in {c["name"] for c in inspect(store.engine).get_columns("issues")}


def test_failed_migration_rolls_back_and_is_not_recorded(db_url: str) -> None:
    with Store.open(db_url) as store:

        def broken(conn):  # type: ignore[no-untyped-def]
            conn.execute(text("CREATE TABLE half_done (id INTEGER)"))
            conn.execute(text("THIS IS NOT SQL"))

        with pytest.raises(MigrationError, match="m998_broken failed"):
            migrate(store.engine, [*discover(), Migration("m998_broken", broken)])
        assert "m998_broken" not in applied(store.engine)
        assert "half_done" not in inspect(store.engine).get_table_names()


def test_unique_email_key_and_ledger_pair(any_store: Store) -> None:
    from sqlalchemy.exc import IntegrityError

    with any_store.write() as session:
        session.add(Subscriber(email="Ann@Example.org", email_key="ann@example.org"))
    with pytest.raises(IntegrityError), any_store.write() as session:
        session.add(Subscriber(email="ann@example.org", email_key="ann@example.org"))
    with any_store.write() as session:
        sub = session.exec(select(Subscriber)).one()
        session.add(
            Issue(
                id="2025-W24", number=1, window_start=date(2025, 6, 9), window_end=date(2025, 6, 15)
            )
        )
        session.flush()
        session.add(Delivery(issue_id="2025-W24", subscriber_id=sub.id or 0, message_id="<a@b>"))
    with pytest.raises(IntegrityError), any_store.write() as session:
        session.add(Delivery(issue_id="2025-W24", subscriber_id=sub.id or 0, message_id="<a@b>"))


def test_sqlite_is_wal_with_busy_timeout(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with (
        Store.open(f"sqlite:///{db}", busy_timeout_ms=4321) as store,
        store.engine.connect() as conn,
    ):
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 4321
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_sqlite_writer_waits_for_another_process_lock(tmp_path: Path) -> None:
    """A second writer (another process, e.g. `slice serve`) waits instead of failing."""
    db = tmp_path / "s.db"
    store = Store.open(f"sqlite:///{db}", busy_timeout_ms=5000)
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute(
        "INSERT INTO issues VALUES ('x', 1, '', '2025-01-01', '2025-01-07', 'composed', '2025-01-01 00:00:00', NULL, NULL)"
    )
    threading.Timer(0.3, lambda: other.execute("COMMIT")).start()
    with store.write() as session:
        session.add(
            Issue(id="y", number=2, window_start=date(2025, 1, 8), window_end=date(2025, 1, 14))
        )
    with store.read() as session:
        assert sorted(session.exec(select(Issue.id)).all()) == ["x", "y"]
    other.close()
    store.dispose()


def test_unreachable_database_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="cannot open the database"):
        Store.open("postgresql://nobody@127.0.0.1:1/none")


def test_unsupported_url_is_refused() -> None:
    with pytest.raises(StoreError, match="unsupported database 'mysql'"):
        make_engine("mysql://x@localhost/db")
    with pytest.raises(StoreError, match="not a database URL"):
        make_engine("::nonsense::")


def test_sqlite_folder_is_created(tmp_path: Path) -> None:
    db = tmp_path / "deep" / "er" / "slice.db"
    Store.open(f"sqlite:///{db}").dispose()
    assert db.is_file()
