"""`send_issue` against a real SMTP server: headers, MIME, DKIM, the ledger, and faults."""

from __future__ import annotations

import asyncio
import random
import re
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from newsletter.core.config import load_settings
from newsletter.core.errors import IssueNotFoundError, SendError
from newsletter.core.models import Delivery, Issue, Subscriber
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.readers.tokens import Tokens
from newsletter.send.encoding import fill_placeholders
from newsletter.send.service import SendOptions, SendReport, send_issue
from tests.conftest import TEST_SECRET
from tests.send_support import (
    ISSUE,
    SUBJECT,
    add_reader,
    add_readers,
    dkim_verify,
    issue_html,
    issue_text,
    make_dkim_key,
    parse,
    write_issue,
)
from tests.support.smtpd import RecordingSMTPServer

FAST: dict[str, Any] = {
    "rate": 0.0,
    "concurrency": 3,
    "retry_base_seconds": 0.02,
    "reconnect_base_seconds": 0.01,
}


@pytest.fixture
def smtp_settings(project: Path, smtp_environ: dict[str, str]) -> Settings:
    return load_settings(config=project / "slice.toml", environ=smtp_environ)


@pytest.fixture
def db(smtp_settings: Settings) -> Iterator[Store]:
    with Store.open(smtp_settings.database_url) as store:
        yield store


def send(settings: Settings, store: Store, **kw: Any) -> SendReport:
    options = SendOptions(**{**FAST, **kw.pop("options", {})})
    return asyncio.run(
        send_issue(settings, store, ISSUE, options=options, rng=random.Random(1), **kw)
    )


def ledger(store: Store) -> dict[str, Delivery]:
    with store.read() as session:
        rows = session.exec(select(Delivery, Subscriber).join(Subscriber)).all()
    return {sub.email: d for d, sub in rows}


def test_every_confirmed_reader_gets_one_message_with_their_own_links(
    smtp_settings: Settings, db: Store, smtp_server: RecordingSMTPServer
) -> None:
    write_issue(smtp_settings, db)
    add_reader(db, "ada@example.com", "Ada Lovelace")
    add_reader(db, "zoe@example.com", "Zoë <script>x</script> Ångström")
    add_reader(db, "anon@example.com", "")
    add_reader(db, "pending@example.com", "Pat", status="pending")
    add_reader(db, "gone@example.com", "Gus", status="unsubscribed")

    report = send(smtp_settings, db)

    assert report.tally.sent == 3 and report.finished
    assert report.counts["sent"] == 3 and report.audience == 3
    by_rcpt = {m.rcpt_tos[0]: parse(m.data) for m in smtp_server.messages}
    assert set(by_rcpt) == {"ada@example.com", "zoe@example.com", "anon@example.com"}

    tokens = Tokens(TEST_SECRET)
    with db.read() as session:
        subs = {s.email: s for s in session.exec(select(Subscriber)).all()}
    greetings = {"ada@example.com": "Ada", "zoe@example.com": "Zoë", "anon@example.com": "there"}
    for address, msg in by_rcpt.items():
        url = f"http://127.0.0.1:8000/unsubscribe/{tokens.unsubscribe_token(subs[address].uid)}"
        values = {"__SLICE_UNSUBSCRIBE_URL__": url, "__SLICE_FIRST_NAME__": greetings[address]}
        text = msg.get_body(("plain",))
        body = msg.get_body(("html",))
        assert text is not None and body is not None
        # the decoded parts are exactly the rendered issue with this reader's values
        assert crlf(text.get_content()) == fill_placeholders(issue_text(), values)
        assert crlf(body.get_content()) == fill_placeholders(issue_html(), values)
        token = tokens.unsubscribe_token(subs[address].uid)
        assert (
            msg["List-Unsubscribe"]
            == f"<{url}>, <mailto:unsubscribe@example.org?subject=unsubscribe%20{token}>"
        )
        assert tokens.read_unsubscribe(url.rsplit("/", 1)[1]) == subs[address].uid
    # the HTML part escapes what a reader typed as their name
    zoe = by_rcpt["zoe@example.com"]
    assert "<script>" not in zoe.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert str(zoe["To"]) == '"Zoë <script>x</script> Ångström" <zoe@example.com>'


def test_headers_mime_and_line_lengths(
    smtp_settings: Settings, db: Store, smtp_server: RecordingSMTPServer
) -> None:
    write_issue(smtp_settings, db)
    add_reader(db, "ada@example.com", "Ada Lovelace")
    send(smtp_settings, db)
    (received,) = smtp_server.messages
    raw = received.data
    msg = parse(raw)
    # VERP: the envelope sender names this delivery, signed (a bounce is tied to it)
    local, _, domain = received.mail_from.partition("@")
    assert domain == "example.org" and local.startswith("bounces+")
    with db.read() as session:
        (delivery,) = session.exec(select(Delivery)).all()
    assert Tokens(TEST_SECRET).read_bounce(local.removeprefix("bounces+")) == delivery.id
    assert str(msg["From"]) == "Test Weekly <newsletter@example.org>"
    assert str(msg["To"]) == "Ada Lovelace <ada@example.com>"
    assert str(msg["Subject"]) == SUBJECT
    assert msg["Date"].datetime.tzinfo is not None
    assert re.fullmatch(r"<2025-W24\.[0-9a-f]{24}@example\.org>", str(msg["Message-ID"]))
    assert str(msg["List-Id"]) == '"Test Weekly" <newsletter.example.org>'
    assert str(msg["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    assert str(msg["Precedence"]) == "bulk"
    assert str(msg["Auto-Submitted"]) == "auto-generated"
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    for part in parts:
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
    # 7-bit clean, CRLF line ends, no line longer than RFC 5322's 78 in the body
    assert raw.isascii()
    assert b"\n" not in raw.replace(b"\r\n", b"")
    header_block, body = raw.split(b"\r\n\r\n", 1)
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    assert max(len(line) for line in header_block.split(b"\r\n")) <= 998
    assert b"__SLICE_" not in raw
    assert "DKIM-Signature" not in msg  # no key configured


def test_a_sender_name_with_parentheses_reaches_the_reader_whole(
    project: Path, smtp_environ: dict[str, str], smtp_server: RecordingSMTPServer
) -> None:
    """Unquoted, "Weekly (demo)" is a name plus an RFC 5322 comment and clients show "Weekly"."""
    news = {
        "from_address": "Radiology AI Weekly (demo) <weekly@example.org>",
        "reply_to": "Editors (replies read) <editors@example.org>",
    }
    settings = load_settings(
        config=project / "slice.toml", environ=smtp_environ, overrides={"newsletter": news}
    )
    with Store.open(settings.database_url) as store:
        write_issue(settings, store)
        add_reader(store, "ada@example.com", "Ada Lovelace")
        send(settings, store)
    (received,) = smtp_server.messages
    msg = parse(received.data)
    # what a mail client shows: the whole name, the same as the confirmation email's sender
    assert msg["From"].addresses[0].display_name == "Radiology AI Weekly (demo)"
    assert msg["From"].addresses[0].addr_spec == "weekly@example.org"
    assert msg["Reply-To"].addresses[0].display_name == "Editors (replies read)"
    assert received.mail_from.endswith("@example.org")


def test_message_id_is_the_same_on_every_attempt_and_differs_per_reader(
    smtp_settings: Settings, db: Store, smtp_server: RecordingSMTPServer
) -> None:
    write_issue(smtp_settings, db)
    add_readers(db, 2)
    smtp_server.data_replies.append("451 4.3.0 Try again later")
    report = send(smtp_settings, db)
    assert report.tally.sent == 2 and report.tally.deferred == 1
    ids = [str(parse(m.data)["Message-ID"]) for m in smtp_server.messages]
    assert len(set(ids)) == 2
    rows = ledger(db)
    assert sorted(r.message_id for r in rows.values()) == sorted(ids)
    first = smtp_server.attempts[0][0]
    assert rows[first].attempts == 2 and rows[first].status == "sent"


def test_dkim_signature_verifies_with_an_independent_verifier(
    project: Path, smtp_environ: dict[str, str], tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    key, record = make_dkim_key(tmp_path)
    environ = {
        **smtp_environ,
        "SLICE_DKIM_KEY": str(key),
        "SLICE_DKIM_SELECTOR": "s1",
        "SLICE_DKIM_DOMAIN": "example.org",
    }
    settings = load_settings(config=project / "slice.toml", environ=environ)
    with Store.open(settings.database_url) as store:
        write_issue(settings, store)
        add_reader(store, "ada@example.com", "Ada  Lovelace")
        add_reader(store, "zoe@example.com", "Zoë Ångström")
        add_readers(store, 5)
        report = send(settings, store)
    assert report.signed and report.tally.sent == 7
    for received in smtp_server.messages:
        msg = parse(received.data)
        signature = str(msg["DKIM-Signature"])
        tags = dict(
            t.strip().split("=", 1) for t in re.sub(r"\s+", "", signature).split(";") if t.strip()
        )
        assert tags["a"] == "rsa-sha256" and tags["d"] == "example.org" and tags["s"] == "s1"
        signed = set(tags["h"].split(":"))
        assert {
            "from",
            "to",
            "subject",
            "date",
            "message-id",
            "list-unsubscribe",
            "list-unsubscribe-post",
        } <= signed
        assert dkim_verify(received.data, record)
        # any change to a signed header or the body breaks it
        assert not dkim_verify(
            received.data.replace(b"Subject: Radiology", b"Subject: Radiolo9y"), record
        )
        assert not dkim_verify(
            received.data.replace(b"Read the paper", b"Read the pap3r", 1), record
        )
        forged = received.data.replace(
            b"List-Unsubscribe-Post:", b"List-Unsubscribe-Post: x\r\nList-Unsubscribe-Post:", 1
        )
        assert not dkim_verify(forged, record)


def test_dkim_signatures_are_made_off_the_event_loop(
    project: Path, smtp_environ: dict[str, str], tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    """Signing is CPU work: it runs on the signing threads (a second core), not the loop's."""
    key, record = make_dkim_key(tmp_path)
    environ = {
        **smtp_environ,
        "SLICE_DKIM_KEY": str(key),
        "SLICE_DKIM_SELECTOR": "s1",
        "SLICE_DKIM_DOMAIN": "example.org",
    }
    settings = load_settings(config=project / "slice.toml", environ=environ)
    signed_on: list[str] = []

    def watch(frame: Any, event: str, _arg: object) -> None:
        code = frame.f_code
        if event == "call" and code.co_name == "_signature" and "send" in code.co_filename:
            signed_on.append(threading.current_thread().name)

    with Store.open(settings.database_url) as store:
        write_issue(settings, store)
        add_readers(store, 6)
        threading.setprofile(watch)
        sys.setprofile(watch)
        try:
            report = send(settings, store)
        finally:
            sys.setprofile(None)
            threading.setprofile(None)  # type: ignore[arg-type]
    assert report.signed and report.tally.sent == 6
    assert all(dkim_verify(m.data, record) for m in smtp_server.messages)
    assert len(signed_on) == 6
    assert all(name.startswith("slice-dkim") for name in signed_on), signed_on


def test_fault_mix_nobody_lost_5xx_suppressed_4xx_retried(
    smtp_settings: Settings, db: Store, smtp_server: RecordingSMTPServer
) -> None:
    write_issue(smtp_settings, db)
    addresses = add_readers(db, 30)
    smtp_server.rcpt_replies[addresses[3]] = "550 5.1.1 No such user here"
    smtp_server.rcpt_replies[addresses[7]] = "553 5.1.3 Bad recipient address syntax"
    smtp_server.greylist.add(addresses[11])  # 451 the first time only
    smtp_server.data_replies.extend(["452 4.3.1 Insufficient storage"])
    smtp_server.drop_next_data = 2
    smtp_server.delay = 0.01

    options = SendOptions(**{**FAST, "retry_base_seconds": 0.1})
    report = asyncio.run(
        send_issue(smtp_settings, db, ISSUE, options=options, rng=random.Random(2))
    )

    rows = ledger(db)
    assert report.finished
    assert {a for a, r in rows.items() if r.status == "failed"} == {addresses[3], addresses[7]}
    assert all(r.status == "sent" for a, r in rows.items() if a not in (addresses[3], addresses[7]))
    delivered = Counter(m.rcpt_tos[0] for m in smtp_server.messages)
    # nobody lost: everyone not refused got it; drops may deliver twice, never more
    assert set(delivered) == set(addresses) - {addresses[3], addresses[7]}
    assert max(delivered.values()) <= 1  # the test server drops before accepting
    assert rows[addresses[11]].attempts >= 2
    assert rows[addresses[3]].last_code == 550 and "No such user" in rows[addresses[3]].last_error
    with db.read() as session:
        statuses = {s.email: s for s in session.exec(select(Subscriber)).all()}
    assert statuses[addresses[3]].status == "bounced"
    assert statuses[addresses[7]].status == "bounced"
    assert "550" in statuses[addresses[3]].status_reason
    assert statuses[addresses[11]].status == "confirmed"
    assert report.tally.deferred >= 4  # the 451, the 452 and two drops
    assert report.tally.failed == 2 and report.tally.suppressed == 2


def test_backoff_grows_and_gives_up_after_max_attempts(
    smtp_settings: Settings, db: Store, smtp_server: RecordingSMTPServer
) -> None:
    write_issue(smtp_settings, db)
    (address,) = add_readers(db, 1)
    smtp_server.rcpt_replies[address] = "450 4.2.1 Mailbox busy"
    seen: list[tuple[Any, datetime]] = []

    class Events:
        def begin(self, **_: Any) -> None: ...
        def skipped(self, rows: Any) -> None: ...
        def waiting(self, reason: str, until: Any) -> None: ...
        def outcome(self, row: Any, outcome: Any, answer: Any) -> None:
            seen.append((outcome, datetime.now(UTC)))

    base = 0.05
    report = send(
        smtp_settings, db, options={"max_attempts": 4, "retry_base_seconds": base}, events=Events()
    )
    row = ledger(db)[address]
    assert row.status == "failed" and row.attempts == 4
    assert row.last_error.startswith("gave up after 4 tries: 450")
    deferred = [(o, at) for o, at in seen if o.status == "deferred"]
    assert len(deferred) == 3
    for n, (outcome, at) in enumerate(deferred, 1):
        wait = (outcome.next_attempt_at - at).total_seconds()
        assert 0.5 * base * 2 ** (n - 1) - 0.05 <= wait <= 1.5 * base * 2 ** (n - 1), (n, wait)
    # the server saw the tries spaced out by those waits
    assert len(smtp_server.attempts) == 0  # refused at RCPT: DATA never started
    with db.read() as session:
        assert (
            session.exec(select(Subscriber)).one().status == "confirmed"
        )  # a 4xx never suppresses
    assert report.tally.failed == 1 and report.tally.suppressed == 0


def test_relay_refusing_everything_stops_early_and_loses_nobody(
    smtp_settings: Settings, db: Store, smtp_server: RecordingSMTPServer
) -> None:
    write_issue(smtp_settings, db)
    add_readers(db, 50)
    smtp_server.refuse_all = "421 4.7.0 Too many connections, go away"
    stopped = send(smtp_settings, db, options={"concurrency": 2})
    message = stopped.tally.stopped
    assert not stopped.finished and stopped.tally.sent == 0
    assert "refuses every message" in message and "421 4.7.0 Too many connections" in message
    assert "\n" not in message
    rows = ledger(db)
    assert len(rows) == 50
    # nobody burned: every row is back to pending, with no try counted against the reader
    assert {r.status for r in rows.values()} == {"pending"}
    assert {r.attempts for r in rows.values()} == {0}
    assert len(smtp_server.messages) == 0
    with db.read() as session:
        assert session.get(Issue, ISSUE).status == "sending"  # type: ignore[union-attr]
    # once the relay is fixed, the same command finishes the job
    smtp_server.refuse_all = None
    report = send(smtp_settings, db)
    assert report.finished and report.tally.sent == 50
    assert len({m.rcpt_tos[0] for m in smtp_server.messages}) == 50


def test_unreachable_relay_stops_with_one_line(project: Path, environ: dict[str, str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = load_settings(
        config=project / "slice.toml",
        environ={**environ, "SLICE_SMTP_HOST": "127.0.0.1", "SLICE_SMTP_PORT": str(port)},
    )
    with Store.open(settings.database_url) as store:
        write_issue(settings, store)
        add_readers(store, 5)
        report = send(settings, store)
        assert f"the relay at 127.0.0.1:{port} cannot be reached (" in report.tally.stopped
        assert "check smtp.host, smtp.port and that the relay runs" in report.tally.stopped
        assert {r.status for r in ledger(store).values()} == {"pending"}


def test_readers_who_leave_before_their_turn_are_skipped_and_late_signups_not_added(
    smtp_settings: Settings, db: Store, smtp_server: RecordingSMTPServer
) -> None:
    write_issue(smtp_settings, db)
    addresses = add_readers(db, 6)
    smtp_server.refuse_all = "421 4.3.2 System not accepting network messages"
    stopped = send(smtp_settings, db, options={"concurrency": 1, "stop_after_relay_failures": 1})
    assert stopped.tally.stopped
    # between the runs: two readers leave, one bounces elsewhere, one new reader confirms
    with db.write() as session:
        for sub in session.exec(select(Subscriber)).all():
            if sub.email in (addresses[1], addresses[4]):
                sub.status = "unsubscribed"
            if sub.email == addresses[5]:
                sub.status = "bounced"
    add_reader(db, "late@example.com", "Late Comer")
    smtp_server.refuse_all = None
    report = send(smtp_settings, db)
    assert report.tally.skipped == 3 and report.tally.sent == 3
    assert {m.rcpt_tos[0] for m in smtp_server.messages} == {
        addresses[0],
        addresses[2],
        addresses[3],
    }
    rows = ledger(db)
    assert "late@example.com" not in rows
    assert (
        rows[addresses[1]].status == "skipped" and "unsubscribed" in rows[addresses[1]].last_error
    )
    assert report.counts == {
        "pending": 0,
        "sending": 0,
        "sent": 3,
        "deferred": 0,
        "failed": 0,
        "skipped": 3,
    }


def test_finished_issue_is_not_sent_again_and_retry_failed_retries(
    smtp_settings: Settings, db: Store, smtp_server: RecordingSMTPServer
) -> None:
    write_issue(smtp_settings, db)
    addresses = add_readers(db, 4)
    smtp_server.data_replies.append("554 5.7.1 Message rejected as spam")
    first = send(smtp_settings, db, options={"concurrency": 1})
    assert first.finished and first.tally.failed == 1
    # a 5.7.x about the message fails it but keeps the address
    with db.read() as session:
        assert {s.status for s in session.exec(select(Subscriber)).all()} == {"confirmed"}
    again = send(smtp_settings, db)
    assert again.already_sent and again.tally.sent == 0
    assert len(smtp_server.messages) == 3
    retried = send(smtp_settings, db, retry_failed=True)
    assert retried.retried == 1 and retried.tally.sent == 1 and retried.finished
    assert Counter(m.rcpt_tos[0] for m in smtp_server.messages) == Counter(addresses)


def test_no_confirmed_reader_is_an_error_that_changes_nothing(
    smtp_settings: Settings, db: Store
) -> None:
    write_issue(smtp_settings, db)
    add_reader(db, "p@example.com", status="pending")
    with pytest.raises(SendError, match="No confirmed subscribers") as refused:
        send(smtp_settings, db)
    # the hint names the command that adds a reader who can be sent to at once
    assert "`slice subscribers add ADDRESS --confirmed`" in str(refused.value)
    with db.read() as session:
        assert session.get(Issue, ISSUE).status == "draft"  # type: ignore[union-attr]
        assert session.exec(select(Delivery)).all() == []


def test_an_issue_that_is_not_composed_is_a_clear_error(smtp_settings: Settings, db: Store) -> None:
    with pytest.raises(IssueNotFoundError, match="run `slice compose` first"):
        send(smtp_settings, db)


def test_an_issue_without_unsubscribe_link_is_refused(smtp_settings: Settings, db: Store) -> None:
    write_issue(smtp_settings, db, html_text="<p>Hi __SLICE_FIRST_NAME__</p>")
    add_readers(db, 1)
    with pytest.raises(SendError, match="no unsubscribe link"):
        send(smtp_settings, db)


def test_issue_row_is_made_from_message_json_when_missing(
    smtp_settings: Settings, db: Store, smtp_server: RecordingSMTPServer
) -> None:
    write_issue(smtp_settings, None)
    add_readers(db, 2)
    report = send(smtp_settings, db)
    assert report.finished
    with db.read() as session:
        issue = session.get(Issue, ISSUE)
    assert issue is not None and issue.status == "sent" and issue.subject == SUBJECT


def crlf(text: str) -> str:
    """Decoded text with the wire's CRLF line ends as a reader's client shows them."""
    return text.replace("\r\n", "\n")


def test_ledger_on_each_database(
    smtp_settings: Settings, any_store: Store, smtp_server: RecordingSMTPServer
) -> None:
    """The same send on SQLite and PostgreSQL: snapshot, claims, outcomes, suppression, skips."""
    write_issue(smtp_settings, any_store)
    addresses = add_readers(any_store, 25)
    smtp_server.rcpt_replies[addresses[4]] = "550 5.1.1 unknown"
    smtp_server.data_replies.append("451 4.3.0 later")
    report = send(smtp_settings, any_store)
    assert report.finished and report.tally.sent == 24 and report.tally.failed == 1
    rows = ledger(any_store)
    assert rows[addresses[4]].status == "failed"
    assert sum(r.attempts for r in rows.values()) == 26
    assert all(r.sent_at is not None for a, r in rows.items() if a != addresses[4])
    with any_store.read() as session:
        bounced = session.exec(select(Subscriber).where(Subscriber.status == "bounced")).all()
        issue = session.get(Issue, ISSUE)
    assert [s.email for s in bounced] == [addresses[4]]
    assert issue is not None and issue.status == "sent" and issue.sent_at is not None


def test_wire_form_is_the_message_dot_stuffed(smtp_settings: Settings, tmp_path: Path) -> None:
    """What DATA carries is exactly what aiosmtplib's own normalizing would make of the message."""
    from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

    from newsletter.issue.outbox import IssueFolder
    from newsletter.send.message import Reader
    from newsletter.send.setup import issue_message

    key, record = make_dkim_key(tmp_path)
    settings = load_settings(
        config=smtp_settings.config_file,
        environ={
            "SLICE_SECRET_KEY": TEST_SECRET,
            "SLICE_DKIM_KEY": str(key),
            "SLICE_DKIM_SELECTOR": "s1",
            "SLICE_DKIM_DOMAIN": "example.org",
        },
    )
    write_issue(settings, None)
    message = issue_message(settings, IssueFolder.of(settings.outbox_dir, ISSUE))
    now = datetime(2025, 6, 16, 6, 0, tzinfo=UTC)
    for reader in [Reader("u1", "a@example.com", ".dot"), Reader("u2", "b@example.com", "Ann")]:
        plain = message.render(reader, now=now)
        wire = asyncio.run(message.render_wire(reader, now=now))
        assert wire == PERIOD_REGEX.sub(b"..", normalize_message_line_endings(plain))
        assert b"\r\n.5 mm slices" in plain and b"\r\n..5 mm slices" in wire
        assert dkim_verify(plain, record)


def test_a_slow_relay_times_out_and_the_message_goes_again_with_the_same_id(
    project: Path, smtp_environ: dict[str, str], smtp_server: RecordingSMTPServer
) -> None:
    settings = load_settings(
        config=project / "slice.toml", environ=smtp_environ, overrides={"smtp": {"timeout": 0.3}}
    )
    with Store.open(settings.database_url) as store:
        write_issue(settings, store, papers=1)
        addresses = add_readers(store, 3)
        smtp_server.delay = 0.6  # longer than the client waits

        async def main() -> SendReport:
            async def recover() -> None:
                await asyncio.sleep(0.5)
                smtp_server.delay = 0

            task = asyncio.create_task(recover())
            # retries come after the server recovers (timeouts in a row would stop the send)
            options = SendOptions(**{**FAST, "retry_base_seconds": 1.2})
            report = await send_issue(settings, store, ISSUE, options=options, rng=random.Random(3))
            await task
            return report

        report = asyncio.run(main())
        rows = ledger(store)
    assert report.finished and report.tally.deferred >= 1
    assert {r.status for r in rows.values()} == {"sent"}
    timed_out = [r for r in rows.values() if r.attempts > 1]
    assert timed_out and all(
        "timed out" in r.last_error or r.last_error == "" for r in rows.values()
    )
    # the slow server finished the timed-out transaction after the client gave up: the
    # reader may hold two copies, always with the one Message-ID the ledger recorded
    ids: dict[str, set[str]] = {}
    for m in smtp_server.messages:
        ids.setdefault(m.rcpt_tos[0], set()).add(str(parse(m.data)["Message-ID"]))
    assert set(ids) == set(addresses)
    assert all(ids[a] == {rows[a].message_id} for a in addresses)


def test_login_then_send_over_reused_connections(project: Path, environ: dict[str, str]) -> None:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    logins: list[str] = []

    def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.password == b"s3cret"
        if ok:
            logins.append(data.login.decode())
        return AuthResult(success=ok)

    server = RecordingSMTPServer(
        smtp_kwargs={"authenticator": check, "auth_require_tls": False}
    ).start()
    try:
        env = {
            **environ,
            "SLICE_SMTP_HOST": "127.0.0.1",
            "SLICE_SMTP_PORT": str(server.port),
            "SLICE_SMTP_USERNAME": "editor",
            "SLICE_SMTP_PASSWORD": "s3cret",
        }
        settings = load_settings(config=project / "slice.toml", environ=env)
        with Store.open(settings.database_url) as store:
            write_issue(settings, store, papers=1)
            add_readers(store, 12)
            report = send(settings, store, options={"concurrency": 3})
        assert report.tally.sent == 12 and len(server.messages) == 12
        # one login per connection, not per message
        assert logins == ["editor"] * 3 and server.connections == 3
    finally:
        server.stop()


def test_deferred_readers_are_retried_in_the_same_run_after_the_backoff(
    smtp_settings: Settings, db: Store, smtp_server: RecordingSMTPServer
) -> None:
    """With the default 30 s base on a fake clock: the run waits out the backoff, then retries."""
    from newsletter.core.clock import FakeClock

    write_issue(smtp_settings, db, papers=1)
    addresses = add_readers(db, 3)
    smtp_server.rcpt_replies[addresses[0]] = "451 4.2.0 mailbox busy"
    clock = FakeClock()
    options = SendOptions(rate=0, concurrency=1, max_attempts=3)
    report = asyncio.run(
        send_issue(smtp_settings, db, ISSUE, options=options, clock=clock, rng=random.Random(5))
    )
    assert report.finished and report.tally.sent == 2 and report.tally.deferred == 2
    # deferred twice: the run waited about 30 s, then about 60 s (x0.5-1.5 jitter) to retry
    waits = [s for s in clock.sleeps if s > 1]
    assert len(waits) == 2
    assert 15 <= waits[0] <= 45 and 30 <= waits[1] <= 90
    row = ledger(db)[addresses[0]]
    assert row.status == "failed" and row.attempts == 3
    assert row.last_error == "gave up after 3 tries: 451 4.2.0 mailbox busy"
    assert clock.elapsed == sum(clock.sleeps)


def test_relay_outage_is_shown_while_waiting_and_cleared_when_it_answers(
    smtp_settings: Settings, db: Store, smtp_server: RecordingSMTPServer
) -> None:
    """While the relay refuses, the progress line says so and when the next try is; then it clears."""
    from newsletter.core.clock import FakeClock

    write_issue(smtp_settings, db, papers=1)
    add_readers(db, 3)
    smtp_server.refuse_all = "421 4.3.2 System not accepting network messages"
    notes: list[tuple[str, Any]] = []

    class Events:
        def begin(self, **_: Any) -> None: ...
        def skipped(self, rows: Any) -> None: ...
        def outcome(self, row: Any, outcome: Any, answer: Any) -> None: ...
        def waiting(self, reason: str, until: Any) -> None:
            notes.append((reason, until))
            if sum(1 for r, _ in notes if r == "relay") == 2:
                smtp_server.refuse_all = None  # the relay comes back

    clock = FakeClock()
    report = send(smtp_settings, db, options={"concurrency": 1}, events=Events(), clock=clock)
    assert report.finished and report.tally.sent == 3
    relay_notes = [(r, u) for r, u in notes if r == "relay"]
    assert len(relay_notes) == 2 and all(u is not None for _, u in relay_notes)
    assert notes[-1] == ("", None)  # cleared once a message went through
    assert sum(s for s in clock.sleeps if s > 0) > 0  # it waited between tries, on the fake clock
