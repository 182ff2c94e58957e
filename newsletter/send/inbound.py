"""`slice inbound`: an LMTP (or SMTP) server the MTA hands bounces and unsubscribe mail to.

Postfix delivers the list's bounce address (``bounces+*@``) and unsubscribe
address to it over LMTP (docs/inbound.md has the lines). Each message is
classified and its outcome committed (`newsletter.readers.bounces.Inbound`)
before the server answers ``250``; when the database cannot be written it
answers ``451``, so the MTA keeps the message and tries again: nothing is lost.

Only the list's own addresses are accepted as recipients; others get ``550``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from newsletter.core.errors import error_line
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.readers.addresses import sender_domain, unsubscribe_mailto
from newsletter.readers.bounces import Inbound, Result
from newsletter.readers.tokens import Tokens
from newsletter.send.devsmtp import SmtpServerThread


def address_matcher(addresses: list[str]) -> Callable[[str], bool]:
    """Whether an envelope recipient is one of ``addresses``, with any ``+detail``."""
    wanted = {a.strip().lower() for a in addresses if a}

    def matches(address: str) -> bool:
        local, _, domain = address.strip().lower().rpartition("@")
        return f"{local}@{domain}" in wanted or f"{local.split('+', 1)[0]}@{domain}" in wanted

    return matches


class InboundHandler:
    """The aiosmtpd handler: one outcome per message, committed before the answer."""

    def __init__(
        self,
        inbound: Inbound,
        *,
        source: str,
        accepts: Callable[[str], bool],
        on_result: Callable[[Result, Envelope], None] | None = None,
        on_retry: Callable[[str, Envelope], None] | None = None,
    ) -> None:
        self.inbound = inbound
        self.source = source
        self.accepts = accepts
        self.on_result = on_result
        self.on_retry = on_retry  # told why a message got 451 (the MTA keeps it)
        # one writer: SQLite takes one write at a time anyway, and the order is kept
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slice-inbound")

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        _rcpt_options: list[str],
    ) -> str:
        if not self.accepts(address):
            return "550 5.1.1 Not a mailbox of this list"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        recipients = [str(r) for r in envelope.rcpt_tos]
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(
                self._executor,
                lambda: self.inbound.process(data, source=self.source, recipients=recipients),
            )
        except Exception as exc:  # the database: the MTA keeps the message and retries
            reply = "451 4.3.0 Could not record the message; try again later"
            if self.on_retry is not None:
                self.on_retry(error_line(exc), envelope)
        else:
            reply = f"250 2.0.0 {result.outcome.value}"
            if self.on_result is not None:
                self.on_result(result, envelope)
        # LMTP answers once per recipient (RFC 2033); SMTP once per message
        count = len(recipients) if isinstance(server, LMTP) else 1
        return "\r\n".join([reply] * max(count, 1))

    def close(self) -> None:
        self._executor.shutdown(wait=True)


class InboundServer(SmtpServerThread):
    """An LMTP or SMTP server for `InboundHandler`, in a background thread."""

    def __init__(self, handler: InboundHandler, *, lmtp: bool = True, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.lmtp = lmtp

    def _factory(self) -> SMTP:
        kind = LMTP if self.lmtp else SMTP
        return kind(self.handler, hostname="slice-inbound", **self._smtp_kwargs)

    def stop(self) -> None:
        super().stop()
        self.handler.close()


def list_addresses(settings: Settings) -> list[str]:
    """The addresses mail comes back to: the bounce address and the unsubscribe address."""
    domain = sender_domain(settings)
    return [
        settings.inbound.bounce_address or f"bounces@{domain}",
        unsubscribe_mailto(settings),
    ]


def inbound_processor(settings: Settings, store: Store) -> Inbound:
    return Inbound(
        store,
        Tokens(settings.require_secret_key()),
        soft_bounce_limit=settings.inbound.soft_bounce_limit,
    )


def inbound_server(
    settings: Settings,
    store: Store,
    *,
    on_result: Callable[[Result, Envelope], None] | None = None,
    on_retry: Callable[[str, Envelope], None] | None = None,
) -> InboundServer:
    """The server the settings describe (not started)."""
    conf = settings.inbound
    lmtp = conf.protocol == "lmtp"
    handler = InboundHandler(
        inbound_processor(settings, store),
        source=conf.protocol,
        accepts=address_matcher(list_addresses(settings)),
        on_result=on_result,
        on_retry=on_retry,
    )
    return InboundServer(
        handler,
        lmtp=lmtp,
        host=conf.host,
        port=conf.port,
        smtp_kwargs={"data_size_limit": conf.max_message_bytes},
    )
