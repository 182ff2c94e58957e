"""An old list against a relay that misbehaves in several ways at once, on both backends.

A quarter of the addresses are dead (550 at RCPT), some are greylisted (451 the
first time), some lose the connection after DATA, every RCPT takes a while, and
nothing limits the rate: eight connections finish their messages close together,
so one ledger commit carries several hard bounces, deferrals and deliveries.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import select

from newsletter.core.config import load_settings
from newsletter.core.models import DeliveryStatus, Subscriber
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.send.claims import Claims, new_worker_id
from newsletter.send.ledger import Ledger, Outcome
from newsletter.send.service import SendOptions, SendReport, send_issue
from tests.send_support import ISSUE, add_issue_row, add_readers, write_issue
from tests.support.smtpd import RecordingSMTPServer

FAST = SendOptions(
    rate=0.0, concurrency=8, retry_base_seconds=0.05, reconnect_base_seconds=0.01, max_attempts=6
)


@pytest.fixture
def list_settings(project: Path, smtp_environ: dict[str, str], db_url: str) -> Settings:
    env = {**smtp_environ, "SLICE_DATABASE_URL": db_url}
    return load_settings(config=project / "slice.toml", environ=env)


@pytest.fixture
def list_store(list_settings: Settings) -> Iterator[Store]:
    with Store.open(list_settings.database_url) as store:
        yield store


def send(settings: Settings, store: Store, seed: int) -> SendReport:
    return asyncio.run(send_issue(settings, store, ISSUE, options=FAST, rng=random.Random(seed)))


def statuses(store: Store) -> dict[str, str]:
    with store.read() as session:
        return {s.email: s.status for s in session.exec(select(Subscriber)).all()}


def test_two_hard_bounces_in_one_commit_are_both_recorded(list_store: Store) -> None:
    """The ledger write takes any mix of outcomes, several suppressions included."""
    add_readers(list_store, 4)
    add_issue_row(list_store)
    ledger = Ledger(list_store, ISSUE)
    now = datetime(2025, 6, 16, 8, tzinfo=UTC)
    ledger.start(now)
    claims = Claims(list_store, ISSUE, worker_id=new_worker_id(), lease_seconds=60)
    claimed, _ = claims.claim(100, now=now)
    a, b, c, d = claimed
    bounce = {"status": DeliveryStatus.FAILED, "code": 550, "error": "no user", "suppress": True}
    claims.record(
        [
            Outcome(a.delivery_id, a.subscriber_id, **bounce),  # type: ignore[arg-type]
            Outcome(b.delivery_id, b.subscriber_id, DeliveryStatus.SENT, 250),
            Outcome(c.delivery_id, c.subscriber_id, **bounce),  # type: ignore[arg-type]
            Outcome(d.delivery_id, d.subscriber_id, DeliveryStatus.DEFERRED, 451, "later", now),
        ],
        now=now,
    )
    counts = ledger.counts()
    assert (counts["failed"], counts["sent"], counts["deferred"], counts["sending"]) == (2, 1, 1, 0)
    bounced = {e for e, s in statuses(list_store).items() if s == "bounced"}
    assert bounced == {a.reader.email, c.reader.email}


def test_an_old_list_through_a_misbehaving_relay_reaches_every_live_reader_once(
    list_settings: Settings, list_store: Store, smtp_server: RecordingSMTPServer
) -> None:
    write_issue(list_settings, list_store, papers=2)
    emails = add_readers(list_store, 400)
    rng = random.Random(7)
    shuffled = emails[:]
    rng.shuffle(shuffled)
    dead = set(shuffled[:100])  # a quarter of the list
    grey = set(shuffled[100:130])
    dropped = set(shuffled[130:145])
    for address in dead:
        smtp_server.rcpt_replies[address] = f"550 5.1.1 <{address}>: no such user"
    smtp_server.greylist = set(grey)
    smtp_server.drop_after_data = set(dropped)
    smtp_server.rcpt_delay = 0.02

    report = send(list_settings, list_store, seed=1)

    assert report.finished, report.counts
    live = set(emails) - dead
    got = Counter(m.rcpt_tos[0] for m in smtp_server.messages)
    assert set(got) == live
    assert max(got.values()) == 1, [a for a, n in got.items() if n > 1]
    assert report.counts["sent"] == len(live) and report.counts["failed"] == len(dead)
    assert report.counts["sending"] == report.counts["pending"] == 0
    assert {e for e, s in statuses(list_store).items() if s == "bounced"} == dead
    assert report.tally.suppressed == len(dead)

    # a second run mails nobody
    before = len(smtp_server.messages)
    again = send(list_settings, list_store, seed=2)
    assert again.already_sent and len(smtp_server.messages) == before
