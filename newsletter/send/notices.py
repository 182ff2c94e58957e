"""Transactional emails (confirmation, welcome) through the configured relay.

They leave through the same `RelayConnection` as issues, so a relay's answers
and setup problems mean the same for both.

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

from newsletter.core.errors import RelayRefusedError
from newsletter.core.settings import Settings
from newsletter.send.deliver import RelayConnection
from newsletter.send.dkim import DkimSigner, canonical_whole_body
from newsletter.send.setup import dkim_signer
from newsletter.send.smtp import smtp_client

# Headers are folded at 76, RFC 2047's limit for a line with encoded words (a From or
# Subject with the list's non-ASCII name). The long List-Unsubscribe URLs, which the
# email package would turn into encoded words, come pre-folded (`WireHeader`).
WIRE_POLICY = SMTP.clone(max_line_length=76)


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
        self.signer = dkim_signer(settings)

    async def send(self, messages: Sequence[EmailMessage]) -> list[str | None]:
        where = f"{self.settings.smtp.host}:{self.settings.smtp.port}"
        connection = RelayConnection(lambda: smtp_client(self.settings), where=where)
        results: list[str | None] = []
        try:
            for message in messages:
                sender, recipients = envelope(message)
                data = wire_bytes(message)
                if self.signer is not None:
                    data = dkim_signed(self.signer, data, timestamp=int(time.time()))
                answer = await connection.send(sender, recipients[0], data)
                if answer.kind == "sent":
                    results.append(None)
                elif answer.stage == "connect":  # nothing else can go either
                    reason = f"cannot reach the relay at {where}: {answer.describe()}"
                    results.extend([reason] * (len(messages) - len(results)))
                    break
                elif answer.stage == "rcpt":
                    results.append(f"the relay refused the address: {answer.describe()}")
                elif answer.code is not None:
                    results.append(f"the relay refused the email: {answer.describe()}")
                else:
                    results.append(f"the relay at {where} did not take the email: {answer.text}")
        except RelayRefusedError as exc:  # a setting to fix: say so for every message
            results.extend([str(exc).rstrip(".")] * (len(messages) - len(results)))
        finally:
            await connection.close()
        return results
