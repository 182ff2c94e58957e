"""`slice bounces import`: read bounce and complaint reports, suppress the addresses they name.

Reads an mbox file, a maildir, one .eml file or a folder of .eml files.

- Delivery-status notifications (RFC 3464, and the many non-standard bounce
  formats) are read with flufl.bounce: a permanent failure marks the
  subscriber ``bounced``; a temporary one (a "delayed" notice) is counted and
  left alone.
- Complaints in the Abuse Reporting Format (RFC 5965, ``multipart/report;
  report-type=feedback-report``) mark the subscriber ``complained``. The
  reader is found from the signed unsubscribe token in the reported message's
  List-Unsubscribe header (providers often hide the address), else from the
  report's Original-Rcpt-To or the reported message's To.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses
from pathlib import Path
from typing import cast

from flufl.bounce import all_failures
from sqlalchemy import bindparam, select, update

from newsletter.core.errors import BounceFileError, TokenError
from newsletter.core.models import Subscriber, SubscriberStatus, table, utcnow
from newsletter.core.store import Store
from newsletter.readers.tokens import Tokens

S = table(Subscriber)
_TOKEN_IN_URL = re.compile(r"/unsubscribe/([A-Za-z0-9_\-.]+)")


@dataclass
class BounceReport:
    """What an import found and changed."""

    messages: int = 0
    bounced: list[str] = field(default_factory=list)  # newly suppressed as bounced
    complained: list[str] = field(default_factory=list)  # newly marked complained
    already: int = 0  # named addresses that were suppressed before
    unknown: list[str] = field(default_factory=list)  # addresses not on the list
    temporary: int = 0  # delayed-delivery notices, left alone
    not_reports: int = 0  # messages that are neither bounces nor complaints
    unreadable: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"bounced {a}" for a in self.bounced]
        out += [f"complained {a}" for a in self.complained]
        out += [f"unknown {a} (not a subscriber)" for a in self.unknown]
        out += [f"unreadable {what}" for what in self.unreadable]
        out.append(
            f"Read {self.messages} messages: {len(self.bounced)} bounced, "
            f"{len(self.complained)} complaints, {self.already} already suppressed, "
            f"{len(self.unknown)} unknown addresses, {self.temporary} temporary failures "
            f"(left alone), {self.not_reports} not bounce reports."
        )
        return out


def read_messages(path: Path) -> Iterator[tuple[str, Message]]:
    """Every message in an mbox file, a maildir, a .eml file or a folder of .eml files."""
    if not path.exists():
        raise BounceFileError(
            f"{path} does not exist; give an mbox file, a maildir or a .eml file."
        )
    if path.is_dir():
        if (path / "cur").is_dir() or (path / "new").is_dir():
            box = mailbox.Maildir(path, factory=None, create=False)
            for key in sorted(box.keys()):
                yield f"{path.name}/{key}", _parse(box.get_bytes(key))
            return
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".eml", ".msg"))
        if not files:
            raise BounceFileError(
                f"{path} holds no .eml files and is not a maildir (no cur/ or new/ folder)."
            )
        for file in files:
            yield str(file.relative_to(path)), _parse(file.read_bytes())
        return
    with path.open("rb") as handle:
        head = handle.read(5)
    if head == b"From ":
        box_file = mailbox.mbox(path, factory=None, create=False)
        try:
            for i, key in enumerate(box_file.keys(), 1):
                yield f"{path.name}#{i}", _parse(box_file.get_bytes(key))
        finally:
            box_file.close()
        return
    data = path.read_bytes()
    if b":" not in data[:1000]:
        raise BounceFileError(
            f"{path} is not an email message or mbox file (no headers at the start)."
        )
    yield path.name, _parse(data)


def _parse(data: bytes) -> Message:
    return email.message_from_bytes(data, policy=email.policy.compat32)


def is_complaint(msg: Message) -> bool:
    return msg.get_content_type() == "multipart/report" and (
        str(msg.get_param("report-type", "")).lower() == "feedback-report"
    )


def _feedback_fields(msg: Message) -> Message | None:
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                return cast(Message, payload[0])
            if isinstance(payload, str):
                return HeaderParser().parsestr(payload.strip() + "\n\n")
    return None


def _reported_headers(msg: Message) -> Message | None:
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                return cast(Message, payload[0])
        if ctype == "text/rfc822-headers":
            text = part.get_payload(decode=True) or b""
            return HeaderParser().parsestr(bytes(text).decode("utf-8", "replace"))
    return None


def complaint_target(msg: Message, tokens: Tokens | None) -> tuple[str | None, str | None]:
    """(subscriber uid, address) named by a complaint; either may be None."""
    reported = _reported_headers(msg)
    uid = None
    if reported is not None and tokens is not None:
        for match in _TOKEN_IN_URL.finditer(str(reported.get("List-Unsubscribe", ""))):
            try:
                uid = tokens.read_unsubscribe(match.group(1))
                break
            except TokenError:
                continue
    address = None
    fields = _feedback_fields(msg)
    candidates = []
    if fields is not None:
        candidates += [fields.get("Original-Rcpt-To", ""), fields.get("Removal-Recipient", "")]
    if reported is not None:
        candidates.append(reported.get("To", ""))
    for value in candidates:
        for _, addr in getaddresses([str(value)]):
            if "@" in addr:
                address = addr.strip().lower()
                break
        if address:
            break
    return uid, address


def import_bounces(store: Store, path: Path, *, secret_key: str | None = None) -> BounceReport:
    """Read the reports under ``path`` and mark the subscribers they name."""
    tokens = Tokens(secret_key) if secret_key else None
    report = BounceReport()
    bounced: dict[str, str] = {}  # address -> reason
    complained_uids: dict[str, str] = {}
    complained_addrs: dict[str, str] = {}
    for name, msg in read_messages(path):
        report.messages += 1
        try:
            if is_complaint(msg):
                uid, address = complaint_target(msg, tokens)
                if uid:
                    complained_uids[uid] = f"complaint report {name}"
                elif address:
                    complained_addrs[address] = f"complaint report {name}"
                else:
                    report.unreadable.append(f"{name}: a complaint that names no reader")
                continue
            temporary, permanent = all_failures(msg)
        except Exception as exc:  # a malformed message is reported, the rest go on
            report.unreadable.append(f"{name}: {exc.__class__.__name__}")
            continue
        if permanent:
            for raw in permanent:
                address = raw.decode("utf-8", "replace").strip().lower()
                bounced[address] = f"bounce report {name}"
        elif temporary:
            report.temporary += 1
        else:
            report.not_reports += 1
    _apply(store, report, bounced, complained_uids, complained_addrs)
    return report


def _apply(
    store: Store,
    report: BounceReport,
    bounced: dict[str, str],
    complained_uids: dict[str, str],
    complained_addrs: dict[str, str],
) -> None:
    now = utcnow()
    with store.write() as session:
        conn = session.connection()
        by_addr = {
            r.email_key: r
            for r in conn.execute(
                select(S.c.id, S.c.uid, S.c.email_key, S.c.status).where(
                    S.c.email_key.in_([*bounced, *complained_addrs])
                )
            )
        }
        by_uid = {
            r.uid: r
            for r in conn.execute(
                select(S.c.id, S.c.uid, S.c.email_key, S.c.status).where(
                    S.c.uid.in_(list(complained_uids))
                )
            )
        }
        changes: list[dict[str, object]] = []
        targets = [
            (by_uid.get(u), u, reason, "complained") for u, reason in complained_uids.items()
        ]
        targets += [(by_addr.get(a), a, r, "complained") for a, r in complained_addrs.items()]
        targets += [(by_addr.get(a), a, r, "bounced") for a, r in bounced.items()]
        seen: set[int] = set()
        for row, label, reason, new in targets:
            if row is None:
                report.unknown.append(label)
                continue
            if row.id in seen:
                continue
            seen.add(row.id)
            suppressed = row.status in (SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED)
            if new == "bounced" and (suppressed or row.status == SubscriberStatus.UNSUBSCRIBED):
                report.already += 1
                continue
            if new == "complained" and row.status == SubscriberStatus.COMPLAINED:
                report.already += 1
                continue
            (report.complained if new == "complained" else report.bounced).append(row.email_key)
            changes.append({"b_id": row.id, "b_status": new, "b_reason": reason[:500]})
        if changes:
            conn.execute(
                update(S)
                .where(S.c.id == bindparam("b_id"))
                .values(
                    status=bindparam("b_status"),
                    status_reason=bindparam("b_reason"),
                    updated_at=now,
                ),
                changes,
            )
