"""Sending an issue: `send_issue`, and `prepare_workers` / `finish_workers` around several.

Each takes the settings and the store (and, for the network, an SMTP factory
and a clock), so tests run them against a real local SMTP server with a fake
clock. See `newsletter.send.run` for how a send proceeds,
`newsletter.send.ledger` for what is recorded, and `newsletter.send.review`
for the dry run, the proof and the status.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime

from newsletter.core.clock import Clock, SystemClock
from newsletter.core.errors import SendError, StoreError
from newsletter.core.models import IssueStatus
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.issue.compose import prepare_editor_model
from newsletter.issue.outbox import IssueFolder
from newsletter.readers.subscribers import Subscribers
from newsletter.send.claims import Claims, new_worker_id
from newsletter.send.deliver import SmtpFactory
from newsletter.send.ledger import Ledger
from newsletter.send.pacing import SharedPace
from newsletter.send.preflight import (
    check_public_links,
    confirmed_count,
    is_postgres,
    load_issue,
    no_readers,
    one_writer,
    relay_name,
)
from newsletter.send.run import NoEvents, RunTally, Sender, SendEvents, SendOptions
from newsletter.send.smtp import smtp_client

log = logging.getLogger(__name__)
SPOOL_APPLY_SECONDS = 2.0  # how often a send looks for unsubscribes spooled by `slice serve`

__all__ = [
    "SendEvents",
    "SendOptions",
    "SendReport",
    "send_issue",
]


@dataclass
class SendReport:
    """What `send_issue` did."""

    issue_id: str
    already_sent: bool = False
    sent_at: datetime | None = None
    created: int = 0  # audience frozen by this run (0 when resuming)
    resumed_in_flight: int = 0
    retried: int = 0
    tally: RunTally = field(default_factory=RunTally)
    counts: dict[str, int] = field(default_factory=dict)
    finished: bool = False
    signed: bool = False
    elapsed: float = 0.0

    @property
    def audience(self) -> int:
        return sum(self.counts.values())


def prepare_send(
    settings: Settings,
    store: Store,
    folder: IssueFolder,
    issue_id: str,
    *,
    clock: Clock,
    retry_failed: bool,
) -> SendReport:
    """Freeze the audience (or resume); ``already_sent`` when there is nothing to send."""
    ledger = Ledger(store, issue_id)
    report = SendReport(issue_id=issue_id)
    issue = ledger.ensure_issue(folder.read_rendered())
    if retry_failed:
        report.retried = ledger.retry_failed(clock.now())
    if issue.status == IssueStatus.SENT and not report.retried:
        report.already_sent = True
        report.sent_at = issue.sent_at
        report.counts = ledger.counts()
        return report
    if issue.status == IssueStatus.COMPOSED and confirmed_count(store) == 0:
        raise no_readers()
    # unsubscribes `slice serve` spooled while the database was busy count before the snapshot
    Subscribers(settings, store).apply_spooled()
    report.created = ledger.start(clock.now()).created
    return report


def prepare_workers(
    settings: Settings, store: Store, issue_id: str, *, workers: int, retry_failed: bool
) -> SendReport:
    """Before `workers` processes send one issue: checks, and the audience frozen once."""
    if workers > 1 and not is_postgres(store):
        raise SendError(
            f"--workers {workers} needs PostgreSQL: SQLite lets one process write at a time; "
            "set database.url to a postgresql:// URL, or send with one worker."
        )
    check_public_links(settings)
    folder, _message, signed = load_issue(settings, issue_id)
    report = prepare_send(
        settings, store, folder, issue_id, clock=SystemClock(), retry_failed=retry_failed
    )
    report.signed = signed
    return report


def finish_workers(store: Store, issue_id: str) -> SendReport:
    """After the workers: the issue marked sent when nothing is left, and the ledger's counts."""
    ledger = Ledger(store, issue_id)
    report = SendReport(issue_id=issue_id)
    report.finished = ledger.finish_if_done(SystemClock().now())
    report.counts = ledger.counts()
    return report


def ledger_counts(store: Store, issue_id: str) -> dict[str, int]:
    return Ledger(store, issue_id).counts()


async def send_issue(
    settings: Settings,
    store: Store,
    issue_id: str,
    *,
    options: SendOptions | None = None,
    retry_failed: bool = False,
    smtp_factory: SmtpFactory | None = None,
    clock: Clock | None = None,
    events: SendEvents | None = None,
    rng: random.Random | None = None,
    prepared: bool = False,
) -> SendReport:
    """Send an issue to its frozen audience, resuming a stopped send. Safe to run again.

    On PostgreSQL any number of these may run at once, on one machine or several:
    they share the ledger, the rate and the caps. ``prepared``: the audience is
    already frozen (a worker started by ``slice send --workers N``).
    """
    started = time.monotonic()
    check_public_links(settings)
    clock = clock or SystemClock()
    options = options or SendOptions.from_settings(settings)
    folder, message, signed = load_issue(settings, issue_id)
    check_public_links(settings, message.links)
    ledger = Ledger(store, issue_id)
    with one_writer(store, folder):
        report = SendReport(issue_id=issue_id)
        if not prepared:
            report = prepare_send(
                settings, store, folder, issue_id, clock=clock, retry_failed=retry_failed
            )
        report.signed = signed
        if report.already_sent:
            return report
        claims = Claims(
            store, issue_id, worker_id=new_worker_id(), lease_seconds=options.lease_seconds
        )
        # rows a stopped run left 'sending' may or may not have reached the relay: they go
        # again, with the same Message-ID (on SQLite no other worker can hold any)
        report.resumed_in_flight = claims.release_dead(clock.now(), everyone=not is_postgres(store))
        counts = ledger.counts()
        (events or NoEvents()).begin(
            total=sum(counts.values()),
            done=sum(v for k, v in counts.items() if k in ("sent", "failed", "skipped")),
        )
        shared = is_postgres(store) and (
            options.rate > 0 or options.hourly_cap or options.daily_cap
        )
        sender = Sender(
            ledger=ledger,
            claims=claims,
            message=message,
            smtp_factory=smtp_factory or (lambda: smtp_client(settings)),
            where=relay_name(settings),
            options=options,
            clock=clock,
            events=events,
            rng=rng,
            pace=SharedPace(
                store,
                rate=options.rate,
                hourly_cap=options.hourly_cap,
                daily_cap=options.daily_cap,
                block_seconds=0.05,
            )
            if shared
            else None,
        )
        upkeep = asyncio.create_task(_apply_spool_while_sending(settings, store))
        try:
            report.tally = await sender.run()
        finally:
            upkeep.cancel()
            await asyncio.gather(upkeep, return_exceptions=True)
            report.tally = sender.tally
            report.elapsed = time.monotonic() - started
        report.finished = ledger.finish_if_done(clock.now())
        report.counts = ledger.counts()
    if report.finished:
        prepare_editor_model(settings, store)  # next week's compose finds it trained
    return report


async def _apply_spool_while_sending(settings: Settings, store: Store) -> None:
    """Unsubscribes `slice serve` spooled during the send reach the ledger before their turn."""
    subscribers = Subscribers(settings, store)
    while True:
        await asyncio.sleep(SPOOL_APPLY_SECONDS)
        if subscribers.spool.pending():
            try:
                await asyncio.to_thread(subscribers.apply_spooled)
            except StoreError as exc:  # the next round tries again; the send goes on
                log.warning("spooled unsubscribes not applied yet: %s", exc)
