"""The settings model: every table of slice.toml, typed, with its defaults.

`newsletter.core.config.load_settings` builds one `Settings` from the layers
(defaults < slice.toml < SLICE_* environment < flags); this module only says
what each setting is. The tables are in three modules, by the part that reads
them: `newsletter.core.sitesettings`, `newsletter.core.mailsettings` and
`newsletter.core.papersettings`; every class is importable from here too.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from newsletter.core.errors import ConfigError
from newsletter.core.mailsettings import DkimSettings, InboundSettings, SendSettings, SmtpSettings
from newsletter.core.papersettings import (
    ComposeSettings,
    FetchSettings,
    ProfileSettings,
    SourceSettings,
    StoriesSettings,
)
from newsletter.core.sitesettings import (
    DatabaseSettings,
    NewsletterSettings,
    PathSettings,
    Section,
    WebSettings,
)

__all__ = [
    "ComposeSettings",
    "DatabaseSettings",
    "DkimSettings",
    "FetchSettings",
    "InboundSettings",
    "NewsletterSettings",
    "PathSettings",
    "ProfileSettings",
    "Secrets",
    "Section",
    "SendSettings",
    "Settings",
    "SmtpSettings",
    "SourceSettings",
    "StoriesSettings",
    "WebSettings",
]


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
