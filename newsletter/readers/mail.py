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
from markupsafe import escape

from newsletter.core import errors
from newsletter.core.settings import Settings
from newsletter.issue.htmlmail import render_mjml
from newsletter.issue.templating import template_environment
from newsletter.readers.addresses import (
    WireAddressHeader,
    WireHeader,
    check_header_value,
    list_id,
    parse_address,
    sender_domain,
    unsubscribe_mailto,
)
from newsletter.readers.subscribers import (
    Confirmation,
    Subscribers,
    Welcome,
)


def build_message(
    settings: Settings,
    *,
    to: Address | str,
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
        msg[key] = value if isinstance(value, WireHeader) else check_header_value(value, key)
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


# Stand-ins for what differs between confirmations: plain words that no template,
# MJML or the CSS inliner changes.
_EMAIL_SLOT = "slicesubscriberaddressslot"
_TOKEN_SLOT = "sliceconfirmtokenslot"  # noqa: S105 - a stand-in, not a secret


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
        self._confirm_cache: tuple[str, str] | None = None

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

    def _confirm_parts(self) -> tuple[str, str]:
        """The confirmation's text and HTML, rendered once with placeholders.

        Compiling MJML and inlining CSS takes tens of milliseconds of CPU; only the
        address and the link differ from one confirmation to the next.
        """
        if self._confirm_cache is None:
            self._confirm_cache = self._render(
                "confirm",
                {
                    "email": _EMAIL_SLOT,
                    "confirm_url": f"{self.settings.web.base_url}/confirm/{_TOKEN_SLOT}",
                    "valid_for": ttl_text(self.settings.web.confirm_ttl_hours),
                },
            )
        return self._confirm_cache

    def confirmation(self, confirmation: Confirmation) -> EmailMessage:
        text, html = self._confirm_parts()
        # the token first: what the address holds is never read as a stand-in
        text = text.replace(_TOKEN_SLOT, confirmation.token).replace(
            _EMAIL_SLOT, confirmation.email
        )
        html = html.replace(_TOKEN_SLOT, str(escape(confirmation.token))).replace(
            _EMAIL_SLOT, str(escape(confirmation.email))
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
                "List-Id": WireHeader("List-Id", list_id(self.settings)),
                "List-Unsubscribe": WireHeader("List-Unsubscribe", f"<{unsubscribe}>, <{mailto}>"),
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                "Auto-Submitted": "auto-generated",
            },
            kind="welcome",
        )


def _address(email: str, name: str) -> WireAddressHeader:
    address = parse_address(email, "subscriber address")
    return WireAddressHeader("To", name, address.addr_spec)
