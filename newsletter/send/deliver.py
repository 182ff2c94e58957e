"""Talking to the relay: reused connections, and what each answer means for the reader.

A `RelayConnection` keeps one aiosmtplib connection open across messages and
opens it again when it drops. `RelayConnection.send` never raises for an answer
about one message; it returns an `Answer`, classified by `classify`:

- ``sent``     2xx after DATA
- ``soft``     a 4xx about this message, a timeout, or a dropped connection: retry later
- ``hard``     a 5xx about the address (at RCPT, or 5.1.x / 5.2.x at DATA): failed, suppressed
- ``reject``   a 5xx about the message (5.3.x, 5.6.x, 5.7.x at DATA): failed, address kept
- ``relay``    the relay refuses the sender or the session (MAIL refused, 421, cannot
               connect): not this reader's fault; the row goes back untried

A setting to fix (a refused login, an untrusted certificate, a TLS mode the relay
does not speak; see `newsletter.send.smtp.setup_problem`) raises `RelayRefusedError` at
once: no message can go.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import aiosmtplib

from newsletter.core.errors import RelayRefusedError
from newsletter.send.smtp import answer_line, setup_problem

Kind = Literal["sent", "soft", "hard", "reject", "relay"]
SmtpFactory = Callable[[], aiosmtplib.SMTP]

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True)
class Answer:
    """The relay's answer to one message."""

    kind: Kind
    code: int | None
    text: str
    stage: str  # connect, mail, rcpt, data

    def describe(self) -> str:
        code = f"{self.code} " if self.code else ""
        return f"{code}{self.text}".strip() or self.stage


def classify_data_5xx(text: str) -> Kind:
    """A 5xx after DATA: about the address (hard) or about the message (reject)?"""
    match = _ENHANCED.match(text)
    if match and match.group(2) in ("3", "6", "7"):
        return "reject"
    return "hard"


def classify(exc: BaseException, stage: str) -> Answer:
    """What an exception from aiosmtplib means for the message being sent."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        code, text = exc.code, answer_line(exc.message)
        if code == 421 or isinstance(exc, aiosmtplib.SMTPSenderRefused | aiosmtplib.SMTPHeloError):
            return Answer("relay", code, text, stage)
        if isinstance(exc, aiosmtplib.SMTPConnectResponseError):
            return Answer("relay", code, text, "connect")
        if 400 <= code < 500:
            return Answer("soft", code, text, stage)
        if 500 <= code < 600:
            if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
                return Answer("hard", code, text, stage)
            return Answer(classify_data_5xx(text), code, text, stage)
        return Answer("soft", code, text, stage)  # an answer no RFC allows: try again later
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return Answer("soft", None, f"timed out waiting for the relay ({stage})", stage)
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | ConnectionError):
        return Answer("soft", None, f"the relay closed the connection ({stage})", stage)
    return Answer("soft", None, answer_line(f"{exc.__class__.__name__}: {exc}"), stage)


def fast_data_ready(client: aiosmtplib.SMTP) -> bool:
    """Whether `_data_as_is` can write DATA itself on this connected client.

    It uses two internals of aiosmtplib's protocol (the command lock and the
    response flag), as in the 5.1 series that pyproject pins; with anything
    else it falls back to `SMTP.data`, correct but slower.
    """
    protocol = client.protocol
    return (
        protocol is not None
        and getattr(protocol, "_command_lock", None) is not None
        and hasattr(protocol, "_response_pending")
    )


async def _data_as_is(client: aiosmtplib.SMTP, data: bytes) -> aiosmtplib.SMTPResponse:
    """DATA for bytes already in wire form.

    aiosmtplib's `SMTP.data` normalizes line ends and dot-stuffs every message
    with two regular expressions (about 0.5 ms for a 44 KB issue, more than a
    third of the client's time per message). An issue's messages are encoded in
    wire form once (`newsletter.send.encoding.dot_stuff`), so this writes them as
    they are, through the same protocol object and lock as `SMTP.data`. With a
    protocol that does not look as expected it falls back to `SMTP.data`.
    """
    if not fast_data_ready(client):
        return await client.data(_unstuff(data))
    protocol = client.protocol
    assert protocol is not None
    lock = protocol._command_lock
    assert lock is not None
    timeout = client.timeout
    try:
        async with lock:
            protocol._response_pending = True
            protocol.write(b"DATA\r\n")
            start = await protocol.read_response(timeout=timeout)
            if start.code != 354:
                raise aiosmtplib.SMTPDataError(start.code, start.message)
            protocol._response_pending = True
            protocol.write(data + b".\r\n")  # one write (one send() call), not two
            response = await protocol.read_response(timeout=timeout)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        client.close()
        raise
    if response.code != 250:
        raise aiosmtplib.SMTPDataError(response.code, response.message)
    return response


# An address aiosmtplib's quoting (email.utils.parseaddr) returns as it is: an ASCII
# dot-atom local part and a domain. Such an address is written as <address> directly;
# anything else (quoted local parts, UTF-8) goes through `SMTP.mail` / `SMTP.rcpt`.
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\Z"
)


async def _mail(client: aiosmtplib.SMTP, sender: str, options: list[str], encoding: str) -> None:
    """MAIL FROM, as `SMTP.mail` sends it, without parsing a plain address for every message."""
    if client.last_ehlo_response is None or not _PLAIN_ADDRESS.match(sender):
        await client.mail(sender, options=options, encoding=encoding)
        return
    args = [o.encode("ascii") for o in options]
    response = await client.execute_command(b"MAIL", b"FROM:<" + sender.encode() + b">", *args)
    if response.code != 250:
        raise aiosmtplib.SMTPSenderRefused(response.code, response.message, sender)


async def _rcpt(client: aiosmtplib.SMTP, recipient: str, encoding: str) -> None:
    """RCPT TO, as `SMTP.rcpt` sends it (see `_mail`)."""
    if client.last_ehlo_response is None or not _PLAIN_ADDRESS.match(recipient):
        await client.rcpt(recipient, encoding=encoding)
        return
    response = await client.execute_command(b"RCPT", b"TO:<" + recipient.encode() + b">")
    if response.code not in (250, 251):
        raise aiosmtplib.SMTPRecipientRefused(response.code, response.message, recipient)


def _unstuff(data: bytes) -> bytes:
    undone = data.replace(b"\r\n..", b"\r\n.")
    return undone[1:] if undone.startswith(b"..") else undone


class RelayConnection:
    """One SMTP connection, reused for many messages and reopened when it drops."""

    def __init__(self, factory: SmtpFactory, *, where: str) -> None:
        self._factory = factory
        self._client: aiosmtplib.SMTP | None = None
        self.where = where
        self.opened = 0
        self.fast_data = 0  # messages written by `_data_as_is` itself (not the fallback)

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    async def _connect(self) -> Answer | None:
        """Open the connection if needed; an Answer when the relay cannot be used."""
        if self.connected:
            return None
        await self.close()
        client = self._factory()
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            problem = setup_problem(exc, self.where)
            if problem is not None:  # a setting to fix: no message can go, stop at once
                raise RelayRefusedError(f"{problem}.") from None
            if isinstance(exc, aiosmtplib.SMTPResponseException):
                return Answer("relay", exc.code, answer_line(exc.message), "connect")
            return Answer("relay", None, answer_line(str(exc)) or "cannot connect", "connect")
        self._client = client
        self.opened += 1
        return None

    async def send(self, sender: str, recipient: str, data: bytes, *, wire: bool = False) -> Answer:
        """Send one message to one recipient; the answer, whatever it is.

        ``wire=True`` says ``data`` is already in DATA form (CRLF line ends, dot-stuffed,
        ending in CRLF), as `IssueMessage.render_wire` makes it.
        """
        problem = await self._connect()
        if problem is not None:
            return problem
        client = self._client
        assert client is not None
        utf8 = not recipient.isascii()
        options = []
        if client.supports_extension("size"):
            options.append(f"SIZE={len(data)}")
        if utf8:
            if not client.supports_extension("smtputf8"):
                return Answer(
                    "reject",
                    None,
                    "the relay does not accept international addresses (SMTPUTF8)",
                    "mail",
                )
            options.append("SMTPUTF8")
        encoding = "utf-8" if utf8 else "ascii"
        stage = "mail"
        try:
            await _mail(client, sender, options, encoding)
            stage = "rcpt"
            await _rcpt(client, recipient, encoding)
            stage = "data"
            if wire:
                self.fast_data += fast_data_ready(client)
                response = await _data_as_is(client, data)
            else:
                response = await client.data(data)
        except aiosmtplib.SMTPResponseException as exc:
            answer = classify(exc, stage)
            await self._reset(answer)
            return answer
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await self.close()
            return classify(exc, stage)
        return Answer("sent", response.code, answer_line(response.message), "data")

    async def _reset(self, answer: Answer) -> None:
        """After a refused step, clear the envelope (or drop a connection the relay is closing)."""
        if answer.code == 421 or self._client is None:
            await self.close()
            return
        try:
            await self._client.rset()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            await self.close()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None or not client.is_connected:
            return
        try:
            await client.quit(timeout=2)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            client.close()
