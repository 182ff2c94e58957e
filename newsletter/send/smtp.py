"""The one mail transport: building single messages and handing them to the relay.

Issues (`newsletter.send`) and transactional emails (confirmation, welcome)
all leave through the relay configured in ``[smtp]``. Header values are set
through `email.message.EmailMessage` and `email.headerregistry.Address`
objects, never glued into header text, and a value with a line break is
refused before it can become a header.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, getaddresses, make_msgid

import aiosmtplib

from newsletter.core.config import Settings
from newsletter.core.errors import HeaderInjectionError, SendError

_FORBIDDEN = {"\r", "\n", "\x00"}


def check_header_value(value: str, what: str) -> str:
    """Refuse a value that would break out of its header."""
    if any(ch in value for ch in _FORBIDDEN) or any(ord(ch) < 32 and ch != "\t" for ch in value):
        raise HeaderInjectionError(f"{what} holds a line break or control character; refused.")
    return value


def parse_address(value: str, what: str = "address") -> Address:
    """``'Name <a@b.c>'`` or ``'a@b.c'`` as an Address object."""
    check_header_value(value, what)
    pairs = getaddresses([value])
    if len(pairs) != 1 or "@" not in pairs[0][1]:
        raise SendError(f"{what} {value!r} is not one address like 'Name <news@example.org>'.")
    name, addr = pairs[0]
    local, _, domain = addr.rpartition("@")
    return Address(display_name=name, username=local, domain=domain)


def sender_domain(settings: Settings) -> str:
    return parse_address(settings.newsletter.from_address, "newsletter.from_address").domain


def build_message(
    settings: Settings,
    *,
    to: Address,
    subject: str,
    text: str,
    html: str | None = None,
    extra_headers: dict[str, str] | None = None,
    message_id: str | None = None,
) -> EmailMessage:
    """A multipart/alternative message (text first, then HTML) with the standard headers."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = parse_address(settings.newsletter.from_address, "newsletter.from_address")
    msg["To"] = to
    msg["Subject"] = check_header_value(subject, "subject")
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = message_id or make_msgid(domain=sender_domain(settings))
    if settings.newsletter.reply_to:
        msg["Reply-To"] = parse_address(settings.newsletter.reply_to, "newsletter.reply_to")
    for key, value in (extra_headers or {}).items():
        msg[key] = check_header_value(value, key)
    msg.set_content(text, subtype="plain", charset="utf-8")
    if html is not None:
        msg.add_alternative(html, subtype="html", charset="utf-8")
    return msg


def smtp_client(settings: Settings) -> aiosmtplib.SMTP:
    """A configured, not yet connected, client for the relay."""
    smtp = settings.smtp
    tls_context = ssl.create_default_context() if smtp.tls != "none" else None
    return aiosmtplib.SMTP(
        hostname=smtp.host,
        port=smtp.port,
        use_tls=smtp.tls == "tls",
        start_tls=smtp.tls == "starttls",
        tls_context=tls_context,
        timeout=smtp.timeout,
        local_hostname=smtp.helo_name or None,
        username=smtp.username or None,
        password=settings.secrets.smtp_password or None,
    )


_TLS_MODES = (
    "`tls` is for a relay that speaks TLS from the first byte (usually port 465), "
    "`starttls` for one that upgrades a plain connection (usually port 587)"
)


# the relay hung up during the handshake (busy, restarting): worth another try
_SSL_DROPPED = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


def setup_problem(exc: BaseException, where: str) -> str | None:
    """What is wrong when opening a connection failed in a way no retry can mend.

    A refused login, a certificate this machine does not trust, a TLS mode the
    relay does not speak, a relay that offers no STARTTLS or no AUTH: each is a
    setting to fix, so the sentence says which. None for anything else (a relay
    that is down or busy may be back in a moment).
    """
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return (
            f"the relay at {where} refused the login: {exc.code} {_one_line(exc.message)}; "
            "check SLICE_SMTP_USERNAME and SLICE_SMTP_PASSWORD"
        )
    seen: BaseException | None = exc
    for _ in range(5):  # aiosmtplib wraps the ssl error as the cause of SMTPConnectError
        if seen is None:
            break
        if isinstance(seen, ssl.SSLCertVerificationError):
            reason = seen.verify_message or seen.reason or "certificate verify failed"
            return (
                f"the relay at {where} sent a TLS certificate this machine does not trust "
                f"({reason}); check that SLICE_SMTP_HOST is the name on the relay's "
                "certificate, or, for a relay with a private CA, set SSL_CERT_FILE to "
                "that CA's certificate file"
            )
        if isinstance(seen, ssl.SSLError) and not isinstance(seen, _SSL_DROPPED):
            reason = (seen.reason or str(seen)).replace("_", " ").lower()
            return (
                f"the TLS handshake with the relay at {where} failed ({reason}); "
                f"check SLICE_SMTP_TLS: {_TLS_MODES}"
            )
        seen = seen.__cause__
    if type(exc) is aiosmtplib.SMTPException:  # raised by the client itself, not the relay
        text = str(exc)
        if "AUTH extension" in text:
            return (
                f"the relay at {where} offers no login (AUTH) on this connection; check "
                f"SLICE_SMTP_TLS: {_TLS_MODES}; or leave SLICE_SMTP_USERNAME empty "
                "for a relay that needs no login"
            )
        if "STARTTLS extension" in text:
            return (
                f"the relay at {where} does not offer STARTTLS; check SLICE_SMTP_TLS: {_TLS_MODES}"
            )
    return None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:500]


async def send_one(settings: Settings, message: EmailMessage) -> None:
    """Send one transactional email; raise SendError with the relay's answer on failure."""
    client = smtp_client(settings)
    where = f"{settings.smtp.host}:{settings.smtp.port}"
    try:
        async with client:
            await client.send_message(message)
    except (aiosmtplib.SMTPException, OSError) as exc:
        problem = setup_problem(exc, where)
        if problem is not None:
            raise SendError(f"{problem}.") from exc
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            raise SendError(
                f"the relay at {where} refused the email: {exc.code} {exc.message}"
            ) from exc
        raise SendError(
            f"cannot reach the relay at {where}: {exc}; check SLICE_SMTP_HOST/PORT "
            f"(for a local test relay run `slice dev-smtp`)."
        ) from exc
