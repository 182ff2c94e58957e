"""Transactional emails (confirmation, welcome) through the configured relay.

`SmtpMailer` is the `newsletter.readers.mail.Mailer` that `slice serve` and the
subscriber commands use: a batch shares one connection, a refused message does
not stop the rest, and every message is DKIM-signed when a key is configured.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from email.message import EmailMessage
from email.policy import SMTP

import aiosmtplib

from newsletter.core.config import Settings
from newsletter.send.dkim import DkimSigner, canonical_whole_body
from newsletter.send.smtp import setup_problem, smtp_client

# Headers are folded at RFC 5322's hard limit, not at 78: a List-Unsubscribe URL is
# one long word, and folding it at 78 would turn it into an unreadable encoded-word.
WIRE_POLICY = SMTP.clone(max_line_length=998)


def wire_bytes(message: EmailMessage) -> bytes:
    return message.as_bytes(policy=WIRE_POLICY)


def dkim_signed(signer: DkimSigner, data: bytes, *, timestamp: int) -> bytes:
    """``data`` (a whole message, CRLF lines) with a DKIM-Signature header in front."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines: list[bytes] = []
    for line in (head + b"\r\n").splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and lines:
            lines[-1] += line  # a folded header's next line
        else:
            lines.append(line)
    body_hash = hashlib.sha256(canonical_whole_body(body)).digest()
    return signer.sign(lines, body_hash, timestamp=timestamp) + data


def envelope(message: EmailMessage) -> tuple[str, list[str]]:
    """The envelope sender and recipients of a message built by `build_message`."""
    sender = message["From"].addresses[0].addr_spec
    recipients = [a.addr_spec for a in message["To"].addresses]
    return sender, recipients


class SmtpMailer:
    """The configured relay. A batch shares one connection; a refused message does not stop the rest."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # signed like the issues when a DKIM key is configured (DMARC judges every email)
        self.signer = DkimSigner.from_settings(settings)

    async def send(self, messages: Sequence[EmailMessage]) -> list[str | None]:
        where = f"{self.settings.smtp.host}:{self.settings.smtp.port}"
        results: list[str | None] = []
        client: aiosmtplib.SMTP | None = None
        try:
            for i, message in enumerate(messages):
                try:
                    if client is None:
                        client = smtp_client(self.settings)
                        await client.connect()
                except (aiosmtplib.SMTPException, OSError) as exc:
                    reason = (
                        setup_problem(exc, where) or f"cannot reach the relay at {where}: {exc}"
                    )
                    results.extend([reason] * (len(messages) - i))
                    client = None
                    break
                try:
                    sender, recipients = envelope(message)
                    data = wire_bytes(message)
                    if self.signer is not None:
                        data = dkim_signed(self.signer, data, timestamp=int(time.time()))
                    await client.sendmail(sender, recipients, data)
                    results.append(None)
                except aiosmtplib.SMTPRecipientsRefused as exc:
                    refused = exc.recipients[0] if exc.recipients else None
                    detail = f"{refused.code} {refused.message}" if refused else str(exc)
                    results.append(f"the relay refused the address: {detail}")
                    await _close(client)
                    client = None
                except aiosmtplib.SMTPResponseException as exc:
                    results.append(f"the relay refused the email: {exc.code} {exc.message}")
                    await _close(client)
                    client = None
                except (aiosmtplib.SMTPException, OSError) as exc:
                    results.append(f"the relay at {where} dropped the connection: {exc}")
                    await _close(client)
                    client = None
        finally:
            if client is not None:
                await _close(client)
        return results


async def _close(client: aiosmtplib.SMTP) -> None:
    try:
        if client.is_connected:
            await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        client.close()
