"""The settings model: every table of slice.toml, typed, with its defaults.

`newsletter.core.config.load_settings` builds one `Settings` from the layers
(defaults < slice.toml < SLICE_* environment < flags); this module only says
what each setting is.
"""

from __future__ import annotations

import re
from datetime import timedelta, tzinfo
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from newsletter.core.errors import ConfigError


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
        description="Confirmation emails one IP address can cause through the form per hour; 0 for no limit.",
    )
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


class ComposeSettings(Section):
    max_papers: int = Field(10, ge=1, description="Papers in an issue.")
    dated_sources: list[str] = Field(
        default_factory=lambda: ["arxiv", "pubmed", "medrxiv", "biorxiv"],
        description="Sources whose publication dates are reliable: their papers are candidates "
        "in the week they were published. Papers of other sources count from when they were "
        "first seen.",
    )
    late_days: int = Field(
        28,
        ge=0,
        description="A paper first seen in the window (from a source not in dated_sources) is a "
        "candidate only if it was published at most this many days before the window.",
    )
    per_source_cap: int = Field(6, ge=1, description="At most this many papers from one source.")
    featured: int = Field(2, ge=0, description="How many top papers render as featured stories.")
    abstract_chars: int = Field(
        1200, ge=100, description="Longer abstracts are cut at a sentence, with a link."
    )
    max_authors: int = Field(
        6, ge=1, description="Longer author lists show the first few and 'et al.'."
    )
    subject_chars: int = Field(
        70,
        ge=20,
        le=250,
        description="The default subject (from the featured headlines) fits in this many characters.",
    )


class StoriesSettings(Section):
    """Story drafts for the featured papers (headline, why it matters, details, takeaway)."""

    drafts: bool = Field(
        True, description="Draft a story for each featured paper the editor has not written."
    )
    model: str = Field(
        "",
        description="An llm model (id or alias, e.g. 'gpt-4o-mini' or a local model) to draft "
        "stories; empty: extractive drafts from the abstract, offline.",
    )


class ProfileSettings(Section):
    """What the newsletter covers: weighted terms and terms that exclude a paper."""

    terms: dict[str, float] = Field(
        default_factory=dict, description='Terms and their weights, e.g. { "deep learning" = 2.0 }.'
    )
    exclude: list[str] = Field(
        default_factory=list, description="A paper with any of these terms is left out."
    )
    recency_weight: float = Field(
        0.1, ge=0, description="How much a newer paper gains over an older one."
    )
    learn_from_editor: bool = Field(
        True, description="Let past pins and removals raise or lower similar papers."
    )
    editor_weight: float = Field(
        3.0,
        ge=0,
        description="Most points the editor's past choices can add to or take from a paper.",
    )
    min_score: float = Field(
        1.0,
        ge=0,
        description="The relevance floor: a paper is a candidate when its matching profile "
        "terms' weights (a term in the abstract only counts half) add up to this; a thin week "
        "gives a short issue.",
    )
    required: list[str] = Field(
        default_factory=list,
        description="The floor's topic: a paper must contain at least one of these terms "
        '(e.g. ["radiolog*", "CT", "MRI"]); empty: any profile term will do.',
    )


class SourceSettings(BaseModel):
    """One entry of ``[[sources]]``: a name, a kind, and the kind's own options.

    The options are checked by the source kind itself (see `newsletter.papers.sources`).
    """

    model_config = ConfigDict(extra="allow")

    name: str
    kind: str
    enabled: bool = True

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class FetchSettings(Section):
    contact_email: str = Field(
        "", description="Contact address sent to sources that ask for one (PubMed's email=)."
    )
    timeout: float = Field(30.0, gt=0, description="Seconds to wait for a source's answer.")
    retries: int = Field(4, ge=0, description="Retries on 429, 5xx and connection errors.")
    lookback_days: int = Field(
        8, ge=1, description="`slice fetch` without --since reaches back this far."
    )


class Secrets(BaseModel):
    """Values read from the environment only. Never written anywhere."""

    model_config = ConfigDict(frozen=True)

    secret_key: str = Field("", description="Key that signs confirm and unsubscribe tokens.")
    smtp_password: str = Field("", description="The SMTP relay's password.")
    dkim_key_path: str = Field("", description="Path of the PEM private key that signs with DKIM.")
    pubmed_api_key: str = Field("", description="NCBI E-utilities key: 10 requests/s instead of 3.")
    imap_password: str = Field(
        "", description="Password of the bounce mailbox `slice inbound --imap` drains."
    )

    def __repr__(self) -> str:  # never print a secret by accident
        shown = {k: ("***" if v else "") for k, v in self.model_dump().items()}
        return f"Secrets({shown})"

    __str__ = __repr__


class Settings(Section):
    """Everything Slice needs to know, typed. Built by `load_settings`."""

    newsletter: NewsletterSettings = Field(default_factory=NewsletterSettings)
    paths: PathSettings = Field(default_factory=PathSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    send: SendSettings = Field(default_factory=SendSettings)
    dkim: DkimSettings = Field(default_factory=DkimSettings)
    inbound: InboundSettings = Field(default_factory=InboundSettings)
    compose: ComposeSettings = Field(default_factory=ComposeSettings)
    stories: StoriesSettings = Field(default_factory=StoriesSettings)
    profile: ProfileSettings = Field(default_factory=ProfileSettings)
    fetch: FetchSettings = Field(default_factory=FetchSettings)
    sources: list[SourceSettings] = Field(default_factory=list)

    # Not from slice.toml: where the project lives, and the secrets.
    project_dir: Path = Field(default_factory=Path.cwd, exclude=True)
    config_file: Path | None = Field(None, exclude=True)
    secrets: Secrets = Field(default_factory=Secrets, exclude=True)

    # --- derived values ----------------------------------------------------

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else self.project_dir / path

    @property
    def templates_dir(self) -> Path:
        return self.resolve(self.paths.templates)

    @property
    def outbox_dir(self) -> Path:
        return self.resolve(self.paths.outbox)

    @property
    def database_url(self) -> str:
        """The database URL, with a relative SQLite path made absolute against the project."""
        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith("sqlite:////"):
            rest = url[len(prefix) :]
            if rest and not rest.startswith(":memory:") and not rest.startswith("file:"):
                return prefix + str(self.resolve(Path(rest)))
        return url

    @property
    def confirm_ttl(self) -> timedelta:
        return timedelta(hours=self.web.confirm_ttl_hours)

    def require_secret_key(self) -> str:
        key = self.secrets.secret_key
        if not key:
            raise ConfigError(
                "SLICE_SECRET_KEY is not set: set it to a long random string, e.g. "
                "export SLICE_SECRET_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        if len(key) < 16:
            raise ConfigError("SLICE_SECRET_KEY is too short: use at least 16 random characters.")
        return key
