"""The emails of the double opt-in: the confirmation link and the welcome.

Both are rendered from templates (``email/confirm.mjml`` + ``confirm.txt``,
``email/welcome.mjml`` + ``welcome.txt``; a project's templates/ overrides them)
and leave through the same relay as issues (`newsletter.send.smtp`).

The confirmation email carries nothing the requester typed except the address
itself: no name, so a signup form cannot be used to mail text to a stranger.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any, Protocol

import aiosmtplib
from jinja2 import Environment, TemplateError

from newsletter.core import errors
from newsletter.core.config import Settings
from newsletter.issue.htmlmail import render_mjml
from newsletter.issue.templating import template_environment
from newsletter.readers.subscribers import (
    Confirmation,
    ConsentSource,
    SubscribeResult,
    Subscribers,
    Welcome,
)
from newsletter.send.dkim import DkimSigner, canonical_whole_body
from newsletter.send.message import derive_list_id
from newsletter.send.smtp import (
    build_message,
    parse_address,
    sender_domain,
    setup_problem,
    smtp_client,
)

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


class Mailer(Protocol):
    """Sends messages; returns, per message, None or why it was not sent."""

    async def send(self, messages: Sequence[EmailMessage]) -> list[str | None]: ...


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


def list_id(settings: Settings) -> str:
    """The List-Id header value, the same as on issues: the setting, or derived from the sender."""
    value = settings.newsletter.list_id or derive_list_id(settings)
    return f"{settings.newsletter.name} <{value}>"


def unsubscribe_mailto(settings: Settings) -> str:
    return settings.newsletter.unsubscribe_mailto or f"unsubscribe@{sender_domain(settings)}"


def ttl_text(hours: float) -> str:
    """'72 hours' reads better as '3 days'."""
    if hours >= 48 and hours % 24 == 0:
        return f"{int(hours // 24)} days"
    if hours == int(hours):
        return f"{int(hours)} hour" + ("" if hours == 1 else "s")
    return f"{hours:g} hours"


class SubscriberMail:
    """Renders and sends the confirmation and welcome emails."""

    def __init__(
        self,
        subscribers: Subscribers,
        *,
        mailer: Mailer | None = None,
        templates: Environment | None = None,
    ) -> None:
        self.subscribers = subscribers
        self.settings = subscribers.settings
        self.mailer = mailer or SmtpMailer(self.settings)
        self.templates = templates or template_environment(self.settings.templates_dir)

    # --- rendering ---------------------------------------------------------

    def _render(self, stem: str, context: dict[str, Any]) -> tuple[str, str]:
        sender = parse_address(self.settings.newsletter.from_address, "newsletter.from_address")
        base = {
            "newsletter": self.settings.newsletter,
            "base_url": self.settings.web.base_url,
            "sender_address": sender.addr_spec,
        }
        try:
            text = self.templates.get_template(f"email/{stem}.txt").render(**base, **context)
            mjml = self.templates.get_template(f"email/{stem}.mjml").render(**base, **context)
        except TemplateError as exc:
            where = getattr(exc, "filename", None) or f"email/{stem}"
            line = getattr(exc, "lineno", None)
            at = f"{where}:{line}" if line else where
            raise errors.TemplateError(f"{at}: {exc}; fix the template and try again.") from exc
        return text, render_mjml(mjml)

    def confirmation(self, confirmation: Confirmation) -> EmailMessage:
        url = f"{self.settings.web.base_url}/confirm/{confirmation.token}"
        text, html = self._render(
            "confirm",
            {
                "email": confirmation.email,
                "confirm_url": url,
                "valid_for": ttl_text(self.settings.web.confirm_ttl_hours),
            },
        )
        message = build_message(
            self.settings,
            to=_address(confirmation.email, ""),
            subject=f"Confirm your subscription to {self.settings.newsletter.name}",
            text=text,
            html=html,
            extra_headers={"Auto-Submitted": "auto-generated"},
        )
        return message

    def welcome(self, welcome: Welcome) -> EmailMessage:
        base = self.settings.web.base_url
        unsubscribe = self.subscribers.unsubscribe_url(welcome.uid)
        latest = f"{base}/issues/{welcome.latest_issue}" if welcome.latest_issue else None
        text, html = self._render(
            "welcome",
            {
                "email": welcome.email,
                "name": welcome.name,
                "first_name": welcome.name.split(" ")[0] if welcome.name else "",
                "unsubscribe_url": unsubscribe,
                "latest_issue_url": latest,
                "archive_url": f"{base}/",
            },
        )
        return build_message(
            self.settings,
            to=_address(welcome.email, welcome.name),
            subject=f"Welcome to {self.settings.newsletter.name}",
            text=text,
            html=html,
            extra_headers={
                "List-Id": list_id(self.settings),
                "List-Unsubscribe": f"<{unsubscribe}>, <mailto:{unsubscribe_mailto(self.settings)}?subject=unsubscribe>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                "Auto-Submitted": "auto-generated",
            },
        )

    # --- sending -----------------------------------------------------------

    async def send_confirmations(self, confirmations: Sequence[Confirmation]) -> list[str | None]:
        """Send confirmation emails; a failed one is forgotten by the flood control."""
        messages = [self.confirmation(c) for c in confirmations]
        results = await self.mailer.send(messages)
        for confirmation, problem in zip(confirmations, results, strict=True):
            if problem is not None:
                self.subscribers.confirmation_failed(confirmation.uid)
        return results

    async def send_confirmation(self, confirmation: Confirmation) -> str | None:
        return (await self.send_confirmations([confirmation]))[0]

    async def subscribe(
        self, email: str, *, name: str = "", source: ConsentSource, ip: str | None = None
    ) -> SubscribeResult:
        """Start the double opt-in for an address and send its confirmation email now.

        Raises SendError if the email could not be sent; the address stays pending
        and the next request may send at once.
        """
        result = self.subscribers.subscribe(email, name=name, source=source, ip=ip)
        if result.confirmation is not None:
            problem = await self.send_confirmation(result.confirmation)
            if problem is not None:
                raise errors.SendError(
                    f"{result.email} is pending, but its confirmation email was not sent: "
                    f"{problem}. Run the same command again to retry."
                )
        return result

    async def send_welcome(self, welcome: Welcome) -> str | None:
        return (await self.mailer.send([self.welcome(welcome)]))[0]


def _address(email: str, name: str) -> Address:
    address = parse_address(email, "subscriber address")
    return Address(display_name=name, username=address.username, domain=address.domain)
