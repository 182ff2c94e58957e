"""`slice inbound` when things go wrong: a locked database, and messages no parser should trust.

A message the database cannot take now is answered 451, so the MTA keeps it and
tries again, and whoever watches the command is told why; once the lock is gone
the same message gets 250 with its outcome on disk. A malformed message is one
``unreadable`` row with a reason a person can read, never a stopped session and
never a traceback on the terminal.
"""

from __future__ import annotations

import os
import re
import signal
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.smtp import Envelope
from sqlmodel import col, select

from newsletter.core.models import InboundMessage
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.send.inbound import inbound_server
from tests.inbound_support import nested_bomb, outcomes, report, sent_issue, status, verp
from tests.send_support import add_readers
from tests.support.sqlitelock import locked

Sent = dict[str, tuple[int, str]]
HEAD = (
    b"From: someone@example.net\r\nTo: bounces@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
)


@pytest.fixture
def quick_store(settings: Settings, store: Store) -> Iterator[Store]:
    """The project's database (migrated), giving up on a lock after 0.3 s instead of 30."""
    with Store.open(settings.database_url, busy_timeout_ms=50, busy_seconds=0.3) as opened:
        yield opened


@pytest.fixture
def readers(store: Store) -> list[str]:
    return add_readers(store, 8)


@pytest.fixture
def sent(store: Store, readers: list[str]) -> Sent:
    return sent_issue(store, "2025-W24", readers)


def test_a_locked_database_gets_451_and_the_same_message_250_once_it_is_free(
    settings: Settings, quick_store: Store, readers: list[str], sent: Sent
) -> None:
    settings.inbound.port = 0
    told: list[str] = []

    def retry(reason: str, envelope: Envelope) -> None:
        told.append(reason)

    dsn = report("dsn-permanent.eml", quick_store, readers, sent)
    rcpt = verp(sent[readers[1]][0])
    with inbound_server(settings, quick_store, on_retry=retry) as server:
        with (
            locked(quick_store),
            smtplib.LMTP("127.0.0.1", server.port) as client,
            pytest.raises(smtplib.SMTPDataError) as failed,
        ):
            client.sendmail("", [rcpt], dsn)
        assert failed.value.smtp_code == 451  # not 250: the MTA keeps the message
        assert status(quick_store, readers[1]) == "confirmed" and outcomes(quick_store) == []
        assert len(told) == 1 and told[0].startswith("the database is busy"), told
        with smtplib.LMTP("127.0.0.1", server.port) as client:  # the MTA's next try
            assert client.sendmail("", [rcpt], dsn) == {}
    assert status(quick_store, readers[1]) == "bounced"
    assert outcomes(quick_store) == ["bounced"]  # recorded once, by the try that got 250


def test_the_command_says_why_it_answered_451(
    project: Path, environ: dict[str, str], store: Store, readers: list[str], sent: Sent
) -> None:
    config = project / "slice.toml"
    quick = "[database]\nbusy_timeout_ms = 50\nbusy_retry_seconds = 0.3\n"
    config.write_text(config.read_text().replace("[database]\n", quick, 1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLICE_")}
    env.update(environ)
    slice_exe = str(Path(sys.executable).parent / "slice")
    proc = subprocess.Popen(
        [slice_exe, "--config", str(config), "inbound", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    rcpt = verp(sent[readers[1]][0])
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline().decode()
        match = re.search(r"Listening for LMTP on 127\.0\.0\.1:(\d+)", banner)
        assert match, banner
        with (
            locked(store),
            smtplib.LMTP("127.0.0.1", int(match.group(1))) as client,
            pytest.raises(smtplib.SMTPDataError),
        ):
            client.sendmail("", [rcpt], report("dsn-permanent.eml", store, readers, sent))
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=20)
    lines = stderr.decode().splitlines()
    assert lines[0].startswith(
        "Not recorded, answered 451 so the mail server keeps it and tries again "
        f"(to {rcpt}): the database is busy"
    ), lines
    assert lines[1:] == ["Stopped after 1 message: 1 answered 451 (the mail server tries again)."]
    assert stdout == b""  # no outcome line: nothing happened
    assert status(store, readers[1]) == "confirmed"


def _rfc822_chain(depth: int) -> bytes:
    """A message that quotes a message that quotes a message... ``depth`` times."""
    return HEAD + b"Content-Type: message/rfc822\r\n\r\n" * depth + b"Subject: in\r\n\r\nboom\r\n"


def _wide(parts: int) -> bytes:
    body = b"".join(b"--w\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(parts))
    return HEAD + b'Content-Type: multipart/mixed; boundary="w"\r\n\r\n' + body + b"--w--\r\n"


def _bounce_quoting(inner: bytes) -> bytes:
    """A well-formed delivery report whose quoted message is the bomb."""
    return (
        HEAD.replace(b"Subject: x", b"Subject: Undelivered Mail Returned to Sender")
        + b'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\r\n\r\n'
        b"--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net"
        b"\r\n\r\nFinal-Recipient: rfc822; reader000001@example.com\r\nAction: failed\r\n"
        b"Status: 5.1.1\r\n\r\n--r\r\nContent-Type: message/rfc822\r\n\r\n"
        + inner
        + b"\r\n--r--\r\n"
    )


def _garbage() -> bytes:
    """Bytes that are no mail at all, in lines short enough for SMTP."""
    noise = bytes(b for b in range(256) if b not in (10, 13))
    return b"\r\n".join(noise[i : i + 60] for i in range(0, len(noise), 60)) * 20


BOMBS = {
    "3000 nested multiparts": (nested_bomb(), "nested"),
    "30 nested multiparts": (nested_bomb(30), "nested more than 12 deep"),
    "3000 quoted messages": (_rfc822_chain(3000), "nested"),
    "5000 parts side by side": (_wide(5000), "more than 200 MIME parts"),
    "a bounce quoting a bomb": (_bounce_quoting(nested_bomb()), "nested"),
    "bytes that are no mail": (_garbage(), "could not read it"),
}


def test_each_bomb_is_one_unreadable_row_and_the_session_goes_on(
    settings: Settings,
    store: Store,
    readers: list[str],
    sent: Sent,
    capfd: pytest.CaptureFixture[str],
) -> None:
    settings.inbound.port = 0
    dsn = report("dsn-permanent.eml", store, readers, sent)
    with (
        inbound_server(settings, store) as server,
        smtplib.LMTP("127.0.0.1", server.port) as client,
    ):
        for data, _ in BOMBS.values():
            assert client.sendmail("", ["bounces@example.org"], data) == {}
        assert client.sendmail("", [verp(sent[readers[1]][0])], dsn) == {}
    with store.read() as session:
        rows = session.exec(select(InboundMessage).order_by(col(InboundMessage.id))).all()
    assert [r.outcome for r in rows] == ["unreadable"] * len(BOMBS) + ["bounced"]
    for (name, (_, why)), row in zip(BOMBS.items(), rows, strict=False):
        assert why in row.detail and "\n" not in row.detail, (name, row.detail)
    assert status(store, readers[1]) == "bounced"
    assert "Traceback" not in capfd.readouterr().err  # a library's log, not the operator's
