"""The send's parts, made from the settings: the DKIM signer and the list's headers.

The parts themselves (`newsletter.send.dkim`, `newsletter.send.message`) take
plain values, so they can be built and tested without a settings object.
"""

from __future__ import annotations

from pathlib import Path

from newsletter.core.errors import ConfigError
from newsletter.core.settings import Settings
from newsletter.issue.outbox import IssueFolder
from newsletter.readers.addresses import derive_list_id, sender_domain
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
    )


def issue_message(settings: Settings, folder: IssueFolder) -> IssueMessage:
    """The composed issue in ``folder``, encoded once, signed when a key is configured."""
    return IssueMessage.from_outbox(folder, list_headers(settings), signer=dkim_signer(settings))
