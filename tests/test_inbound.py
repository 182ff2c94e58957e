"""`slice inbound`: real LMTP and SMTP sessions carrying bounces, complaints, replies, unsubscribes.

Each message's outcome is on disk when the server answers 250; a message the
database cannot take gets 451, so the MTA keeps it. A report without signed
evidence changes nobody, and a MIME bomb is one unreadable message, never a
stopped server.
"""

from __future__ import annotations

import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import col, select

from newsletter.core.models import InboundMessage
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.send.inbound import InboundServer, inbound_server
from tests.inbound_support import nested_bomb, outcomes, report, sent_issue, status, verp
from tests.send_support import add_readers

Sent = dict[str, tuple[int, str]]


@pytest.fixture
def readers(store: Store) -> list[str]:
    return add_readers(store, 8)


@pytest.fixture
def sent(store: Store, readers: list[str]) -> Sent:
    return sent_issue(store, "2025-W24", readers)


@pytest.fixture
def server(settings: Settings, store: Store) -> Iterator[InboundServer]:
    settings.inbound.port = 0
    with inbound_server(settings, store) as running:
        yield running


def lmtp_send(server: InboundServer, rcpt: str, data: bytes) -> None:
    with smtplib.LMTP("127.0.0.1", server.port) as client:
        refused = client.sendmail("", [rcpt], data)
        assert refused == {}


def test_a_dsn_to_a_verp_address_bounces_its_reader_before_the_answer(
    server: InboundServer, store: Store, readers: list[str], sent: Sent
) -> None:
    lmtp_send(server, verp(sent[readers[1]][0]), report("dsn-permanent.eml", store, readers, sent))
    # no waiting: the 250 came after the commit
    assert status(store, readers[1]) == "bounced"
    assert outcomes(store) == ["bounced"]


def test_every_kind_of_message_in_one_session(
    server: InboundServer, store: Store, readers: list[str], sent: Sent
) -> None:
    messages = [
        ("dsn-delayed.eml", verp(sent[readers[2]][0])),  # soft: counted
        ("out-of-office.eml", verp(sent[readers[4]][0])),  # a vacation reply: ignored
        ("arf-complaint.eml", "bounces@example.org"),  # a complaint, found by its token
        ("mailto-unsubscribe.eml", "unsubscribe@example.org"),  # reader 4 leaves
        ("forged-dsn.eml", "bounces+7-aaaaaaaaaaaaa@example.org"),  # forged: nothing
        ("arf-by-address.eml", "bounces@example.org"),  # names an address, no token
        ("unsubscribe-no-token.eml", "unsubscribe@example.org"),  # no token: nothing
    ]
    with smtplib.LMTP("127.0.0.1", server.port) as client:
        for name, rcpt in messages:
            assert client.sendmail("", [rcpt], report(name, store, readers, sent)) == {}
        code, _ = client.noop()  # the session is still usable
        assert code == 250
    assert outcomes(store) == [
        "soft_bounce",
        "auto_reply",
        "complained",
        "unsubscribed",
        "unattributed",
        "unattributed",
        "unsigned",
    ]
    assert status(store, readers[6]) == "complained"
    assert status(store, readers[4]) == "unsubscribed"
    for untouched in (0, 2, 3, 5):
        assert status(store, readers[untouched]) == "confirmed"


def test_a_mime_bomb_is_recorded_unreadable_and_the_next_message_goes_on(
    server: InboundServer, store: Store, readers: list[str], sent: Sent
) -> None:
    with smtplib.LMTP("127.0.0.1", server.port) as client:
        assert client.sendmail("", ["bounces@example.org"], nested_bomb()) == {}
        dsn = report("dsn-permanent.eml", store, readers, sent)
        assert client.sendmail("", [verp(sent[readers[1]][0])], dsn) == {}
    with store.read() as session:
        rows = session.exec(select(InboundMessage).order_by(col(InboundMessage.id))).all()
    assert [r.outcome for r in rows] == ["unreadable", "bounced"]
    assert "nested" in rows[0].detail


def test_only_the_lists_addresses_are_taken(server: InboundServer) -> None:
    with (
        smtplib.LMTP("127.0.0.1", server.port) as client,
        pytest.raises(smtplib.SMTPRecipientsRefused) as refused,
    ):
        client.sendmail("", ["postmaster@example.org"], b"Subject: hi\r\n\r\nhello\r\n")
    ((code, reply),) = refused.value.recipients.values()
    assert code == 550 and b"Not a mailbox of this list" in reply


def test_lmtp_answers_once_per_recipient(
    server: InboundServer, store: Store, readers: list[str], sent: Sent
) -> None:
    """RFC 2033: after the data, one reply per accepted recipient (smtplib reads only one)."""
    data = report("dsn-permanent.eml", store, readers, sent)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        stream = sock.makefile("rwb")

        def say(line: bytes) -> bytes:
            stream.write(line + b"\r\n")
            stream.flush()
            return stream.readline()

        assert stream.readline().startswith(b"220")
        stream.write(b"LHLO mx.example.org\r\n")
        stream.flush()
        while not stream.readline().startswith(b"250 "):
            pass
        assert say(b"MAIL FROM:<>").startswith(b"250")
        assert say(b"RCPT TO:<" + verp(sent[readers[1]][0]).encode() + b">").startswith(b"250")
        assert say(b"RCPT TO:<bounces@example.org>").startswith(b"250")
        assert say(b"DATA").startswith(b"354")
        stream.write(data.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        stream.flush()
        assert [stream.readline(), stream.readline()] == [b"250 2.0.0 bounced\r\n"] * 2
        say(b"QUIT")
    assert outcomes(store) == ["bounced"]  # one message, recorded once


def test_a_database_that_cannot_be_written_gets_451_and_changes_nothing(
    server: InboundServer, store: Store, readers: list[str], sent: Sent
) -> None:
    with store.write() as session:
        session.connection().execute(text("DROP TABLE inbound_messages"))
    dsn = report("dsn-permanent.eml", store, readers, sent)
    with (
        smtplib.LMTP("127.0.0.1", server.port) as client,
        pytest.raises(smtplib.SMTPDataError) as failed,
    ):
        client.sendmail("", [verp(sent[readers[1]][0])], dsn)
    assert failed.value.smtp_code == 451  # the MTA keeps the message and tries again
    assert status(store, readers[1]) == "confirmed"  # the bounce was rolled back with it


def test_smtp_instead_of_lmtp(
    settings: Settings, store: Store, readers: list[str], sent: Sent
) -> None:
    settings.inbound.port = 0
    settings.inbound.protocol = "smtp"
    with (
        inbound_server(settings, store) as server,
        smtplib.SMTP("127.0.0.1", server.port) as client,
    ):
        unsubscribe = report("mailto-unsubscribe.eml", store, readers, sent)
        assert client.sendmail(readers[4], ["unsubscribe@example.org"], unsubscribe) == {}
    assert status(store, readers[4]) == "unsubscribed"
    with store.read() as session:
        (row,) = session.exec(select(InboundMessage)).all()
    assert row.source == "smtp" and row.sender == readers[4]


def test_the_command_prints_each_outcome_and_stops_on_a_signal(
    project: Path, environ: dict[str, str], store: Store, readers: list[str], sent: Sent
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLICE_")}
    env.update(environ)
    slice_exe = str(Path(sys.executable).parent / "slice")
    proc = subprocess.Popen(
        [slice_exe, "--config", str(project / "slice.toml"), "inbound", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stderr is not None and proc.stdout is not None
        banner = proc.stderr.readline().decode()
        match = re.search(
            r"Listening for LMTP on 127\.0\.0\.1:(\d+) for bounces@example\.org", banner
        )
        assert match, banner
        with smtplib.LMTP("127.0.0.1", int(match.group(1))) as client:
            client.sendmail(
                "", [verp(sent[readers[1]][0])], report("dsn-permanent.eml", store, readers, sent)
            )
            forged = report("forged-dsn.eml", store, readers, sent)
            client.sendmail("", ["bounces+7-aaaaaaaaaaaaa@example.org"], forged)
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0
    first, second = stdout.decode().splitlines()
    assert first.startswith(f"bounced {readers[1]}: bounce report (to bounces+"), first
    assert second.startswith(f"unattributed: a bounce naming {readers[0]} without a valid token")
    # the forged report is counted with the rest when the command stops
    assert stderr.decode().splitlines()[-1] == (
        "Stopped after 2 messages: 1 bounced, 1 unattributed."
    )


def test_an_unsubscribe_email_marked_auto_submitted_still_unsubscribes(
    server: InboundServer, store: Store, readers: list[str], sent: Sent
) -> None:
    """A mail provider's own unsubscribe email may say Auto-Submitted; its token decides."""
    data = report("mailto-unsubscribe.eml", store, readers, sent).replace(
        b"MIME-Version: 1.0", b"Auto-Submitted: auto-generated\r\nMIME-Version: 1.0", 1
    )
    lmtp_send(server, "unsubscribe@example.org", data)
    assert status(store, readers[4]) == "unsubscribed"
    vacation = report("out-of-office.eml", store, readers, sent).replace(
        b"Subject: Out of office:", b"Subject: Out of office: unsubscribe", 1
    )
    lmtp_send(server, "unsubscribe@example.org", vacation)
    assert outcomes(store) == ["unsubscribed", "auto_reply"]
