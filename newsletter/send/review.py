"""Looking before sending: `dry_run`, `send_proof` and `issue_status`.

None of them changes the ledger: a dry run writes each reader's message to
the outbox, a proof sends one copy to one address, and the status reads the
ledger's counts, its latest failures and the workers sending now.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import make_msgid
from pathlib import Path

from sqlalchemy import select

from newsletter.core.clock import Clock, SystemClock
from newsletter.core.errors import SendError
from newsletter.core.models import Issue, Subscriber, SubscriberStatus, table
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.issue.outbox import IssueFolder
from newsletter.readers.addresses import parse_address
from newsletter.send.claims import LiveWorker, live_workers
from newsletter.send.deliver import RelayConnection, SmtpFactory
from newsletter.send.ledger import Ledger
from newsletter.send.message import Reader
from newsletter.send.preflight import (
    confirmed_count,
    load_issue,
    no_readers,
    outbox_error,
    relay_name,
)
from newsletter.send.setup import issue_message
from newsletter.send.smtp import smtp_client

S = table(Subscriber)


@dataclass(frozen=True)
class DryRunReport:
    folder: Path
    written: int
    signed: bool


@dataclass(frozen=True)
class IssueStatusReport:
    issue: Issue | None
    counts: dict[str, int]
    failures: list[tuple[str, str, int | None, str]]
    confirmed: int
    workers: list[LiveWorker] = field(default_factory=list)
    now: datetime | None = None


def _safe_name(address: str) -> str:
    return re.sub(r"[^A-Za-z0-9@._-]", "_", address)[:80]


def dry_run(
    settings: Settings,
    store: Store,
    issue_id: str,
    *,
    clock: Clock | None = None,
    on_message: Callable[[Path], None] | None = None,
    batch_size: int = 500,
) -> DryRunReport:
    """Write each confirmed reader's message to outbox/<issue>/dry-run/ (the ledger is untouched)."""
    clock = clock or SystemClock()
    folder, message, signed = load_issue(settings, issue_id)
    out = folder.dry_run
    try:
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("*.eml"):
            old.unlink()
    except OSError as exc:
        raise outbox_error(out, exc, "dry run") from exc
    written, after = 0, 0
    query = (
        select(S.c.id, S.c.uid, S.c.email, S.c.name)
        .where(S.c.status == SubscriberStatus.CONFIRMED)
        .order_by(S.c.id)
        .limit(batch_size)
    )
    while True:
        with store.read() as session:
            rows = session.connection().execute(query.where(S.c.id > after)).all()
        if not rows:
            break
        for row in rows:
            written += 1
            path = out / f"{written:06d}-{_safe_name(row.email)}.eml"
            data = message.render(Reader(row.uid, row.email, row.name), now=clock.now())
            try:
                path.write_bytes(data)
            except OSError as exc:
                # no empty, cut-off or partial set of messages is left behind
                for made in out.glob("*.eml"):
                    with contextlib.suppress(OSError):
                        made.unlink()
                raise outbox_error(out, exc, "dry run") from exc
            if on_message is not None:
                on_message(path)
        after = rows[-1].id
    if not written:
        raise no_readers()
    return DryRunReport(folder=out, written=written, signed=signed)


async def send_proof(
    settings: Settings,
    issue_id: str,
    address: str,
    *,
    smtp_factory: SmtpFactory | None = None,
    clock: Clock | None = None,
) -> str:
    """Send one proof copy to ``address``; the ledger is untouched. Returns the relay's answer."""
    clock = clock or SystemClock()
    to = parse_address(address, "--to address")
    message = issue_message(settings, IssueFolder.of(settings.outbox_dir, issue_id), proof=True)
    reader = Reader(uid="proof", email=to.addr_spec, name=to.display_name)
    data = message.render(reader, now=clock.now(), message_id=make_msgid(domain=message.domain))
    connection = RelayConnection(
        smtp_factory or (lambda: smtp_client(settings)), where=relay_name(settings)
    )
    try:
        answer = await connection.send(message.envelope_from, to.addr_spec, data)
    finally:
        await connection.close()
    if answer.kind != "sent":
        raise SendError(
            f"the relay at {relay_name(settings)} did not take the proof for {to.addr_spec}: "
            f"{answer.describe()}"
        )
    return answer.describe()


def latest_issue_id(store: Store) -> str:
    """The issue `slice send --status` shows when none is named: the last one sending or sent."""
    issues = table(Issue)
    with store.read() as session:
        latest: str | None = session.scalars(
            select(issues.c.id)
            .where(issues.c.send_started_at.is_not(None))
            .order_by(issues.c.send_started_at.desc())
            .limit(1)
        ).first()
    if latest is None:
        raise SendError("No issue has been sent yet: `slice issues` lists the composed ones.")
    return latest


def issue_status(
    settings: Settings, store: Store, issue_id: str, *, clock: Clock | None = None
) -> IssueStatusReport:
    """The ledger counts of an issue, and its latest failures."""
    folder = IssueFolder.of(settings.outbox_dir, issue_id)  # checks the id's form
    ledger = Ledger(store, issue_id)
    issue = ledger.issue()
    if issue is None:  # neither composed here nor recorded: say so, not "not sent yet"
        folder.require_rendered()
    now = (clock or SystemClock()).now()
    return IssueStatusReport(
        issue=issue,
        counts=ledger.counts(),
        failures=ledger.failures(),
        confirmed=confirmed_count(store),
        workers=live_workers(store, issue_id, now=now, lease_seconds=settings.send.lease_seconds),
        now=now,
    )
