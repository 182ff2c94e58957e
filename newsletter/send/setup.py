"""The send's parts, made from the settings: the DKIM signer and the list's headers.

The parts themselves (`newsletter.send.dkim`, `newsletter.send.message`) take
plain values, so they can be built and tested without a settings object.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

from newsletter.core.errors import ConfigError
from newsletter.core.settings import Settings
from newsletter.issue.outbox import IssueFolder
from newsletter.readers.addresses import derive_list_id, parse_address, sender_domain
from newsletter.send.dkim import DkimSigner, load_key
from newsletter.send.message import IssueMessage, ListHeaders


def dkim_signer(settings: Settings) -> DkimSigner | None:
    """The signer the settings ask for, or None when no key is configured."""
    path = settings.secrets.dkim_key_path
    if not path:
        return None
    selector, domain = settings.dkim.selector, settings.dkim.domain
    if not selector or not domain:
        raise ConfigError(
            "SLICE_DKIM_KEY is set but the DKIM selector or domain is not: set "
            "SLICE_DKIM_SELECTOR and SLICE_DKIM_DOMAIN (or [dkim] selector/domain in slice.toml)."
        )
    return DkimSigner(key=load_key(settings.resolve(Path(path))), selector=selector, domain=domain)


def list_headers(settings: Settings) -> ListHeaders:
    """The list's headers and links as the settings say, with the signing key."""
    domain = sender_domain(settings)
    news = settings.newsletter
    return ListHeaders(
        from_address=news.from_address,
        reply_to=news.reply_to,
        list_name=news.name,
        list_id=news.list_id or derive_list_id(settings),
        unsubscribe_mailto=news.unsubscribe_mailto or f"unsubscribe@{domain}",
        base_url=settings.web.base_url,
        domain=domain,
        secret_key=settings.require_secret_key(),
        bounce_address=settings.inbound.bounce_address or f"bounces@{domain}",
        verp=settings.inbound.verp,
        feedback_id=news.feedback_id,
    )


def issue_message(settings: Settings, folder: IssueFolder, *, proof: bool = False) -> IssueMessage:
    """The composed issue in ``folder``, encoded once, signed when a key is configured.

    A proof's subject starts with "[Proof] ", so that nobody mistakes it for the send.
    """
    return IssueMessage.from_outbox(
        folder,
        list_headers(settings),
        signer=dkim_signer(settings),
        subject_prefix="[Proof] " if proof else "",
    )


def is_local_host(host: str) -> bool:
    """This machine: localhost or a loopback address (a developer's setup, not the public)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# second levels under a country code where names are registered (example.co.uk)
_PUBLIC_SECOND_LEVEL = frozenset(
    {"ac", "co", "com", "edu", "go", "gob", "gov", "gv", "ltd", "ne", "net", "nhs", "or", "org"}
)


def organizational_domain(domain: str) -> str:
    """The registered domain, near enough without the public suffix list:
    ``news.example.org`` -> ``example.org``, ``mail.example.co.uk`` -> ``example.co.uk``."""
    labels = domain.lower().rstrip(".").split(".")
    keep = 2
    if len(labels) > 2 and len(labels[-1]) == 2 and labels[-2] in _PUBLIC_SECOND_LEVEL:
        keep = 3
    return ".".join(labels[-keep:])


def _aligned(domain: str, other: str) -> bool:
    """DMARC's relaxed alignment: the same organizational domain (mail.example.org
    signs for news.example.org)."""
    return organizational_domain(domain) == organizational_domain(other)


def deliverability_warnings(settings: Settings) -> list[str]:
    """What will make receivers distrust the list's mail, as settings stand (not errors)."""
    warnings: list[str] = []
    from_domain = sender_domain(settings)
    base = urlsplit(settings.web.base_url)
    if base.scheme != "https" and not is_local_host(base.hostname or ""):
        warnings.append(
            f"web.base_url is {settings.web.base_url}: the one-click unsubscribe link must be "
            "https (RFC 8058); a send to real readers is refused until SLICE_BASE_URL is https://."
        )
    dkim_domain = settings.dkim.domain
    if settings.secrets.dkim_key_path and dkim_domain and not _aligned(dkim_domain, from_domain):
        warnings.append(
            f"DKIM signs as {dkim_domain} but the From address is at {from_domain}: DMARC "
            f"needs them aligned, so receivers will treat the mail as unauthenticated; sign "
            f"as {from_domain} (SLICE_DKIM_DOMAIN)."
        )
    bounce = settings.inbound.bounce_address
    if bounce:
        bounce_domain = parse_address(bounce, "inbound.bounce_address").domain
        if not _aligned(bounce_domain, from_domain):
            warnings.append(
                f"bounces go to {bounce_domain} but the From address is at {from_domain}: SPF "
                "passes for the bounce domain only, so it does not count for DMARC."
            )
    return warnings
