"""The tables about the newsletter itself: [newsletter], [paths], [database], [web].

Also `Section`, what every table of slice.toml is (unknown keys are errors).
Part of the settings model, `newsletter.core.settings.Settings`.
"""

from __future__ import annotations

import re
from datetime import tzinfo
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Section(BaseModel):
    """A table of slice.toml: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class NewsletterSettings(Section):
    name: str = Field(
        "My Research Weekly", description="Name of the newsletter, shown in every email and page."
    )
    tagline: str = Field(
        "The week's new papers, picked for you.", description="One line under the name."
    )
    promise: str = Field(
        "One email a week. We respect your privacy. Unsubscribe at any time.",
        description="What a reader is promised next to the signup form.",
    )
    language: str = Field(
        "en", description="Language of emails and pages (the HTML lang attribute)."
    )
    from_address: str = Field(
        "My Research Weekly <newsletter@example.org>",
        description="The From header of every email: 'Name <address>'.",
    )
    reply_to: str = Field("", description="Reply-To address; empty for none.")
    list_id: str = Field(
        "",
        description="List-Id header (RFC 2919), e.g. 'weekly.example.org'; empty derives it from from_address.",
    )
    unsubscribe_mailto: str = Field(
        "",
        description="Address for mailto: unsubscribe requests; empty derives unsubscribe@<from domain>.",
    )
    postal_address: str = Field(
        "",
        description="The sender's postal address, printed in every email's footer (bulk-mail law asks for it).",
    )
    editor_address: str = Field(
        "", description="Where `slice send --proof` proofs go when no --to address is given."
    )
    greeting: str = Field(
        "Good morning, {name},",
        description="The issue's greeting for a reader whose name is known; {name} is the first name.",
    )
    greeting_no_name: str = Field(
        "Good morning,",
        description="The greeting for a reader without a name, and on the web copy.",
    )

    @field_validator("greeting")
    @classmethod
    def _greeting(cls, value: str) -> str:
        if "{name}" not in value:
            raise ValueError("the greeting needs {name} where the first name goes")
        return value

    @field_validator("greeting_no_name")
    @classmethod
    def _greeting_no_name(cls, value: str) -> str:
        if "{name}" in value:
            raise ValueError(
                "greeting_no_name is for readers without a name: leave {name} out "
                "(e.g. 'Good morning,')"
            )
        return value

    feedback_id: str = Field(
        "",
        description="Sender id for a Feedback-ID header (Gmail's feedback loop groups "
        "complaints by it), e.g. 'weekly-example'; empty sends none. Emails carry "
        "'<issue id>:issue:<this>', 'signup:confirmation:<this>' or 'signup:welcome:<this>'.",
    )

    @field_validator("feedback_id")
    @classmethod
    def _feedback_id(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", value):
            raise ValueError("use letters, digits, '.', '_' or '-' only (at most 64)")
        return value

    timezone: str = Field(
        "",
        description="The editor's time zone (IANA name, e.g. Asia/Tokyo; env SLICE_TIMEZONE); "
        "empty: the machine's. The week compose picks, the days fetch asks for and the dates "
        "readers see are in it; stored timestamps stay UTC.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from newsletter.core.timezone import zone

        zone(value)  # a ValueError names the zone
        return value.strip()

    @property
    def tz(self) -> tzinfo:
        """The editor's zone (`newsletter.core.timezone.zone`)."""
        from newsletter.core.timezone import zone

        return zone(self.timezone)


class PathSettings(Section):
    templates: Path = Field(
        Path("templates"), description="Project templates; they override the package's."
    )
    subscribers: Path = Field(
        Path("subscribers"), description="Subscriber data: the SQLite database, CSV files."
    )
    outbox: Path = Field(
        Path("outbox"), description="Composed issues, one folder each; dry-run .eml files."
    )


class DatabaseSettings(Section):
    url: str = Field(
        "sqlite:///subscribers/slice.db",
        description="SQLAlchemy URL (env SLICE_DATABASE_URL); a relative SQLite path is relative to the project.",
    )
    busy_timeout_ms: int = Field(
        10_000, ge=0, description="How long SQLite waits for a lock before giving up."
    )
    busy_retry_seconds: float = Field(
        30.0,
        ge=0,
        description="How long a write keeps trying, with backoff, while the database is busy "
        "(locked by an ingest or a send) before it ends with 'the database is busy'.",
    )


class WebSettings(Section):
    base_url: str = Field(
        "http://127.0.0.1:8000",
        description="Public URL of `slice serve`, used in every link in emails (env SLICE_BASE_URL).",
    )
    host: str = Field("127.0.0.1", description="Address `slice serve` listens on.")
    port: int = Field(8000, ge=0, le=65535, description="Port `slice serve` listens on.")
    confirm_ttl_hours: float = Field(72, gt=0, description="How long a confirmation link works.")
    resend_interval_minutes: float = Field(
        60,
        ge=0,
        description="A pending address gets at most one confirmation email per this interval.",
    )
    signups_per_ip_per_hour: int = Field(
        10,
        ge=0,
        description="Signup forms one client (an IP address; an IPv6 /64) may send per hour, "
        "whatever the addresses' status; 0 for no limit.",
    )
    signups_per_address_per_hour: int = Field(
        5,
        ge=0,
        description="Signup forms for one address accepted per hour, from anyone; 0 for no limit.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Reverse proxies (addresses or CIDR networks) whose X-Forwarded-For header "
        "names the client, e.g. ['127.0.0.1'] behind nginx or Caddy on the same machine. "
        "Empty: the socket's peer is the client and forwarded headers are ignored.",
    )
    mail_retry_first_seconds: float = Field(
        30,
        gt=0,
        description="A confirmation or welcome email the relay did not take is tried again after "
        "this long, then after twice as long each time, up to an hour.",
    )
    workers: int = Field(
        1, ge=1, le=64, description="Processes `slice serve` runs; they share every limit."
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network (like 127.0.0.1 or 10.0.0.0/8)"
                ) from None
        return value

    archive_on_topic_only: bool = Field(
        True,
        description="The public archive lists only papers that clear the relevance floor "
        "([profile] min_score and required); the editor sees every paper with `slice papers`.",
    )

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")
