"""DATA in wire form: the fast path and its fallback put the same bytes on the wire.

The fast path writes pre-stuffed bytes through aiosmtplib's protocol object; if a
future aiosmtplib changes those internals, the sender falls back to `SMTP.data`.
Both must deliver exactly the same message, leading dots included.
"""

from __future__ import annotations

import asyncio

import aiosmtplib

from newsletter.send.deliver import RelayConnection, _data_as_is
from newsletter.send.encoding import dot_stuff
from tests.support.smtpd import RecordingSMTPServer

MESSAGE = (
    b"From: a@example.org\r\nTo: b@example.org\r\nSubject: dots\r\n\r\n"
    b".a line that starts with a dot\r\n"
    b"..two dots\r\n"
    b"middle . dot\r\n"
    b".\r\n"
    b"end\r\n"
)


def _send(port: int, *, fallback: bool) -> None:
    async def go() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        async with client:
            await client.mail("a@example.org")
            await client.rcpt("b@example.org")
            if fallback:  # what a protocol without the expected internals looks like
                assert client.protocol is not None
                del client.protocol._response_pending
            response = await _data_as_is(client, dot_stuff(MESSAGE))
            assert response.code == 250

    asyncio.run(go())


def test_fast_path_and_fallback_deliver_the_same_bytes(smtp_server: RecordingSMTPServer) -> None:
    _send(smtp_server.port, fallback=False)
    _send(smtp_server.port, fallback=True)
    smtp_server.wait_for(2)
    fast, slow = (m.data for m in smtp_server.messages)
    assert fast == slow
    assert b"\r\n.a line that starts with a dot\r\n..two dots\r\n" in fast
    assert b"\r\n.\r\nend\r\n" in fast


def test_the_installed_aiosmtplib_takes_the_fast_path(smtp_server: RecordingSMTPServer) -> None:
    """With the aiosmtplib that pyproject pins, a send writes DATA itself (no fallback)."""

    async def go() -> int:
        connection = RelayConnection(
            lambda: aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_server.port, start_tls=False),
            where="test relay",
        )
        try:
            answer = await connection.send(
                "a@example.org", "b@example.org", dot_stuff(MESSAGE), wire=True
            )
        finally:
            await connection.close()
        assert answer.kind == "sent"
        return connection.fast_data

    assert asyncio.run(go()) == 1
    smtp_server.wait_for(1)
    assert smtp_server.messages[0].data.endswith(b"\r\n.\r\nend\r\n")
