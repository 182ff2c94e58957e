"""A busy database is waited for with backoff, and named as busy when it stays busy."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import pytest
from sqlmodel import Session, select
from typer.testing import Result

from newsletter.core.errors import StoreBusyError
from newsletter.core.models import Issue
from newsletter.core.settings import Settings
from newsletter.core.store import Store, retry_busy


@contextmanager
def locked(db: Path, seconds: float | None = None) -> Iterator[sqlite3.Connection]:
    """Another program holding SQLite's write lock (released after ``seconds``, or at exit)."""
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(seconds, lambda: other.execute("COMMIT")) if seconds else None
    if timer:
        timer.start()
    try:
        yield other
    finally:
        if timer:
            timer.join()
        else:
            other.execute("COMMIT")
        other.close()


def _issue(issue_id: str) -> Issue:
    return Issue(id=issue_id, number=1, window_start=date(2025, 1, 1), window_end=date(2025, 1, 7))


def test_a_writer_outwaits_a_lock_longer_than_sqlites_own_timeout(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with Store.open(f"sqlite:///{db}", busy_timeout_ms=50, busy_seconds=10) as store:
        with locked(db, seconds=0.6):
            time.sleep(0.05)
            with store.write() as session:
                session.add(_issue("a"))
        with store.read() as session:
            assert session.exec(select(Issue.id)).all() == ["a"]


def test_a_lock_held_past_the_retries_is_named_busy(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with Store.open(f"sqlite:///{db}", busy_timeout_ms=50, busy_seconds=0.5) as store:
        with locked(db), pytest.raises(StoreBusyError) as caught, store.write() as session:
            session.add(_issue("a"))
        assert "the database is busy" in str(caught.value)
        assert "SLICE_DATABASE_URL" not in str(caught.value)
        # nothing half-done, and the store works again once the lock is gone
        with store.write() as session:
            session.add(_issue("b"))


def test_retry_busy_runs_the_work_again_and_lets_other_errors_through(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with Store.open(f"sqlite:///{db}", busy_timeout_ms=20, busy_seconds=5) as store:
        calls: list[int] = []

        def work() -> str:
            calls.append(1)
            with store.write(busy_seconds=0.05) as session:  # gives up quickly each time
                session.add(_issue(f"i{len(calls)}"))
            return "done"

        with locked(db, seconds=0.5):
            time.sleep(0.05)
            assert retry_busy(work, seconds=5) == "done"
        assert len(calls) > 1
        with pytest.raises(ZeroDivisionError):
            retry_busy(lambda: 1 / 0)


def test_transact_retries_a_whole_transaction(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with Store.open(f"sqlite:///{db}", busy_timeout_ms=20, busy_seconds=5) as store:
        with locked(db, seconds=0.4):
            time.sleep(0.05)

            def add(session: Session) -> str:
                session.add(_issue("t"))
                return "t"

            added = store.transact(add)
        assert added == "t"
        with store.read() as session:
            assert session.exec(select(Issue.id)).all() == ["t"]


def test_cli_reads_during_a_write_lock_and_says_busy_for_a_write(
    settings: Settings, run_cli: Callable[..., Result], project: Path
) -> None:
    toml = project / "slice.toml"
    toml.write_text(
        toml.read_text().replace("[database]\n", "[database]\nbusy_retry_seconds = 0.5\n", 1)
    )
    assert "busy_retry_seconds = 0.5" in toml.read_text()
    Store.open(settings.database_url).dispose()
    db = Path(settings.database_url.removeprefix("sqlite:///"))
    with locked(db):
        counted = run_cli("subscribers", "count")
        assert counted.exit_code == 0, counted.output
        added = run_cli("subscribers", "add", "ann@example.org", "--confirmed")
    assert added.exit_code == 1
    assert added.output.startswith("Error: the database is busy"), added.output
    assert "SLICE_DATABASE_URL" not in added.output
    assert "Traceback" not in added.output
    assert run_cli("subscribers", "add", "ann@example.org", "--confirmed").exit_code == 0
