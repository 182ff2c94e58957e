"""Soft bounces: counted per reader; `inbound.soft_bounce_limit` in a row, one per issue, suppress."""

from __future__ import annotations

import pytest
from sqlmodel import col, select

from newsletter.core.models import Delivery, InboundOutcome, Subscriber
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.readers.bounces import Inbound
from newsletter.readers.tokens import Tokens
from tests.conftest import TEST_SECRET
from tests.inbound_support import REPORTS, sent_issue, verp
from tests.send_support import add_readers


@pytest.fixture
def inbound(store: Store, settings: Settings) -> Inbound:
    return Inbound(store, Tokens(TEST_SECRET), soft_bounce_limit=settings.inbound.soft_bounce_limit)


def delayed(delivery_id: int) -> bytes:
    """A "delayed" DSN for one delivery, sent back to its VERP address."""
    data = (REPORTS / "dsn-delayed.eml").read_bytes()
    return data.replace(b"bounces+{VERP2}@example.org", verp(delivery_id).encode())


def status(store: Store, address: str) -> tuple[str, str]:
    with store.read() as session:
        sub = session.exec(select(Subscriber).where(Subscriber.email == address)).one()
        return sub.status, sub.status_reason


def test_three_issues_in_a_row_suppress_the_address(store: Store, inbound: Inbound) -> None:
    (reader,) = add_readers(store, 1, start=2)
    ids = [sent_issue(store, f"2025-W{week}", [reader])[reader][0] for week in (24, 25, 26)]
    first = inbound.process(delayed(ids[0]), source="lmtp")
    again = inbound.process(delayed(ids[0]), source="lmtp")  # the same issue, retried later
    second = inbound.process(delayed(ids[1]), source="lmtp")
    assert [r.outcome for r in (first, again, second)] == [InboundOutcome.SOFT_BOUNCE] * 3
    assert second.detail == "soft bounce 2 of 3 in a row"
    assert status(store, reader)[0] == "confirmed"
    third = inbound.process(delayed(ids[2]), source="lmtp")
    assert third.outcome == InboundOutcome.BOUNCED
    assert status(store, reader) == ("bounced", "3 soft bounces in a row")


def test_an_issue_that_arrived_breaks_the_run(store: Store, inbound: Inbound) -> None:
    (reader,) = add_readers(store, 1, start=2)
    ids = [sent_issue(store, f"2025-W{week}", [reader])[reader][0] for week in (24, 25, 26, 27)]
    for delivery_id in (ids[0], ids[2], ids[3]):  # W25 came through
        inbound.process(delayed(delivery_id), source="lmtp")
    assert status(store, reader)[0] == "confirmed"
    with store.read() as session:
        marks = session.exec(select(Delivery.bounce).order_by(col(Delivery.id))).all()
    assert marks == ["soft", "", "soft", "soft"]


def test_the_limit_is_a_setting(store: Store) -> None:
    (reader,) = add_readers(store, 1, start=2)
    delivery_id = sent_issue(store, "2025-W24", [reader])[reader][0]
    inbound = Inbound(store, Tokens(TEST_SECRET), soft_bounce_limit=1)
    assert inbound.process(delayed(delivery_id), source="file").outcome == InboundOutcome.BOUNCED
