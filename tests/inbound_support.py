"""What the inbound tests share: issues already sent to readers, and reports that name them.

`sent_issue` writes ledger rows as a finished send leaves them (status ``sent``,
with the Message-ID that went out), so a report can be tied to its delivery.
The report fixtures in tests/fixtures/send/ carry placeholders that `fill`
replaces with the values the list would really have put in its messages.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

from sqlalchemy import insert, select

from newsletter.core.models import Delivery, InboundMessage, Issue, Subscriber, table, utcnow
from newsletter.core.store import Store
from newsletter.readers.tokens import Tokens
from tests.conftest import FIXTURES, TEST_SECRET

REPORTS = FIXTURES / "send"
D = table(Delivery)
S = table(Subscriber)


def sent_issue(store: Store, issue_id: str, addresses: list[str]) -> dict[str, tuple[int, str]]:
    """An issue sent to ``addresses``: {address: (delivery id, Message-ID)}."""
    now = utcnow()
    number = int(re.sub(r"\D", "", issue_id) or 1)
    with store.write() as session:
        session.add(
            Issue(
                id=issue_id,
                number=number,
                subject=f"Issue {issue_id}",
                window_start=date(2025, 6, 9),
                window_end=date(2025, 6, 15),
                status="sent",
            )
        )
        session.flush()
        conn = session.connection()
        subs = dict(conn.execute(select(S.c.email, S.c.id).where(S.c.email.in_(addresses))).all())
        label = re.sub(r"[^0-9A-Za-z-]", "-", issue_id)
        for address in addresses:
            message_id = f"<{label}.{subs[address]:024x}@example.org>"
            conn.execute(
                insert(D).values(
                    issue_id=issue_id,
                    subscriber_id=subs[address],
                    status="sent",
                    message_id=message_id,
                    attempts=1,
                    last_error="",
                    created_at=now,
                    updated_at=now,
                    sent_at=now,
                    bounce="",
                )
            )
        rows = conn.execute(
            select(S.c.email, D.c.id, D.c.message_id)
            .join(S, S.c.id == D.c.subscriber_id)
            .where(D.c.issue_id == issue_id)
        ).all()
    return {r.email: (r.id, r.message_id) for r in rows}


def verp(delivery_id: int) -> str:
    """The envelope sender the list used for a delivery."""
    return f"bounces+{Tokens(TEST_SECRET).bounce_token(delivery_id)}@example.org"


def uid_of(store: Store, address: str) -> str:
    with store.read() as session:
        return str(
            session.connection().execute(select(S.c.uid).where(S.c.email == address)).scalar_one()
        )


def fill(
    data: bytes, store: Store, addresses: list[str], sent: dict[str, tuple[int, str]]
) -> bytes:
    """A report fixture with its {VERPn}, {MSGIDn}, {UNSUBn}, {TOKEN} and {FORGED} filled in."""
    tokens = Tokens(TEST_SECRET)

    def value(match: re.Match[bytes]) -> bytes:
        kind, n = match.group(1).decode(), int(match.group(2) or 0)
        if kind == "FORGED":  # the shape of a bounce token, with a signature nobody made
            return b"7-aaaaaaaaaaaaa"
        if kind == "VERP":
            return tokens.bounce_token(sent[addresses[n]][0]).encode()
        if kind == "MSGID":
            return sent[addresses[n]][1].encode()
        uid = uid_of(store, addresses[6 if kind == "TOKEN" else n])
        return tokens.unsubscribe_token(uid).encode()

    return re.sub(rb"\{(VERP|MSGID|UNSUB|TOKEN|FORGED)(\d*)\}", value, data)


def report_files(
    folder: Path, store: Store, addresses: list[str], sent: dict[str, tuple[int, str]]
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for src in sorted(REPORTS.glob("*.eml")):
        dest = folder / src.name
        dest.write_bytes(fill(src.read_bytes(), store, addresses, sent))
        out.append(dest)
    return out


def nested_bomb(depth: int = 3000) -> bytes:
    """A message whose MIME parts nest ``depth`` deep: a parser's stack, not a report."""
    head = (
        b"From: bomb@example.net\r\nTo: bounces@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
    )
    parts = [head]
    for i in range(depth):
        parts.append(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i))
    parts.append(b"Content-Type: text/plain\r\n\r\nboom\r\n")
    for i in reversed(range(depth)):
        parts.append(b"--b%d--\r\n" % i)
    return b"".join(parts)


def report(name: str, store: Store, readers: list[str], sent: dict[str, tuple[int, str]]) -> bytes:
    """A report fixture with CRLF line ends, as it travels (smtplib sends bytes as they are)."""
    data = fill((REPORTS / name).read_bytes(), store, readers, sent)
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def status(store: Store, address: str) -> str:
    with store.read() as session:
        return str(
            session.connection()
            .execute(select(S.c.status).where(S.c.email == address))
            .scalar_one()
        )


def outcomes(store: Store) -> list[str]:
    """The outcome of every inbound message recorded, in the order they came."""
    M = table(InboundMessage)
    with store.read() as session:
        return list(session.connection().execute(select(M.c.outcome).order_by(M.c.id)).scalars())
