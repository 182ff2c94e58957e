"""Settings: one typed object, built in one place.

Layers, lowest first: defaults < ``slice.toml`` < environment (``SLICE_*``) < flags.
Secrets (the signing key, the SMTP password, the DKIM key, API keys) are read
from the environment only; a secret written in ``slice.toml`` is an error.

Nothing else in the package reads ``os.environ``: the CLI passes the environment
in, and tests pass a dict.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from newsletter.core.errors import ConfigError
from newsletter.core.settings import Secrets, Settings

CONFIG_NAME = "slice.toml"


# Environment variables and the setting each one sets. Kept as data so that the
# README's table and `slice init` can be generated from it.
ENV_SETTINGS: dict[str, tuple[str, str]] = {
    "SLICE_DATABASE_URL": ("database", "url"),
    "SLICE_BASE_URL": ("web", "base_url"),
    "SLICE_TIMEZONE": ("newsletter", "timezone"),
    "SLICE_SMTP_HOST": ("smtp", "host"),
    "SLICE_SMTP_PORT": ("smtp", "port"),
    "SLICE_SMTP_USERNAME": ("smtp", "username"),
    "SLICE_SMTP_TLS": ("smtp", "tls"),
    "SLICE_DKIM_SELECTOR": ("dkim", "selector"),
    "SLICE_DKIM_DOMAIN": ("dkim", "domain"),
    "SLICE_BOUNCE_ADDRESS": ("inbound", "bounce_address"),
    "SLICE_IMAP_HOST": ("inbound", "imap_host"),
    "SLICE_IMAP_USER": ("inbound", "imap_user"),
}

ENV_SECRETS: dict[str, str] = {
    "SLICE_SECRET_KEY": "secret_key",
    "SLICE_SMTP_PASSWORD": "smtp_password",
    "SLICE_DKIM_KEY": "dkim_key_path",
    "SLICE_PUBMED_API_KEY": "pubmed_api_key",
    "SLICE_IMAP_PASSWORD": "imap_password",
    "NCBI_API_KEY": "pubmed_api_key",
}

# Keys that look like secrets; finding one in slice.toml is an error that says
# which variable to use instead.
_SECRET_KEYS = {
    "secret_key": "SLICE_SECRET_KEY",
    "password": "SLICE_SMTP_PASSWORD",
    "smtp_password": "SLICE_SMTP_PASSWORD",
    "imap_password": "SLICE_IMAP_PASSWORD",
    "key": "SLICE_DKIM_KEY",
    "private_key": "SLICE_DKIM_KEY",
    "api_key": "SLICE_PUBMED_API_KEY",
}


def find_config(config: Path | None, environ: Mapping[str, str], cwd: Path) -> Path | None:
    """Where slice.toml is: the flag, then SLICE_CONFIG, then the working folder."""
    if config is not None:
        if not config.is_file():
            raise ConfigError(
                f"{config}: no such settings file; check --config or run `slice init`."
            )
        return config.resolve()
    from_env = environ.get("SLICE_CONFIG")
    if from_env:
        path = Path(from_env)
        if not path.is_file():
            raise ConfigError(f"SLICE_CONFIG={from_env}: no such settings file.")
        return path.resolve()
    candidate = cwd / CONFIG_NAME
    return candidate.resolve() if candidate.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc


def _check_no_secrets(data: Mapping[str, Any], path: Path, where: str = "") -> None:
    for key, value in data.items():
        dotted = f"{where}.{key}" if where else key
        if key in _SECRET_KEYS and where != "profile.terms":
            var = _SECRET_KEYS[key]
            raise ConfigError(
                f"{path}: '{dotted}' is a secret and is read from the environment only: "
                f"remove it from the file and set {var}."
            )
        if isinstance(value, Mapping):
            _check_no_secrets(value, path, dotted)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    _check_no_secrets(item, path, f"{dotted}[{i}]")


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _describe(exc: ValidationError, origin: str, env_origin: Mapping[tuple[str, ...], str]) -> str:
    """One line for the first problem: which key, where it came from, what is wrong."""
    err = exc.errors()[0]
    loc = tuple(str(p) for p in err["loc"])
    dotted = ".".join(p if not p.isdigit() else f"[{p}]" for p in loc).replace(".[", "[")
    where = env_origin.get(loc, origin)
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown setting '{dotted}'; check its spelling (`slice init` writes every setting)."
    value = err.get("input")
    shown = f" (got {value!r})" if not isinstance(value, dict | list) else ""
    return f"{where}: setting '{dotted}': {err['msg']}{shown}."


def load_settings(
    *,
    config: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Build the settings from every layer. The only place settings are made.

    ``overrides`` holds command-line flags as nested dicts (``{"smtp": {"port": 2525}}``).
    """
    environ = environ or {}
    cwd = (cwd or Path.cwd()).resolve()
    path = find_config(config, environ, cwd)

    data: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        data = _read_toml(path)
        _check_no_secrets(data, path)
        origin = str(path)

    env_layer: dict[str, Any] = {}
    env_origin: dict[tuple[str, ...], str] = {}
    for var, (section, key) in ENV_SETTINGS.items():
        if var in environ and environ[var] != "":
            env_layer.setdefault(section, {})[key] = environ[var]
            env_origin[(section, key)] = var
    data = _merge(data, env_layer)
    if overrides:
        data = _merge(data, overrides)

    secrets: dict[str, str] = {}
    for var, field in ENV_SECRETS.items():
        if environ.get(var) and not secrets.get(field):
            secrets[field] = environ[var]

    project_dir = path.parent if path is not None else cwd
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin, env_origin)) from None
    settings.project_dir = project_dir
    settings.config_file = path
    settings.secrets = Secrets(**secrets)
    names = [s.name for s in settings.sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(
            f"{origin}: two sources are named '{dupes[0]}'; give each [[sources]] a unique name."
        )
    return settings
