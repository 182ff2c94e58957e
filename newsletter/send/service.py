"""Sending an issue: `send_issue`, `dry_run`, `send_proof` and `issue_status`.

Each takes the settings and the store (and, for the network, an SMTP factory
and a clock), so tests run them against a real local SMTP server with a fake
clock. See `newsletter.send.run` for how a send proceeds and
`newsletter.send.ledger` for what is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import make_msgid
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import func, select

from newsletter.core.clock import Clock, SystemClock
from newsletter.core.errors import SendError, StoreError
from newsletter.core.models import Issue, IssueStatus, Subscriber, SubscriberStatus, table
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.issue.linkcheck import is_local_host as private_host
from newsletter.issue.linkcheck import local_links
from newsletter.issue.outbox import IssueFolder
from newsletter.readers.addresses import parse_address
from newsletter.readers.subscribers import Subscribers
from newsletter.send.claims import Claims, LiveWorker, live_workers, new_worker_id
from newsletter.send.deliver import RelayConnection, SmtpFactory
from newsletter.send.ledger import Ledger
from newsletter.send.message import IssueMessage, Reader
from newsletter.send.pacing import SharedPace
from newsletter.send.run import NoEvents, RunTally, Sender, SendEvents, SendOptions
from newsletter.send.setup import is_local_host, issue_message
from newsletter.send.smtp import smtp_client

log = logging.getLogger(__name__)
SPOOL_APPLY_SECONDS = 2.0  # how often a send looks for unsubscribes spooled by `slice serve`

__all__ = [
    "DryRunReport",
    "IssueStatusReport",
    "SendEvents",
    "SendOptions",
    "SendReport",
    "dry_run",
    "issue_status",
    "send_issue",
    "send_proof",
]

S = table(Subscriber)


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


def _load(settings: Settings, issue_id: str) -> tuple[IssueFolder, IssueMessage, bool]:
    folder = IssueFolder.of(settings.outbox_dir, issue_id)
    message = issue_message(settings, folder)
    return folder, message, message.signer is not None


def _confirmed(store: Store) -> int:
    with store.read() as session:
        query = select(func.count()).select_from(S).where(S.c.status == SubscriberStatus.CONFIRMED)
        return int(session.connection().execute(query).scalar_one())


def _no_readers() -> SendError:
    return SendError(
        "No confirmed subscribers: run `slice subscribers list --status pending` to see who has "
        "not confirmed, or `slice subscribers add ADDRESS` to add a reader."
    )


@contextlib.contextmanager
def _send_lock(folder: IssueFolder) -> Iterator[None]:
    """One `slice send` per issue at a time (released by the OS if the process dies)."""
    path = folder.root / ".send.lock"
    try:
        handle = path.open("a+")
    except OSError as exc:
        raise _outbox_error(folder.root, exc, "send") from exc
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "?"
            raise SendError(
                f"another `slice send {folder.issue_id}` is running (process {pid}); "
                "wait for it to finish or stop it first."
            ) from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
        except OSError as exc:
            raise _outbox_error(folder.root, exc, "send") from exc
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _relay_name(settings: Settings) -> str:
    return f"{settings.smtp.host}:{settings.smtp.port}"


def check_public_links(settings: Settings, links: Sequence[str] = ()) -> None:
    """Refuse to mail real readers links that point at this machine or a private network,
    or that are not https.

    With the relay on this machine (``slice dev-smtp``, the demo) a local
    ``web.base_url`` is fine; through a real relay every unsubscribe link would
    lead nowhere, which breaks the one-click promise and bulk-mail law. ``links``
    are those of the message as it would be sent (`IssueMessage.links`): a link
    an editor pasted into issue.json is checked too.
    """
    base = urlsplit(settings.web.base_url)
    link_host = base.hostname or ""
    if base.scheme != "https" and not is_local_host(link_host):
        raise SendError(
            f"web.base_url is {settings.web.base_url}: the one-click unsubscribe link "
            "must be https (RFC 8058), and receivers drop unsubscribe links that are not; "
            "serve `slice serve` behind https and set SLICE_BASE_URL=https://..."
        )
    if is_local_host(settings.smtp.host):
        return  # this machine's relay: a developer's setup, local links are fine
    if private_host(link_host):
        raise SendError(
            f"web.base_url is {settings.web.base_url}, so the unsubscribe and browser links "
            f"would not reach readers (they need a public https:// address); set SLICE_BASE_URL "
            f"to the public URL of `slice serve` before sending through {_relay_name(settings)}."
        )
    bad = local_links(list(links))
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise SendError(
            f"the issue links to {bad[0]}{more}, a loopback or private address readers cannot "
            "reach; fix the link in issue.json and run `slice compose` again."
        )


def is_postgres(store: Store) -> bool:
    return store.engine.dialect.name == "postgresql"


@contextlib.contextmanager
def _one_writer(store: Store, folder: IssueFolder) -> Iterator[None]:
    """On SQLite one `slice send` per issue; PostgreSQL takes any number of workers."""
    if is_postgres(store):
        yield
    else:
        with _send_lock(folder):
            yield


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
    if issue.status == IssueStatus.COMPOSED and _confirmed(store) == 0:
        raise _no_readers()
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
    folder, _message, signed = _load(settings, issue_id)
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
    folder, message, signed = _load(settings, issue_id)
    check_public_links(settings, message.links)
    ledger = Ledger(store, issue_id)
    with _one_writer(store, folder):
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
            where=_relay_name(settings),
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


def _outbox_error(where: Path, exc: OSError, what: str) -> SendError:
    """A full or read-only outbox, in one line: where, why, and what to do."""
    return SendError(
        f"cannot write the outbox ({where}: {exc.strerror or exc}); free some space or make "
        f"it writable, then run the {what} again."
    )


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
    folder, message, signed = _load(settings, issue_id)
    out = folder.dry_run
    try:
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("*.eml"):
            old.unlink()
    except OSError as exc:
        raise _outbox_error(out, exc, "dry run") from exc
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
                raise _outbox_error(out, exc, "dry run") from exc
            if on_message is not None:
                on_message(path)
        after = rows[-1].id
    if not written:
        raise _no_readers()
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
        smtp_factory or (lambda: smtp_client(settings)), where=_relay_name(settings)
    )
    try:
        answer = await connection.send(message.envelope_from, to.addr_spec, data)
    finally:
        await connection.close()
    if answer.kind != "sent":
        raise SendError(
            f"the relay at {_relay_name(settings)} did not take the proof for {to.addr_spec}: "
            f"{answer.describe()}"
        )
    return answer.describe()


def issue_status(
    settings: Settings, store: Store, issue_id: str, *, clock: Clock | None = None
) -> IssueStatusReport:
    """The ledger counts of an issue, and its latest failures."""
    IssueFolder.of(settings.outbox_dir, issue_id)  # checks the id's form
    ledger = Ledger(store, issue_id)
    now = (clock or SystemClock()).now()
    return IssueStatusReport(
        issue=ledger.issue(),
        counts=ledger.counts(),
        failures=ledger.failures(),
        confirmed=_confirmed(store),
        workers=live_workers(store, issue_id, now=now, lease_seconds=settings.send.lease_seconds),
        now=now,
    )
