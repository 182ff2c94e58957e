"""The tables of mail going out and coming back: [smtp], [send], [dkim], [inbound].

Part of the settings model, `newsletter.core.settings.Settings`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from newsletter.core.sitesettings import Section


class SmtpSettings(Section):
    host: str = Field("127.0.0.1", description="SMTP relay host (env SLICE_SMTP_HOST).")
    port: int = Field(1025, ge=1, le=65535, description="SMTP relay port (env SLICE_SMTP_PORT).")
    username: str = Field(
        "", description="Login name; the password comes from SLICE_SMTP_PASSWORD."
    )
    tls: Literal["none", "starttls", "tls"] = Field(
        "none", description="none, starttls or tls (env SLICE_SMTP_TLS)."
    )
    timeout: float = Field(30.0, gt=0, description="Seconds to wait for the relay on each step.")
    helo_name: str = Field("", description="Name sent in EHLO; empty uses this machine's name.")


class SendSettings(Section):
    rate: float = Field(
        10.0, ge=0, description="Messages per second across all connections; 0 for no limit."
    )
    hourly_cap: int = Field(
        0, ge=0, description="At most this many messages per hour (a relay quota); 0 for none."
    )
    daily_cap: int = Field(0, ge=0, description="At most this many messages per day; 0 for none.")
    concurrency: int = Field(4, ge=1, le=64, description="SMTP connections used at once.")
    max_attempts: int = Field(
        5, ge=1, description="Tries per reader before a deferred message counts as failed."
    )
    retry_base_seconds: float = Field(
        30.0, ge=0, description="First retry delay; it doubles on each try, with jitter."
    )
    workers: int = Field(
        1,
        ge=1,
        le=32,
        description=(
            "Worker processes one `slice send` starts; more than one needs PostgreSQL. "
            "The rate and caps are shared by all workers, on every machine."
        ),
    )
    commit_seconds: float = Field(
        0.2,
        ge=0,
        description=(
            "Outcomes are written to the ledger at least this often, in one transaction; "
            "after a crash the messages of this last window go again (same Message-ID)."
        ),
    )
    commit_rows: int = Field(
        500, ge=1, description="...or as soon as this many outcomes have gathered."
    )
    lease_seconds: float = Field(
        60.0,
        ge=1,
        description=(
            "How long a worker holds the rows it claimed without a heartbeat; rows of a "
            "worker that died go to another worker after this."
        ),
    )


class DkimSettings(Section):
    selector: str = Field(
        "", description="DKIM selector (env SLICE_DKIM_SELECTOR); the key is SLICE_DKIM_KEY."
    )
    domain: str = Field("", description="DKIM signing domain, d= (env SLICE_DKIM_DOMAIN).")


class InboundSettings(Section):
    """Mail coming back: bounces, complaints and emailed unsubscribes (`slice inbound`)."""

    bounce_address: str = Field(
        "",
        description="Envelope sender (Return-Path) of issues, made per message as "
        "local+TOKEN@domain (VERP); empty derives bounces@<from domain>.",
    )
    verp: bool = Field(
        True,
        description="Put a signed per-message token in the envelope sender, so a bounce "
        "names its message; off sends with the From address as envelope sender.",
    )
    soft_bounce_limit: int = Field(
        3,
        ge=1,
        description="After this many soft bounces in a row (one per issue) an address is suppressed.",
    )
    protocol: Literal["lmtp", "smtp"] = Field(
        "lmtp", description="What `slice inbound` speaks: lmtp (from Postfix) or smtp."
    )
    host: str = Field("127.0.0.1", description="Address `slice inbound` listens on.")
    port: int = Field(8024, ge=0, le=65535, description="Port `slice inbound` listens on.")
    max_message_bytes: int = Field(
        10_000_000, ge=1000, description="Larger inbound messages are refused (552)."
    )
    imap_host: str = Field(
        "", description="IMAP server of a hosted bounce mailbox (`slice inbound --imap`)."
    )
    imap_port: int = Field(993, ge=1, le=65535, description="IMAP port (993 for TLS).")
    imap_user: str = Field(
        "", description="IMAP login; the password comes from SLICE_IMAP_PASSWORD."
    )
    imap_tls: Literal["tls", "starttls", "none"] = Field(
        "tls", description="tls, starttls or none (none only for a server on this machine)."
    )
    imap_folder: str = Field("INBOX", description="The mailbox folder to drain.")
