"""A real SMTP peer for tests: aiosmtpd on 127.0.0.1, port 0, that records and can misbehave.

Faults are set per recipient or for the next N messages:

    server.rcpt_replies["bob@example.org"] = "550 5.1.1 No such user"
    server.data_replies.append("451 4.3.0 Try again later")   # next DATA only
    server.drop_next_data = 1      # close the connection mid-DATA, once
    server.delay = 0.5             # answer DATA slowly
    server.refuse_all = "421 4.7.0 Go away"
    server.rcpt_delay = 0.02       # every RCPT answers after 20 ms, as a busy relay does
    server.rcpt_waiting            # how many RCPTs that delay holds right now
    server.greylist.add("carol@example.org")       # 451 at RCPT the first time only
    server.drop_after_data.add("dan@example.org")  # takes the body, then hangs up, once
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from newsletter.send.devsmtp import MailSink, SmtpServerThread


@dataclass
class FaultySink(MailSink):
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_replies: list[str] = field(default_factory=list)
    drop_next_data: int = 0
    delay: float = 0.0
    refuse_all: str | None = None
    rcpt_delay: float = 0.0
    greylist: set[str] = field(default_factory=set)
    drop_after_data: set[str] = field(default_factory=set)
    connections: int = 0
    attempts: list[list[str]] = field(default_factory=list)
    mail_times: list[float] = field(default_factory=list)  # time.monotonic() of each MAIL
    rcpt_waiting: int = 0  # RCPTs held by rcpt_delay right now

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        self.connections += 1
        return responses

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        self.mail_times.append(time.monotonic())
        if self.refuse_all:
            return self.refuse_all
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        _rcpt_options: list[str],
    ) -> str:
        if self.rcpt_delay:
            self.rcpt_waiting += 1
            try:
                await asyncio.sleep(self.rcpt_delay)
            finally:
                self.rcpt_waiting -= 1
        reply = self.rcpt_replies.get(address.lower())
        if reply:
            return reply
        if address.lower() in self.greylist:
            self.greylist.discard(address.lower())
            return "451 4.7.1 Greylisted, try again in a moment"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.attempts.append([str(r) for r in envelope.rcpt_tos])
        if self.delay:
            await asyncio.sleep(self.delay)
        dropped = {str(r).lower() for r in envelope.rcpt_tos} & self.drop_after_data
        if self.drop_next_data > 0 or dropped:
            if dropped:
                self.drop_after_data -= dropped
            else:
                self.drop_next_data -= 1
            assert server.transport is not None
            server.transport.close()
            return "421 4.4.2 Connection dropped"
        if self.data_replies:
            return self.data_replies.pop(0)
        return await super().handle_DATA(server, session, envelope)


class RecordingSMTPServer(SmtpServerThread):
    handler: FaultySink

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(FaultySink(), **kwargs)

    def __getattr__(self, name: str) -> Any:  # faults and records live on the handler
        return getattr(self.__dict__["handler"], name)

    def __setattr__(self, name: str, value: Any) -> None:
        handler = self.__dict__.get("handler")
        if handler is not None and name in handler.__dataclass_fields__:
            setattr(handler, name, value)
        else:
            super().__setattr__(name, value)

    @property
    def messages(self) -> list[Any]:
        return self.handler.messages

    def parsed(self) -> list[EmailMessage]:
        return [
            email.message_from_bytes(m.data, policy=email.policy.default)  # type: ignore[misc]
            for m in self.handler.messages
        ]

    def wait_for(self, count: int, timeout: float = 5.0) -> None:
        end = time.monotonic() + timeout
        while len(self.handler.messages) < count and time.monotonic() < end:
            time.sleep(0.01)
        assert len(self.handler.messages) >= count, (
            f"got {len(self.handler.messages)} of {count} messages"
        )
