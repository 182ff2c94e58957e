"""Acting on mail that came back: bounces, complaints, emailed unsubscribes.

`Inbound.process` takes one message (from `slice inbound`, an IMAP mailbox or
`slice bounces import`), asks `newsletter.readers.reports.classify` what it is,
and commits the outcome together with a row in ``inbound_messages``, so a
caller that answers "250" after it returns has the outcome on disk.

A report changes a reader only when it carries signed evidence (a bounce
token, an unsubscribe token, or the Message-ID of a message the list sent to an
address the report names); otherwise it is recorded as ``unattributed`` and
nothing else happens: anyone can mail the bounce address.

- A permanent failure marks the reader ``bounced``.
- A temporary failure marks the delivery ``soft``; when the reader's last
  ``inbound.soft_bounce_limit`` deliveries (one per issue) all came back soft,
  the reader is marked ``bounced``.
- A complaint (RFC 5965) marks the reader ``complained``.
- An emailed unsubscribe request with a valid token unsubscribes the reader.
"""

from __future__ import annotations

import mailbox
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, desc, insert, select, update

from newsletter.core.errors import BounceFileError
from newsletter.core.models import (
    SUPPRESSED,
    Delivery,
    DeliveryStatus,
    InboundMessage,
    InboundOutcome,
    Subscriber,
    SubscriberStatus,
    table,
    utcnow,
)
from newsletter.core.store import Store
from newsletter.core.words import plural
from newsletter.readers.reports import Finding, ReportError, classify
from newsletter.readers.tokens import Tokens

S = table(Subscriber)
D = table(Delivery)
M = table(InboundMessage)

_SENT = (DeliveryStatus.SENT, DeliveryStatus.FAILED)


@dataclass(frozen=True)
class Result:
    """What one inbound message did."""

    outcome: InboundOutcome
    email: str = ""  # the reader it changed or concerned
    detail: str = ""


@dataclass(frozen=True)
class _Target:
    subscriber_id: int
    email: str
    status: str
    delivery_id: int | None = None


class Inbound:
    """Processes inbound messages one at a time, each committed before `process` returns."""

    def __init__(self, store: Store, tokens: Tokens, *, soft_bounce_limit: int = 3) -> None:
        self.store = store
        self.tokens = tokens
        self.soft_bounce_limit = soft_bounce_limit

    def process(self, data: bytes, *, source: str, recipients: Sequence[str] = ()) -> Result:
        """Classify, act and record one message. A message that cannot be read is recorded
        as ``unreadable``; only a database failure raises (the caller should retry)."""
        try:
            finding = classify(data, self.tokens, recipients=recipients)
        except RecursionError:
            reason = "MIME parts nested too deep to read; not read"
            finding, result = None, Result(InboundOutcome.UNREADABLE, detail=reason)
        except Exception as exc:  # any malformed message: recorded, the others go on
            reason = " ".join(str(exc).split())[:200]
            if not isinstance(exc, ReportError):
                reason = f"not readable as mail ({exc.__class__.__name__}: {reason})"
            finding, result = None, Result(InboundOutcome.UNREADABLE, detail=reason)
        with self.store.write() as session:
            conn = session.connection()
            target: _Target | None = None
            if finding is not None:
                result, target = self._apply(conn, finding)
            conn.execute(
                insert(M).values(
                    received_at=utcnow(),
                    source=source,
                    message_id=finding.message_id if finding else "",
                    sender=finding.sender if finding else "",
                    outcome=result.outcome.value,
                    subscriber_id=target.subscriber_id if target else None,
                    delivery_id=target.delivery_id if target else None,
                    detail=result.detail[:500],
                )
            )
        return result

    # --- attribution -----------------------------------------------------

    def _by_delivery(self, conn: Connection, finding: Finding) -> _Target | None:
        query = select(D.c.id, D.c.subscriber_id, S.c.email_key, S.c.status).join(
            S, S.c.id == D.c.subscriber_id
        )
        for delivery_id in finding.delivery_ids:
            row = conn.execute(query.where(D.c.id == delivery_id)).first()
            if row is not None:
                return _Target(row.subscriber_id, row.email_key, row.status, row.id)
        if finding.quoted_ids and finding.addresses:
            row = conn.execute(
                query.where(
                    D.c.message_id.in_(finding.quoted_ids),
                    S.c.email_key.in_(finding.addresses),
                )
            ).first()
            if row is not None:
                return _Target(row.subscriber_id, row.email_key, row.status, row.id)
        return None

    def _by_uid(self, conn: Connection, finding: Finding) -> _Target | None:
        for uid in finding.reader_uids:
            row = conn.execute(
                select(S.c.id, S.c.email_key, S.c.status).where(S.c.uid == uid)
            ).first()
            if row is not None:
                return _Target(row.id, row.email_key, row.status)
        return None

    @staticmethod
    def _unattributed(finding: Finding, what: str) -> Result:
        named = ", ".join(finding.addresses[:3]) or "no address"
        forged = (
            f"; {finding.forged_tokens} token(s) with a bad signature"
            if finding.forged_tokens
            else ""
        )
        return Result(
            InboundOutcome.UNATTRIBUTED,
            detail=f"{what} naming {named} without a valid token or a Message-ID we sent "
            f"to it: ignored{forged}",
        )

    # --- acting ------------------------------------------------------------

    def _apply(self, conn: Connection, finding: Finding) -> tuple[Result, _Target | None]:
        if finding.kind in ("hard", "soft"):
            target = self._by_delivery(conn, finding)
            if target is None:
                what = "a bounce" if finding.kind == "hard" else "a delay notice"
                return self._unattributed(finding, what), None
            if finding.kind == "hard":
                self._mark_delivery(conn, target, "hard")
                return self._suppress(
                    conn, target, SubscriberStatus.BOUNCED, "bounce report"
                ), target
            return self._soft(conn, target), target
        if finding.kind == "complaint":
            target = self._by_uid(conn, finding) or self._by_delivery(conn, finding)
            if target is None:
                return self._unattributed(finding, "a complaint"), None
            self._mark_delivery(conn, target, "complaint")
            return self._suppress(
                conn, target, SubscriberStatus.COMPLAINED, "complaint report"
            ), target
        if finding.kind == "unsubscribe":
            target = self._by_uid(conn, finding)
            if target is None:
                why = "a token with a bad signature" if finding.forged_tokens else "no token"
                detail = (
                    f"an unsubscribe request from {finding.sender or 'nobody'} with {why}: ignored"
                    + self._by_hand(conn, finding.sender)
                )
                return Result(InboundOutcome.UNSIGNED, detail=detail), None
            return self._suppress(
                conn, target, SubscriberStatus.UNSUBSCRIBED, "emailed unsubscribe request"
            ), target
        if finding.kind == "auto_reply":
            return Result(InboundOutcome.AUTO_REPLY, detail=f"from {finding.sender}"), None
        return Result(InboundOutcome.NOT_REPORT, detail=f"from {finding.sender}"), None

    @staticmethod
    def _by_hand(conn: Connection, sender: str) -> str:
        """For a request without a token from a subscribed address: how the editor can act.

        The From line proves nothing (anyone can write it), so nothing is done here;
        a person who wrote "unsubscribe" by hand is most likely genuine, though.
        """
        if not sender:
            return ""
        subscribed = conn.execute(
            select(S.c.id).where(
                S.c.email_key == sender,
                S.c.status.in_([SubscriberStatus.CONFIRMED, SubscriberStatus.PENDING]),
            )
        ).first()
        if subscribed is None:
            return ""
        return f"; if they asked, `slice subscribers remove {sender}` unsubscribes them"

    def _mark_delivery(self, conn: Connection, target: _Target, bounce: str) -> None:
        if target.delivery_id is not None:
            query = update(D).where(D.c.id == target.delivery_id)
            if bounce == "soft":  # a later delay notice never hides a hard bounce
                query = query.where(D.c.bounce == "")
            conn.execute(query.values(bounce=bounce))

    def _soft(self, conn: Connection, target: _Target) -> Result:
        self._mark_delivery(conn, target, "soft")
        recent = conn.execute(
            select(D.c.bounce)
            .where(
                D.c.subscriber_id == target.subscriber_id,
                D.c.id <= (target.delivery_id or 0),
                D.c.status.in_(_SENT),
            )
            .order_by(desc(D.c.id))
            .limit(self.soft_bounce_limit)
        ).scalars()
        in_a_row = 0
        for bounce in recent:
            if bounce != "soft":
                break
            in_a_row += 1
        if in_a_row >= self.soft_bounce_limit:
            reason = f"{in_a_row} soft bounces in a row"
            result = self._suppress(conn, target, SubscriberStatus.BOUNCED, reason)
            if result.outcome == InboundOutcome.BOUNCED:
                return Result(InboundOutcome.BOUNCED, target.email, reason)
        return Result(
            InboundOutcome.SOFT_BOUNCE,
            target.email,
            f"soft bounce {in_a_row} of {self.soft_bounce_limit} in a row",
        )

    def _suppress(
        self, conn: Connection, target: _Target, status: SubscriberStatus, reason: str
    ) -> Result:
        outcome = {
            SubscriberStatus.BOUNCED: InboundOutcome.BOUNCED,
            SubscriberStatus.COMPLAINED: InboundOutcome.COMPLAINED,
            SubscriberStatus.UNSUBSCRIBED: InboundOutcome.UNSUBSCRIBED,
        }[status]
        current = target.status
        if current == status or (status != SubscriberStatus.COMPLAINED and current in SUPPRESSED):
            return Result(InboundOutcome.ALREADY, target.email, f"already {current}")
        now = utcnow()
        values: dict[str, object] = {
            "status": status.value,
            "status_reason": reason,
            "updated_at": now,
        }
        if status == SubscriberStatus.UNSUBSCRIBED:
            values.update(unsubscribed_at=now, confirm_nonce=None)
        conn.execute(update(S).where(S.c.id == target.subscriber_id).values(**values))
        return Result(outcome, target.email, reason)


# --- `slice bounces import`: files ------------------------------------------


@dataclass
class BounceReport:
    """What an import found and changed."""

    messages: int = 0
    bounced: list[str] = field(default_factory=list)
    complained: list[str] = field(default_factory=list)
    unsubscribed: list[str] = field(default_factory=list)
    already: int = 0
    soft: int = 0
    auto_replies: int = 0
    not_reports: int = 0
    ignored: list[str] = field(default_factory=list)  # reports with no signed evidence
    unreadable: list[str] = field(default_factory=list)

    def add(self, name: str, result: Result) -> None:
        self.messages += 1
        o = InboundOutcome
        lists = {
            o.BOUNCED: self.bounced,
            o.COMPLAINED: self.complained,
            o.UNSUBSCRIBED: self.unsubscribed,
        }
        if result.outcome in lists:
            lists[result.outcome].append(result.email)
        elif result.outcome == o.ALREADY:
            self.already += 1
        elif result.outcome == o.SOFT_BOUNCE:
            self.soft += 1
        elif result.outcome == o.AUTO_REPLY:
            self.auto_replies += 1
        elif result.outcome == o.NOT_REPORT:
            self.not_reports += 1
        elif result.outcome == o.UNREADABLE:
            self.unreadable.append(f"{name}: {result.detail}")
        else:
            self.ignored.append(f"{name}: {result.detail}")

    def lines(self) -> list[str]:
        out = [f"bounced {a}" for a in self.bounced]
        out += [f"complained {a}" for a in self.complained]
        out += [f"unsubscribed {a}" for a in self.unsubscribed]
        out += [f"ignored {what}" for what in self.ignored]
        out += [f"unreadable {what}" for what in self.unreadable]
        out.append(
            f"Read {plural(self.messages, 'message')}: {len(self.bounced)} bounced, "
            f"{plural(len(self.complained), 'complaint')}, {len(self.unsubscribed)} unsubscribed, "
            f"{self.already} already suppressed, {plural(self.soft, 'soft bounce')} (counted), "
            f"{len(self.ignored)} ignored (no valid token), "
            f"{plural(self.auto_replies, 'automatic reply', 'automatic replies')}, "
            f"{plural(self.not_reports, 'not a bounce report', 'not bounce reports')}, "
            f"{len(self.unreadable)} unreadable."
        )
        return out


def read_messages(path: Path) -> Iterator[tuple[str, bytes]]:
    """Every message in an mbox file, a maildir, a .eml file or a folder of .eml files."""
    if not path.exists():
        raise BounceFileError(
            f"{path} does not exist; give an mbox file, a maildir or a .eml file."
        )
    if path.is_dir():
        subdirs = [path / sub for sub in ("new", "cur") if (path / sub).is_dir()]
        if subdirs:
            # a maildir; read directly, as mailbox.Maildir fails when new/ or cur/ is missing
            for sub in subdirs:
                for file in sorted(
                    p for p in sub.iterdir() if p.is_file() and not p.name.startswith(".")
                ):
                    yield f"{sub.name}/{file.name}", file.read_bytes()
            return
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".eml", ".msg"))
        if not files:
            raise BounceFileError(
                f"{path} holds no .eml files and is not a maildir (no cur/ or new/ folder)."
            )
        for file in files:
            yield str(file.relative_to(path)), file.read_bytes()
        return
    with path.open("rb") as handle:
        head = handle.read(5)
    if head == b"From ":
        box_file = mailbox.mbox(path, factory=None, create=False)
        try:
            for i, key in enumerate(box_file.keys(), 1):
                yield f"{path.name}#{i}", box_file.get_bytes(key)
        finally:
            box_file.close()
        return
    data = path.read_bytes()
    if b":" not in data[:1000]:
        raise BounceFileError(
            f"{path} is not an email message or mbox file (no headers at the start)."
        )
    yield path.name, data


def import_bounces(
    store: Store, path: Path, *, secret_key: str, soft_bounce_limit: int = 3
) -> BounceReport:
    """Read the reports under ``path``; act on those that carry signed evidence."""
    inbound = Inbound(store, Tokens(secret_key), soft_bounce_limit=soft_bounce_limit)
    report = BounceReport()
    for name, data in read_messages(path):
        report.add(name, inbound.process(data, source="file"))
    return report
