"""On SQLite a long writer gives way: a signup waiting behind an ingest gets its turn.

SQLite's write lock has no queue, so a job that commits and at once begins again (an
ingest storing chunk after chunk) can keep every other writer out until they give up.
Here a real second process writes back to back, holding the lock 0.3 s at a time,
as a loaded ingest does, and writers in this process must all get in within seconds.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from newsletter.core.errors import StoreBusyError
from newsletter.core.store import Store

HOG = textwrap.dedent(
    """
    import sys, time
    from sqlalchemy import text
    from newsletter.core.store import Store

    store = Store.open(sys.argv[1])
    end = time.monotonic() + float(sys.argv[2])
    print("writing", flush=True)
    while time.monotonic() < end:
        with store.write_connection() as conn:
            conn.execute(text("UPDATE slice_counters SET value = value + 1 WHERE name = 'hog'"))
            time.sleep(0.3)  # a chunk of an ingest on a loaded machine
        store.give_way()
    """
)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store.open(f"sqlite:///{tmp_path / 'slice.db'}")
    with store.write_connection() as conn:
        conn.execute(text("INSERT INTO slice_counters (name, value) VALUES ('hog', 0)"))
        conn.execute(text("INSERT INTO slice_counters (name, value) VALUES ('turns', 0)"))
    return store


def test_writers_waiting_behind_a_back_to_back_writer_all_get_their_turn(
    store: Store, tmp_path: Path
) -> None:
    hog = subprocess.Popen(
        [sys.executable, "-c", HOG, str(store.engine.url), "12"],
        stdout=subprocess.PIPE,
        text=True,
    )
    waits: list[float] = []
    refused: list[str] = []

    def one_write() -> None:
        started = time.monotonic()
        try:
            with store.write_connection(busy_seconds=5) as conn:
                conn.execute(
                    text("UPDATE slice_counters SET value = value + 1 WHERE name = 'turns'")
                )
        except StoreBusyError as exc:
            refused.append(str(exc))
            return
        waits.append(time.monotonic() - started)

    try:
        assert hog.stdout is not None and hog.stdout.readline().strip() == "writing"
        time.sleep(0.5)  # the other process is in its loop
        for _round in range(3):
            threads = [threading.Thread(target=one_write) for _ in range(6)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        still_writing = hog.poll() is None
    finally:
        hog.kill()
        hog.wait()
        store.dispose()
    assert still_writing, "the other writer stopped before the test's writers were done"
    # without turns, most of these waited the whole 5 s and were refused as busy
    assert refused == []
    assert len(waits) == 18 and max(waits) < 3, sorted(waits)


def test_give_way_pauses_only_while_another_writer_waits(store: Store) -> None:
    assert store.give_way() is False  # nobody waits: a long job goes straight on

    holding = threading.Event()
    release = threading.Event()

    def hold_the_lock() -> None:
        with store.write_connection():
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert holding.wait(5)

    def wait_for_the_lock() -> None:
        with store.write_connection(busy_seconds=5) as conn:
            conn.execute(text("UPDATE slice_counters SET value = 1 WHERE name = 'turns'"))

    waiter = threading.Thread(target=wait_for_the_lock)
    waiter.start()
    try:
        deadline = time.monotonic() + 5
        while not store.give_way():  # True once the second writer waits, marked
            assert time.monotonic() < deadline, "the waiting writer was never seen"
    finally:
        release.set()
        holder.join()
        waiter.join()
    store.dispose()


def test_a_memory_database_has_no_turns_to_take() -> None:
    memory = Store.open("sqlite://")
    try:
        assert memory.give_way() is False
    finally:
        memory.dispose()
