"""`slice inbound --imap`: drain a hosted mailbox that collects the list's bounces.

For a list whose bounce address is a mailbox at a mail host (no MTA of its
own to run `slice inbound` behind), each message in the folder is fetched,
processed like one that arrived over LMTP, and deleted only once its outcome is
committed: a message is never lost, and one processed twice changes nothing
the second time (every action is idempotent). Uses the standard library's
imaplib; the password comes from SLICE_IMAP_PASSWORD only.
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from newsletter.core.errors import ConfigError, SendError
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.readers.bounces import Inbound, Result
from newsletter.send.inbound import inbound_processor
from newsletter.send.setup import is_local_host

_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


@dataclass
class DrainReport:
    """What one pass over the mailbox did."""

    results: list[Result] = field(default_factory=list)
    too_large: int = 0  # left in the mailbox, over inbound.max_message_bytes

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for result in self.results:
            out[result.outcome.value] = out.get(result.outcome.value, 0) + 1
        return out


def _connect(settings: Settings) -> imaplib.IMAP4:
    conf = settings.inbound
    if not conf.imap_host or not conf.imap_user:
        raise ConfigError(
            "set inbound.imap_host and inbound.imap_user (SLICE_IMAP_HOST, SLICE_IMAP_USER) "
            "and SLICE_IMAP_PASSWORD to drain a mailbox."
        )
    if not settings.secrets.imap_password:
        raise ConfigError("SLICE_IMAP_PASSWORD is not set: the mailbox's password.")
    if conf.imap_tls == "none" and not is_local_host(conf.imap_host):
        raise ConfigError(
            f"inbound.imap_tls is none but {conf.imap_host} is not this machine: the password "
            "would cross the network in clear; use tls or starttls."
        )
    where = f"{conf.imap_host}:{conf.imap_port}"
    try:
        client: imaplib.IMAP4
        if conf.imap_tls == "tls":
            client = imaplib.IMAP4_SSL(
                conf.imap_host, conf.imap_port, ssl_context=ssl.create_default_context(), timeout=60
            )
        else:
            client = imaplib.IMAP4(conf.imap_host, conf.imap_port, timeout=60)
            if conf.imap_tls == "starttls":
                client.starttls(ssl.create_default_context())
        client.login(conf.imap_user, settings.secrets.imap_password)
    except imaplib.IMAP4.error as exc:
        raise SendError(f"the IMAP server at {where} refused the login: {_text(exc)}") from None
    except (OSError, ssl.SSLError) as exc:
        raise SendError(f"cannot reach the IMAP server at {where}: {exc}") from None
    return client


def _text(exc: BaseException) -> str:
    first = exc.args[0] if exc.args else exc
    return first.decode("utf-8", "replace") if isinstance(first, bytes) else str(first)


def drain(
    settings: Settings, store: Store, *, on_result: Callable[[Result], None] | None = None
) -> DrainReport:
    """Process and delete every message in the folder, once each outcome is committed."""
    inbound = inbound_processor(settings, store)
    conf = settings.inbound
    report = DrainReport()
    client = _connect(settings)
    try:
        status, _ = client.select(_quoted(conf.imap_folder))
        if status != "OK":
            raise SendError(f"the IMAP folder {conf.imap_folder!r} cannot be opened.")
        status, found = client.uid("SEARCH", "ALL")
        uids = found[0].decode().split() if status == "OK" and found and found[0] else []
        try:
            for uid in uids:
                _take(client, uid, inbound, report, conf.max_message_bytes, on_result)
        except BaseException:
            # the messages whose outcome is committed go, or the next drain reads them again
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                client.expunge()
            raise
        client.expunge()
    except imaplib.IMAP4.error as exc:
        raise SendError(f"the IMAP server stopped the drain: {_text(exc)}") from None
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            client.logout()
    return report


def _take(
    client: imaplib.IMAP4,
    uid: str,
    inbound: Inbound,
    report: DrainReport,
    max_bytes: int,
    on_result: Callable[[Result], None] | None,
) -> None:
    """Process one message and mark it deleted once its outcome is committed."""
    status, sized = client.uid("FETCH", uid, "(RFC822.SIZE)")
    size = _SIZE.search(b" ".join(p for p in _flat(sized)))
    if size is not None and int(size.group(1)) > max_bytes:
        report.too_large += 1
        return
    status, fetched = client.uid("FETCH", uid, "(BODY.PEEK[])")
    data = next((p[1] for p in fetched if isinstance(p, tuple)), None)
    if status != "OK" or not isinstance(data, bytes):
        return
    result = inbound.process(data, source="imap")  # committed, or it raises
    client.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted)")
    report.results.append(result)
    if on_result is not None:
        on_result(result)


def _flat(parts: list[object]) -> list[bytes]:
    out: list[bytes] = []
    for part in parts:
        if isinstance(part, bytes):
            out.append(part)
        elif isinstance(part, tuple):
            out.extend(p for p in part if isinstance(p, bytes))
    return out


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
