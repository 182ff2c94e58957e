"""The test peers themselves: the SMTP server really fails when told to, the HTTP server replays."""

from __future__ import annotations

import asyncio

import aiosmtplib
import httpx
import pytest

from tests.support.httpserver import ReplayServer
from tests.support.smtpd import RecordingSMTPServer

MSG = "From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n"


def send(port: int, rcpts: list[str]) -> tuple[dict[str, tuple[int, str]], str]:
    async def go() -> tuple[dict[str, tuple[int, str]], str]:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) as smtp:
            errors, reply = await smtp.sendmail("a@example.org", rcpts, MSG)
            return {k: (v.code, v.message) for k, v in errors.items()}, reply

    return asyncio.run(go())


def test_records_messages(smtp_server: RecordingSMTPServer) -> None:
    send(smtp_server.port, ["b@example.org"])
    assert len(smtp_server.messages) == 1
    assert smtp_server.parsed()[0]["Subject"] == "hi"


def test_rcpt_faults(smtp_server: RecordingSMTPServer) -> None:
    smtp_server.rcpt_replies["bad@example.org"] = "550 5.1.1 No such user"
    errors, _ = send(smtp_server.port, ["bad@example.org", "ok@example.org"])
    assert errors["bad@example.org"][0] == 550
    assert smtp_server.messages[0].rcpt_tos == ["ok@example.org"]


def test_data_faults_and_drops(smtp_server: RecordingSMTPServer) -> None:
    smtp_server.data_replies.append("451 4.3.0 Try later")
    with pytest.raises(aiosmtplib.SMTPDataError) as info:
        send(smtp_server.port, ["b@example.org"])
    assert info.value.code == 451
    smtp_server.drop_next_data = 1
    with pytest.raises(aiosmtplib.SMTPException):
        send(smtp_server.port, ["b@example.org"])
    send(smtp_server.port, ["b@example.org"])
    assert len(smtp_server.messages) == 1


def test_replay_server_serves_in_order(replay_server: ReplayServer) -> None:
    replay_server.add("/x", status=429, headers={"Retry-After": "1"})
    replay_server.add("/x", "<ok/>", content_type="application/xml")
    with httpx.Client(base_url=replay_server.url) as client:
        assert client.get("/x").status_code == 429
        assert client.get("/x", params={"q": "a"}).text == "<ok/>"
        assert client.get("/x").text == "<ok/>"
        assert client.get("/missing").status_code == 404
    assert replay_server.requests[1].query == {"q": ["a"]}
