"""The one mail transport: building single messages and handing them to the relay.

Issues (`newsletter.send`) and transactional emails (confirmation, welcome)
all leave through the relay configured in ``[smtp]``. Header values are set
through `email.message.EmailMessage` and `email.headerregistry.Address`
objects, never glued into header text, and a value with a line break is
refused before it can become a header.
"""

from __future__ import annotations

import ssl

import aiosmtplib

from newsletter.core.settings import Settings
from newsletter.papers.text import one_line


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
            f"the relay at {where} refused the login: {exc.code} {one_line(exc.message)}; "
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


def answer_line(text: str) -> str:
    """A relay's answer on one line, at most 500 characters."""
    return one_line(text, 500)
