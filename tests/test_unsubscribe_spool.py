"""An unsubscribe the database cannot take right now is spooled, never lost, and applied later."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from newsletter.core.errors import StoreError
from newsletter.core.models import SubscriberStatus
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.readers.leaving import Unsubscribing
from newsletter.readers.outcomes import UnsubscribeResult
from newsletter.readers.spool import UnsubscribeSpool
from newsletter.readers.subscribers import ConsentSource, Subscribers
from newsletter.web import create_app
from tests.signup_support import FakeClock, rows
from tests.support.liveserver import LiveServer
from tests.support.sqlitelock import locked


@pytest.fixture
def quick_store(settings: Settings) -> Iterator[Store]:
    """The project's SQLite store, giving up on a busy database after 0.3 s."""
    with Store.open(settings.database_url, busy_timeout_ms=50, busy_seconds=0.3) as opened:
        yield opened


def _reader(subs: Subscribers, email: str) -> str:
    subs.add(email, source=ConsentSource.CLI_HELD)
    found = subs.get(email)
    assert found is not None
    return subs.tokens.unsubscribe_token(found.uid)


def test_a_busy_database_spools_the_unsubscribe_and_it_is_applied_later(
    settings: Settings, quick_store: Store
) -> None:
    clock = FakeClock()
    subs = Subscribers(settings, quick_store, clock=clock)
    token = _reader(subs, "ann@example.org")
    asked_at = clock.now
    with locked(quick_store):
        result = subs.unsubscribe(token)
        assert result.spooled and result.changed and result.email == "ann@example.org"
        assert subs.spool.pending()
        assert subs.apply_spooled() == 0  # still locked: kept for later, not dropped
    clock.advance(minutes=5)
    assert subs.apply_spooled() == 1
    assert not subs.spool.pending()
    [ann] = rows(quick_store)
    assert ann.status == SubscriberStatus.UNSUBSCRIBED
    assert ann.unsubscribed_at is not None
    assert ann.unsubscribed_at.replace(tzinfo=None) == asked_at.replace(tzinfo=None)


def test_a_spooled_unsubscribe_does_not_undo_a_later_confirmation(
    settings: Settings, quick_store: Store
) -> None:
    clock = FakeClock()
    subs = Subscribers(settings, quick_store, clock=clock)
    token = _reader(subs, "ann@example.org")
    with locked(quick_store):
        assert subs.unsubscribe(token).spooled
    clock.advance(minutes=1)
    # the reader came back before the spool was applied: they subscribed and confirmed
    subs.unsubscribe(token)
    confirmation = subs.subscribe("ann@example.org").confirmation
    assert confirmation is not None
    subs.confirm(confirmation.token)
    assert subs.apply_spooled() == 1
    assert [s.status for s in rows(quick_store)] == [SubscriberStatus.CONFIRMED]


def test_a_crash_while_applying_leaves_the_spool_for_the_next_run(
    settings: Settings, quick_store: Store
) -> None:
    subs = Subscribers(settings, quick_store)
    tokens = [_reader(subs, f"r{n}@example.org") for n in range(3)]
    with locked(quick_store):
        for token in tokens:
            assert subs.unsubscribe(token).spooled
    # a process took the spool aside and died before applying it
    taken = subs.spool.take()
    assert len(taken) == 1 and not subs.spool.path.exists()
    # a half-written last line (a crash inside write()) is skipped, never answered anyway
    with taken[0].open("a") as fh:
        fh.write('{"uid": "half')
    assert subs.apply_spooled() == 3
    assert {s.status for s in rows(quick_store)} == {SubscriberStatus.UNSUBSCRIBED}
    assert list(subs.spool.folder.glob("unsubscribe-spool*")) == []


def test_no_database_and_no_spool_is_a_store_error(settings: Settings, quick_store: Store) -> None:
    subs = Subscribers(settings, quick_store)
    token = _reader(subs, "ann@example.org")
    subs.spool.path.mkdir(parents=True)  # the spool cannot be written: a folder is in the way
    with locked(quick_store), pytest.raises(StoreError, match="could not be recorded"):
        subs.unsubscribe(token)


def test_serve_answers_503_with_retry_after_only_when_nothing_can_take_it(
    settings: Settings, quick_store: Store
) -> None:
    app = create_app(settings, store=quick_store)
    subs: Subscribers = app.state.subscribers
    first, second = _reader(subs, "ann@example.org"), _reader(subs, "bob@example.org")
    server = LiveServer(app).start()
    try:
        with httpx.Client(base_url=server.url, timeout=20) as client:
            with locked(quick_store):
                spooled = client.post(
                    f"/unsubscribe/{first}", data={"List-Unsubscribe": "One-Click"}
                )
                assert spooled.status_code == 200 and "unsubscribed" in spooled.text
                Path(subs.spool.path).rename(subs.spool.path.with_suffix(".moved"))
                subs.spool.path.mkdir()
                refused = client.post(
                    f"/unsubscribe/{second}", data={"List-Unsubscribe": "One-Click"}
                )
                assert refused.status_code == 503
                assert refused.headers["retry-after"] == "30"
                assert "try again" in refused.text.lower()
            subs.spool.path.rmdir()
            subs.spool.path.with_suffix(".moved").rename(subs.spool.path)
            # serve applies the spool by itself within a few seconds
            for _ in range(100):
                if not subs.spool.pending():
                    break
                time.sleep(0.1)
    finally:
        server.stop()
    assert {s.email: s.status for s in rows(quick_store)} == {
        "ann@example.org": SubscriberStatus.UNSUBSCRIBED,
        "bob@example.org": SubscriberStatus.CONFIRMED,
    }


def test_the_spool_lives_in_the_subscribers_folder(settings: Settings) -> None:
    spool = UnsubscribeSpool.of(settings)
    assert spool.path == settings.resolve(settings.paths.subscribers) / "unsubscribe-spool.jsonl"


def test_one_click_posts_arriving_together_are_each_recorded_busy_or_not(
    settings: Settings, quick_store: Store
) -> None:
    """A burst of one-click POSTs is written together (newsletter.web.oneclick): every one is
    answered 200 with the reader's address and recorded, in the database or in the spool."""
    app = create_app(settings, store=quick_store)
    subs: Subscribers = app.state.subscribers
    tokens = {_reader(subs, f"r{i}@example.org"): f"r{i}@example.org" for i in range(40)}
    burst = list(tokens)
    server = LiveServer(app).start()

    async def post_all(mine: list[str]) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.post(f"/unsubscribe/{t}", data={"List-Unsubscribe": "One-Click"})
                    for t in mine
                )
            )

    try:
        answers = asyncio.run(post_all(burst[:20]))
        with locked(quick_store):
            answers += asyncio.run(post_all(burst[20:]))
            assert subs.spool.pending()
        for _ in range(100):  # serve applies the spool by itself within a few seconds
            if not subs.spool.pending():
                break
            time.sleep(0.1)
    finally:
        server.stop()
    assert [a.status_code for a in answers] == [200] * 40
    assert all(tokens[t] in a.text for t, a in zip(burst, answers, strict=True))
    assert {s.status for s in rows(quick_store)} == {SubscriberStatus.UNSUBSCRIBED}


def test_unsubscribes_written_together_keep_each_ones_time_and_reason(
    settings: Settings, any_store: Store
) -> None:
    subs = Subscribers(settings, any_store)
    ann, bob = _reader(subs, "ann@example.org"), _reader(subs, "bob@example.org")
    cat = _reader(subs, "cat@example.org")
    subs.remove("cat@example.org")  # already unsubscribed
    uid = subs.tokens.read_unsubscribe
    early, late = datetime(2026, 3, 1, 9, 0, tzinfo=UTC), datetime(2026, 3, 1, 9, 5, tzinfo=UTC)
    results = subs.unsubscribe_many(
        [
            Unsubscribing(uid(ann), "one-click", early),
            Unsubscribing(uid(bob), "emailed request", late),
            Unsubscribing(uid(ann), "one-click", late),  # the same link again
            Unsubscribing(uid(cat), "one-click", late),
            Unsubscribing("no-such-reader", "one-click", late),
        ]
    )
    assert [(r.changed, r.email) for r in results] == [
        (True, "ann@example.org"),
        (True, "bob@example.org"),
        (True, "ann@example.org"),
        (False, "cat@example.org"),
        (False, None),
    ]
    found = {s.email: s for s in rows(any_store)}
    times = {email: s.unsubscribed_at for email, s in found.items()}
    assert times["ann@example.org"] and times["ann@example.org"].replace(tzinfo=UTC) == early
    assert times["bob@example.org"] and times["bob@example.org"].replace(tzinfo=UTC) == late
    assert found["bob@example.org"].status_reason == "emailed request"
    assert found["cat@example.org"].status_reason == "removed by the editor"


def test_a_writer_stuck_in_its_turn_gets_the_unsubscribe_spooled_not_hung(
    settings: Settings, quick_store: Store
) -> None:
    # another server worker stopped (SIGSTOP, a debugger) while holding the subscriber
    # list's turn: the one-click must not wait for it forever; it is spooled
    subs = Subscribers(settings, quick_store)
    token = _reader(subs, "ann@example.org")
    database = Path(quick_store.engine.url.database or "")
    holder = os.open(database.with_name(database.name + "-turn"), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        answers: list[UnsubscribeResult] = []
        asking = threading.Thread(
            target=lambda: answers.append(subs.unsubscribe(token)), daemon=True
        )
        asking.start()
        asking.join(timeout=10)  # the store gives up after 0.3 s
        assert not asking.is_alive(), "the unsubscribe waited for the stuck writer"
        [result] = answers
        assert result.spooled and result.changed and result.email == "ann@example.org"
    finally:
        os.close(holder)
    assert subs.apply_spooled() == 1
    [ann] = rows(quick_store)
    assert ann.status == SubscriberStatus.UNSUBSCRIBED


def test_a_write_that_must_not_wait_gives_way_at_once_and_writes_nothing(
    settings: Settings,
) -> None:
    # the event loop's attempt (newsletter.web.oneclick): another writer holds the lock, so
    # it returns at once, where SQLite's own busy handler would sleep up to 10 s
    with Store.open(settings.database_url, busy_timeout_ms=10_000) as store:
        subs = Subscribers(settings, store)
        token = _reader(subs, "ann@example.org")
        asked = [Unsubscribing(subs.tokens.read_unsubscribe(token), "one-click", subs.clock())]
        with locked(store):
            began = time.monotonic()
            assert subs.unsubscribe_many_now(asked) is None
            assert time.monotonic() - began < 0.5
        [ann] = rows(store)
        assert ann.status == SubscriberStatus.CONFIRMED and not subs.spool.pending()
        [result] = subs.unsubscribe_many_now(asked) or []
        assert result.changed and result.email == "ann@example.org"
        [ann] = rows(store)
        assert ann.status == SubscriberStatus.UNSUBSCRIBED


def test_one_clicks_waiting_for_a_writer_leave_the_server_answering(settings: Settings) -> None:
    """While an ingest holds the write lock for a second, one-click POSTs wait for it off the
    event loop: the archive answers meanwhile, and every unsubscribe lands in the database."""
    with Store.open(settings.database_url) as store:
        app = create_app(settings, store=store)
        subs: Subscribers = app.state.subscribers
        tokens = [_reader(subs, f"r{i}@example.org") for i in range(20)]
        server = LiveServer(app).start()

        async def during_the_lock() -> tuple[list[int], list[float]]:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                posts = [
                    asyncio.create_task(
                        client.post(f"/unsubscribe/{t}", data={"List-Unsubscribe": "One-Click"})
                    )
                    for t in tokens
                ]
                waits = []
                for _ in range(5):
                    await asyncio.sleep(0.1)
                    began = time.monotonic()
                    assert (await client.get("/")).status_code == 200
                    waits.append(time.monotonic() - began)
                return [(await p).status_code for p in posts], waits

        try:
            found: list[tuple[list[int], list[float]]] = []
            task = threading.Thread(target=lambda: found.append(asyncio.run(during_the_lock())))
            with locked(store):
                task.start()
                time.sleep(1.0)  # an ingest's chunk, a long one
            task.join(timeout=30)
        finally:
            server.stop()
    [(codes, waits)] = found
    assert codes == [200] * 20
    assert max(waits) < 0.5, f"the archive waited {max(waits):.2f} s behind the one-clicks"
    assert not subs.spool.pending()
    assert {s.status for s in rows(store)} == {SubscriberStatus.UNSUBSCRIBED}


def test_the_event_loops_batch_writes_what_the_thread_would(settings: Settings) -> None:
    """The one-click batch a server writes on its event loop (SQLite, straight through the
    driver) leaves each row exactly as the batch written through the session does: the
    same status, reason and stored times, the same answers, in the same order."""
    with Store.open(settings.database_url) as store:
        subs = Subscribers(settings, store)
        early = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
        late = datetime(
            2026, 3, 1, 11, 5, tzinfo=timezone(timedelta(hours=2))
        )  # a clock not in UTC
        answers: dict[str, list[UnsubscribeResult]] = {}
        for way in ("session", "loop"):
            ann, bob, cat = (_reader(subs, f"{n}-{way}@example.org") for n in ("ann", "bob", "cat"))
            subs.remove(f"cat-{way}@example.org")
            uid = subs.tokens.read_unsubscribe
            asked = [
                Unsubscribing(uid(ann), "one-click", early),
                Unsubscribing(uid(bob), "emailed request", late),
                Unsubscribing(uid(ann), "one-click", late),  # the same link again
                Unsubscribing(uid(cat), "one-click", late),  # already unsubscribed
                Unsubscribing("no-such-reader", "one-click", late),
            ]
            if way == "session":
                answers[way] = subs.unsubscribe_many(asked)
            else:
                answers[way] = subs.unsubscribe_many_now(asked) or []
        database = store.engine.url.database or ""
    kept = "status, unsubscribed_at, confirm_nonce, status_reason"
    with sqlite3.connect(database) as raw:  # the stored text itself, not what reading makes of it
        stored = {
            email: row
            for email, *row in raw.execute(f"SELECT email, {kept}, updated_at FROM subscribers")
        }
    for name in ("ann", "bob"):
        session_row = stored[f"{name}-session@example.org"]
        loop_row = stored[f"{name}-loop@example.org"]
        assert session_row == loop_row
        assert session_row[0] == "unsubscribed"
    assert stored["cat-loop@example.org"][3] == "removed by the editor"
    assert [
        (a.changed, a.status, (a.email or "").replace("session", "")) for a in answers["session"]
    ] == [(a.changed, a.status, (a.email or "").replace("loop", "")) for a in answers["loop"]]


def test_a_batch_that_fails_on_the_event_loop_leaves_nothing_written_and_the_lock_free(
    settings: Settings,
) -> None:
    with Store.open(settings.database_url, busy_timeout_ms=7_000) as store:
        subs = Subscribers(settings, store)
        tokens = [_reader(subs, f"r{i}@example.org") for i in range(3)]
        uid = subs.tokens.read_unsubscribe
        database = store.engine.url.database or ""
        with sqlite3.connect(database) as raw:  # a statement that fails halfway through the batch
            raw.execute(
                "CREATE TRIGGER refuse BEFORE UPDATE ON subscribers WHEN new.status_reason = 'x' "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        at = subs.clock()
        asked = [
            Unsubscribing(uid(tokens[0]), "one-click", at),
            Unsubscribing(uid(tokens[1]), "x", at),
        ]
        assert subs.unsubscribe_many_now(asked) is None
        assert {s.status for s in rows(store)} == {SubscriberStatus.CONFIRMED}
        # the transaction is gone, the lock free, and the connection waits as configured again
        [result] = subs.unsubscribe_many_now([asked[0]]) or []
        assert result.changed
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 7_000
