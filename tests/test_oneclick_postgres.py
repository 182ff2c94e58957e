"""The one-click batch a `slice serve` worker writes from its event loop on PostgreSQL
(`PostgresBatches`): the rows and answers the session's batch would give, and nothing
written, and the batch left to the thread, whenever the loop cannot write it at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, text

from newsletter.core.models import SubscriberStatus
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.readers.leaving import PostgresBatches, Unsubscribing
from newsletter.readers.outcomes import UnsubscribeResult
from newsletter.readers.subscribers import ConsentSource, Subscribers
from tests.signup_support import rows


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    with Store.open(pg_url) as opened:
        yield opened


def _uid(subs: Subscribers, email: str) -> str:
    subs.add(email, source=ConsentSource.CLI_HELD)
    found = subs.get(email)
    assert found is not None
    return found.uid


async def _on_the_loop(
    batches: PostgresBatches, asked: list[Unsubscribing]
) -> list[UnsubscribeResult] | None:
    try:
        return await batches.write(asked)
    finally:
        await batches.close()


def test_the_loops_batch_on_postgres_writes_what_the_thread_would(
    settings: Settings, pg_store: Store
) -> None:
    subs = Subscribers(settings, pg_store)
    early = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    late = datetime(2026, 3, 1, 11, 5, tzinfo=timezone(timedelta(hours=2)))
    answers: dict[str, list[UnsubscribeResult]] = {}
    batches = PostgresBatches(pg_store)
    for way in ("session", "loop"):
        ann, bob, cat = (_uid(subs, f"{n}-{way}@example.org") for n in ("ann", "bob", "cat"))
        subs.remove(f"cat-{way}@example.org")
        asked = [
            Unsubscribing(ann, "one-click", early),
            Unsubscribing(bob, "emailed request", late),
            Unsubscribing(ann, "one-click", late),  # the same link again
            Unsubscribing(cat, "one-click", late),  # already unsubscribed
            Unsubscribing("no-such-reader", "one-click", late),
        ]
        if way == "session":
            answers[way] = subs.unsubscribe_many(asked)
        else:
            written = asyncio.run(_on_the_loop(batches, asked))
            assert written is not None, "the loop's batch was not written"
            answers[way] = written
    found = {s.email: s for s in rows(pg_store)}
    for name in ("ann", "bob"):
        by_session, by_loop = (
            found[f"{name}-session@example.org"],
            found[f"{name}-loop@example.org"],
        )
        kept = ("status", "unsubscribed_at", "confirm_nonce", "status_reason")
        assert [getattr(by_session, k) for k in kept] == [getattr(by_loop, k) for k in kept]
    assert found["cat-loop@example.org"].status_reason == "removed by the editor"
    assert found["bob-loop@example.org"].unsubscribed_at == late
    assert found["bob-loop@example.org"].status == SubscriberStatus.UNSUBSCRIBED
    assert [
        (a.changed, a.status, (a.email or "").replace("-session", "")) for a in answers["session"]
    ] == [(a.changed, a.status, (a.email or "").replace("-loop", "")) for a in answers["loop"]]


def test_rows_another_transaction_holds_leave_the_batch_to_the_thread_with_nothing_written(
    settings: Settings, pg_store: Store
) -> None:
    subs = Subscribers(settings, pg_store)
    ann, bob = _uid(subs, "ann@example.org"), _uid(subs, "bob@example.org")
    asked = [
        Unsubscribing(ann, "one-click", subs.clock()),
        Unsubscribing(bob, "one-click", subs.clock()),
    ]
    batches = PostgresBatches(pg_store)

    async def while_bob_is_held() -> tuple[list[UnsubscribeResult] | None, float]:
        began = time.monotonic()
        try:
            return await batches.write(asked), time.monotonic() - began
        finally:
            await batches.close()

    with pg_store.engine.connect() as editor:  # an editor's remove, in the middle of its work
        editor.execute(text("SELECT 1 FROM subscribers WHERE uid = :uid FOR UPDATE"), {"uid": bob})
        result, took = asyncio.run(while_bob_is_held())
        editor.rollback()
    assert result is None and took < 2
    assert {s.status for s in rows(pg_store)} == {SubscriberStatus.CONFIRMED}  # ann's undone too
    # the thread's way, once the rows are free, writes them both
    assert [r.changed for r in subs.unsubscribe_many(asked)] == [True, True]


def test_no_server_leaves_the_batch_to_the_thread_and_rests_a_moment(pg_store: Store) -> None:
    # the same store's schema, but a server that is not there (a closed port)
    engine = create_engine("postgresql+psycopg://postgres@127.0.0.1:9/nowhere")
    batches = PostgresBatches(Store(engine, migrate_now=False))
    asked = [Unsubscribing("some-uid", "one-click", datetime.now(UTC))]

    async def twice() -> tuple[
        list[UnsubscribeResult] | None, list[UnsubscribeResult] | None, float
    ]:
        first = await batches.write(asked)
        began = time.monotonic()
        second = await batches.write(asked)  # resting: not even a connection attempt
        return first, second, time.monotonic() - began

    first, second, took = asyncio.run(twice())
    engine.dispose()
    assert first is None and second is None and took < 0.05
