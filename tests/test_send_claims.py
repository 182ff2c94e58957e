"""A worker's claims, on both backends: which rows a claim takes, and that none is left behind."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from newsletter.core.models import DeliveryStatus
from newsletter.core.store import Store
from newsletter.issue.outbox import RenderedIssue
from newsletter.send.claims import Claims, new_worker_id
from newsletter.send.ledger import Ledger, Outcome, Row
from tests.send_support import ISSUE, add_issue_row, add_readers

NOW = datetime(2025, 6, 16, 8, tzinfo=UTC)


@pytest.fixture
def ledger(db_url: str) -> Iterator[Ledger]:
    with Store.open(db_url) as store:
        add_readers(store, 6)
        add_issue_row(store)
        ledger = Ledger(store, ISSUE)
        ledger.start(NOW)
        yield ledger


def _claims(ledger: Ledger) -> Claims:
    return Claims(ledger.store, ISSUE, worker_id=new_worker_id(), lease_seconds=60)


def _emails(rows: list[Row]) -> list[str]:
    return [r.reader.email for r in rows]


def test_rows_handed_back_behind_the_last_claim_are_claimed_again(ledger: Ledger) -> None:
    """A claim starts past the worker's last one, yet rows handed back untried still go."""
    claims = _claims(ledger)
    first, _ = claims.claim(3, now=NOW)
    a, b, c = first
    back = DeliveryStatus.PENDING
    claims.record(
        [
            Outcome(a.delivery_id, a.subscriber_id, DeliveryStatus.SENT, 250),
            Outcome(b.delivery_id, b.subscriber_id, back, None, "the send stopped"),
            Outcome(c.delivery_id, c.subscriber_id, back, None, "the send stopped"),
        ],
        now=NOW,
    )
    rest, _ = claims.claim(100, now=NOW)
    assert len(rest) == 5
    assert set(_emails(rest)) >= {b.reader.email, c.reader.email}
    assert a.reader.email not in _emails(rest)
    assert claims.claim(100, now=NOW) == ([], [])
    assert ledger.counts()["sending"] == 5


def test_a_due_retry_is_claimed_before_pending_rows(ledger: Ledger) -> None:
    claims = _claims(ledger)
    (a, b), _ = claims.claim(2, now=NOW)
    later = NOW + timedelta(minutes=1)
    claims.record(
        [
            Outcome(a.delivery_id, a.subscriber_id, DeliveryStatus.SENT, 250),
            Outcome(b.delivery_id, b.subscriber_id, DeliveryStatus.DEFERRED, 451, "later", later),
        ],
        now=NOW,
    )
    (early,), _ = claims.claim(1, now=NOW)
    assert early.reader.email != b.reader.email  # not due yet: a pending row goes
    (retry, *_), _ = claims.claim(4, now=later)
    assert retry.reader.email == b.reader.email
    assert retry.attempts == 1


def test_a_row_whose_lease_ran_out_is_claimed_by_another_worker(ledger: Ledger) -> None:
    dead, alive = _claims(ledger), _claims(ledger)
    held, _ = dead.claim(6, now=NOW)
    assert alive.claim(6, now=NOW + timedelta(seconds=30)) == ([], [])
    taken, _ = alive.claim(6, now=NOW + timedelta(seconds=61))
    assert sorted(_emails(taken)) == sorted(_emails(held))


def test_workers_starting_at_the_same_instant_freeze_one_audience(db_url: str) -> None:
    """Four workers make the issue row and the snapshot at once: one does, none fails."""
    with Store.open(db_url) as store:
        add_readers(store, 40)
        rendered = RenderedIssue(
            issue_id=ISSUE,
            number=1,
            subject="The week",
            preheader="",
            date="2025-06-16",
            window_start="2025-06-09",
            window_end="2025-06-15",
            web_url="http://127.0.0.1:8000/issues/" + ISSUE,
            paper_count=1,
            rendered_at="2025-06-16T08:00:00+00:00",
        )
        gate = threading.Barrier(4)

        def start() -> int:
            ledger = Ledger(store, ISSUE)
            gate.wait(10)
            ledger.ensure_issue(rendered)
            gate.wait(10)
            return ledger.start(NOW).created

        with ThreadPoolExecutor(4) as pool:
            created = sorted(pool.map(lambda _: start(), range(4)))  # raises what any raised
        assert created == [0, 0, 0, 40]
        counts = Ledger(store, ISSUE).counts()
        assert counts["pending"] == 40 and sum(counts.values()) == 40
