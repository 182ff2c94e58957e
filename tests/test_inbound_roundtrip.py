"""What `slice send` puts in its messages is what `slice inbound` acts on.

An issue is sent to readers through a real SMTP server; a bounce then comes back
to the envelope sender one message carried, and another reader's mail program
answers the ``mailto:`` of its List-Unsubscribe header, both over LMTP. No token
is made by the test: each is read from the bytes the readers got, the welcome
email's included.
"""

from __future__ import annotations

import asyncio
import random
import re
import smtplib
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from newsletter.core.config import load_settings
from newsletter.core.store import Store
from newsletter.send.inbound import inbound_server
from newsletter.send.service import SendOptions, send_issue
from tests.conftest import TEST_SECRET
from tests.inbound_support import REPORTS, outcomes, status
from tests.mail_samples import capture_all, sample_settings
from tests.send_support import ISSUE, add_readers, parse, write_issue
from tests.support.smtpd import RecordingSMTPServer


def mailto_request(data: bytes, sender: str) -> tuple[str, bytes]:
    """What a mail program sends for the List-Unsubscribe mailto: of a message."""
    header = str(parse(data)["List-Unsubscribe"])
    mailto = urlsplit(re.findall(r"<(mailto:[^>]+)>", header)[0])
    subject = parse_qs(mailto.query)["subject"][0]
    to = unquote(mailto.path)
    request = (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        "Message-ID: <req2@mail.example.com>\r\n\r\nSent by your mail app.\r\n"
    )
    return to, request.encode()


def test_a_bounce_to_the_envelope_sender_and_a_mailto_unsubscribe_act_on_their_readers(
    project: Path, smtp_environ: dict[str, str], smtp_server: RecordingSMTPServer
) -> None:
    settings = load_settings(
        config=project / "slice.toml",
        environ={**smtp_environ, "SLICE_BASE_URL": "https://weekly.example.org"},
    )
    settings.inbound.port = 0
    with Store.open(settings.database_url) as store:
        write_issue(settings, store, papers=2)
        readers = add_readers(store, 3)
        options = SendOptions(rate=0, concurrency=1)
        asyncio.run(send_issue(settings, store, ISSUE, options=options, rng=random.Random(0)))
        got = {m.rcpt_tos[0]: m for m in smtp_server.messages}

        # reader 0's mailbox does not exist: the receiving MTA bounces to the Return-Path
        return_path = got[readers[0]].mail_from
        assert re.fullmatch(r"bounces\+\d+-[a-z2-7]{13}@example\.org", return_path)
        message_id = str(parse(got[readers[0]].data)["Message-ID"])
        dsn = (REPORTS / "dsn-permanent.eml").read_text()
        dsn = dsn.replace("bounces+{VERP1}@example.org", return_path)
        dsn = dsn.replace("reader000001@example.com", readers[0]).replace("{MSGID1}", message_id)

        # reader 1 presses "unsubscribe" in a mail program that uses the mailto: link
        to, request = mailto_request(got[readers[1]].data, readers[1])

        with (
            inbound_server(settings, store) as server,
            smtplib.LMTP("127.0.0.1", server.port) as client,
        ):
            crlf = dsn.replace("\r\n", "\n").replace("\n", "\r\n").encode()
            assert client.sendmail("", [return_path], crlf) == {}
            assert client.sendmail(readers[1], [to], request) == {}
        assert outcomes(store) == ["bounced", "unsubscribed"]
        assert [status(store, r) for r in readers] == ["bounced", "unsubscribed", "confirmed"]


def test_the_welcome_emails_mailto_unsubscribes_its_reader(tmp_path: Path) -> None:
    with RecordingSMTPServer() as relay:
        settings = sample_settings(tmp_path / "p", {"SLICE_SECRET_KEY": TEST_SECRET}, relay)
        settings.inbound.port = 0
        with Store.open(settings.database_url) as store:
            welcome = capture_all(settings, store, relay)["welcome"]
            to, request = mailto_request(welcome, "grace@example.com")
            with (
                inbound_server(settings, store) as server,
                smtplib.LMTP("127.0.0.1", server.port) as client,
            ):
                assert client.sendmail("grace@example.com", [to], request) == {}
            assert status(store, "grace@example.com") == "unsubscribed"
            assert status(store, "ada@example.com") == "confirmed"
