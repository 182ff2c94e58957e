"""A local SMTP sink (aiosmtpd): keeps every message it receives.

`slice dev-smtp` and `slice demo` use it so an editor can try a send end to
end; the test suite uses it (with faults added) as a real SMTP peer.
"""

from __future__ import annotations

import asyncio
import re
import ssl as ssl_
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    """One message as the sink received it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    received_at: datetime
    path: Path | None = None


@dataclass
class MailSink:
    """An aiosmtpd handler that keeps messages in memory and, optionally, as .eml files."""

    folder: Path | None = None
    on_message: Callable[[Received], None] | None = None
    messages: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _count: int = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        if isinstance(envelope.content, bytes) and not data:
            data = envelope.content
        item = Received(
            mail_from=str(envelope.mail_from),
            rcpt_tos=[str(r) for r in envelope.rcpt_tos],
            data=data,
            received_at=datetime.now(UTC),
        )
        with self._lock:
            self._count += 1
            count = self._count
            if self.folder is not None:
                self.folder.mkdir(parents=True, exist_ok=True)
                stamp = item.received_at.strftime("%Y%m%dT%H%M%S")
                rcpt = re.sub(
                    r"[^A-Za-z0-9@._-]", "_", item.rcpt_tos[0] if item.rcpt_tos else "nobody"
                )
                item.path = self.folder / f"{stamp}-{count:05d}-{rcpt}.eml"
                item.path.write_bytes(data)
            self.messages.append(item)
        if self.on_message is not None:
            self.on_message(item)
        return "250 2.0.0 Message accepted"


class SmtpServerThread:
    """Runs an aiosmtpd server on 127.0.0.1 in a background thread.

    ``port=0`` picks a free port; read it back from ``.port`` once started.
    ``ssl`` makes it an implicit-TLS server (TLS from the first byte, as on port
    465); STARTTLS, AUTH and their requirements go to aiosmtpd's `SMTP` through
    ``smtp_kwargs`` (``tls_context``, ``require_starttls``, ``authenticator``,
    ``auth_required``, ``auth_require_tls``).
    """

    def __init__(
        self,
        handler: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        smtp_kwargs: dict[str, Any] | None = None,
        ssl: ssl_.SSLContext | None = None,
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.ssl = ssl
        self._smtp_kwargs = {"data_size_limit": 50 * 1024 * 1024, **(smtp_kwargs or {})}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def _factory(self) -> SMTP:
        return SMTP(self.handler, hostname="slice-dev-smtp", **self._smtp_kwargs)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(
                loop.create_server(self._factory, host=self.host, port=self.port, ssl=self.ssl)
            )
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="slice-smtp", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
