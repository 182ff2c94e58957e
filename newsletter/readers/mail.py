"""The emails of the double opt-in: the confirmation link and the welcome.

Both are rendered from templates (``email/confirm.mjml`` + ``confirm.txt``,
``email/welcome.mjml`` + ``welcome.txt``; a project's templates/ overrides them)
and leave through the same relay as issues (`newsletter.send.notices` is the
`Mailer` that sends them).

The confirmation email carries nothing the requester typed except the address
itself: no name, so a signup form cannot be used to mail text to a stranger.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from typing import Any, Protocol

from jinja2 import Environment, TemplateError

from newsletter.core import errors
from newsletter.core.settings import Settings
from newsletter.issue.htmlmail import render_mjml
from newsletter.issue.templating import template_environment
from newsletter.readers.addresses import (
    check_header_value,
    list_id,
    parse_address,
    sender_domain,
    unsubscribe_mailto,
)
from newsletter.readers.subscribers import (
    Confirmation,
    ConsentSource,
    SubscribeResult,
    Subscribers,
    Welcome,
)


def build_message(
    settings: Settings,
    *,
    to: Address,
    subject: str,
    text: str,
    html: str | None = None,
    extra_headers: dict[str, str] | None = None,
    message_id: str | None = None,
    kind: str = "",
) -> EmailMessage:
    """A multipart/alternative message (text first, then HTML) with the standard headers."""
    # RFC 2045 limits an encoded line to 76 characters; the email package's SMTP policy
    # writes quoted-printable lines up to its max_line_length, 78 unless told
    msg = EmailMessage(policy=SMTP.clone(max_line_length=76))
    msg["From"] = parse_address(settings.newsletter.from_address, "newsletter.from_address")
    msg["To"] = to
    msg["Subject"] = check_header_value(subject, "subject")
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = message_id or make_msgid(domain=sender_domain(settings))
    if settings.newsletter.reply_to:
        msg["Reply-To"] = parse_address(settings.newsletter.reply_to, "newsletter.reply_to")
    for key, value in (extra_headers or {}).items():
        msg[key] = check_header_value(value, key)
    if settings.newsletter.feedback_id and kind:
        msg["Feedback-ID"] = f"signup:{kind}:{settings.newsletter.feedback_id}"
    msg.set_content(text, subtype="plain", charset="utf-8")
    if html is not None:
        msg.add_alternative(html, subtype="html", charset="utf-8")
    return msg


class Mailer(Protocol):
    """Sends messages; returns, per message, None or why it was not sent."""

    async def send(self, messages: Sequence[EmailMessage]) -> list[str | None]: ...


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
        mailer: Mailer,
        templates: Environment | None = None,
    ) -> None:
        self.subscribers = subscribers
        self.settings = subscribers.settings
        self.mailer = mailer
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
            kind="confirmation",
        )
        return message

    def welcome(self, welcome: Welcome) -> EmailMessage:
        base = self.settings.web.base_url
        unsubscribe = self.subscribers.unsubscribe_url(welcome.uid)
        token = self.subscribers.tokens.unsubscribe_token(welcome.uid)
        # the same token in the subject: `slice inbound` unsubscribes whoever mails it
        mailto = f"mailto:{unsubscribe_mailto(self.settings)}?subject=unsubscribe%20{token}"
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
                "List-Unsubscribe": f"<{unsubscribe}>, <{mailto}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                "Auto-Submitted": "auto-generated",
            },
            kind="welcome",
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
