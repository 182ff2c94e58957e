"""What every send checks first: the issue's files, its links, its readers, one writer per issue.

Shared by `newsletter.send.service` (the send) and `newsletter.send.review`
(dry run, proof, status): the issue loaded and encoded, the links readers
would follow checked, the confirmed readers counted, the outbox's own errors
in one line, and on SQLite the lock that keeps a second `slice send` of the
same issue out.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import func, select

from newsletter.core.errors import SendError
from newsletter.core.models import Subscriber, SubscriberStatus, table
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.issue.linkcheck import is_local_host as private_host
from newsletter.issue.linkcheck import local_links
from newsletter.issue.outbox import IssueFolder
from newsletter.send.message import IssueMessage
from newsletter.send.setup import is_local_host, issue_message

S = table(Subscriber)


def load_issue(settings: Settings, issue_id: str) -> tuple[IssueFolder, IssueMessage, bool]:
    """The issue's folder, its message encoded once, and whether it is DKIM-signed."""
    folder = IssueFolder.of(settings.outbox_dir, issue_id)
    message = issue_message(settings, folder)
    return folder, message, message.signer is not None


def confirmed_count(store: Store) -> int:
    with store.read() as session:
        query = select(func.count()).select_from(S).where(S.c.status == SubscriberStatus.CONFIRMED)
        return int(session.connection().execute(query).scalar_one())


def no_readers() -> SendError:
    return SendError(
        "No confirmed subscribers: run `slice subscribers list --status pending` to see who has "
        "not confirmed, or `slice subscribers add ADDRESS --confirmed` to add a reader whose "
        "consent you hold (without --confirmed they are sent a confirmation email first)."
    )


def outbox_error(where: Path, exc: OSError, what: str) -> SendError:
    """A full or read-only outbox, in one line: where, why, and what to do."""
    return SendError(
        f"cannot write the outbox ({where}: {exc.strerror or exc}); free some space or make "
        f"it writable, then run the {what} again."
    )


def relay_name(settings: Settings) -> str:
    return f"{settings.smtp.host}:{settings.smtp.port}"


def is_postgres(store: Store) -> bool:
    return store.engine.dialect.name == "postgresql"


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
            f"to the public URL of `slice serve` before sending through {relay_name(settings)}."
        )
    bad = local_links(list(links))
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise SendError(
            f"the issue links to {bad[0]}{more}, a loopback or private address readers cannot "
            "reach; fix the link in issue.json and run `slice compose` again."
        )


@contextlib.contextmanager
def _send_lock(folder: IssueFolder) -> Iterator[None]:
    """One `slice send` per issue at a time (released by the OS if the process dies)."""
    path = folder.root / ".send.lock"
    try:
        handle = path.open("a+")
    except OSError as exc:
        raise outbox_error(folder.root, exc, "send") from exc
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
            raise outbox_error(folder.root, exc, "send") from exc
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def one_writer(store: Store, folder: IssueFolder) -> Iterator[None]:
    """On SQLite one `slice send` per issue; PostgreSQL takes any number of workers."""
    if is_postgres(store):
        yield
    else:
        with _send_lock(folder):
            yield
