"""Settings: the layers, and the one-line errors for bad files and values."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from newsletter.core.config import load_settings
from newsletter.core.errors import ConfigError
from newsletter.core.project import default_config_text
from newsletter.core.settings import Settings


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file(tmp_path: Path) -> None:
    settings = load_settings(environ={}, cwd=tmp_path)
    assert settings.smtp.host == "127.0.0.1"
    assert settings.smtp.port == 1025
    assert settings.smtp.tls == "none"
    assert settings.project_dir == tmp_path.resolve()
    assert settings.database_url == f"sqlite:///{tmp_path.resolve()}/subscribers/slice.db"


def test_layers_file_then_environment_then_flags(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "slice.toml",
        '[smtp]\nhost = "relay.example.org"\nport = 2525\n'
        '[newsletter]\nname = "Radiology AI Weekly"\n',
    )
    from_file = load_settings(config=cfg, environ={})
    assert (from_file.smtp.host, from_file.smtp.port) == ("relay.example.org", 2525)

    env = {"SLICE_SMTP_PORT": "587", "SLICE_SMTP_TLS": "starttls"}
    from_env = load_settings(config=cfg, environ=env)
    assert (from_env.smtp.host, from_env.smtp.port, from_env.smtp.tls) == (
        "relay.example.org",
        587,
        "starttls",
    )

    flags = load_settings(config=cfg, environ=env, overrides={"smtp": {"port": 465}})
    assert flags.smtp.port == 465
    assert flags.smtp.tls == "starttls"
    assert flags.newsletter.name == "Radiology AI Weekly"


def test_config_found_by_env_var_then_working_folder(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write(tmp_path / "a" / "slice.toml", '[newsletter]\nname = "A"\n')
    write(tmp_path / "b" / "slice.toml", '[newsletter]\nname = "B"\n')
    assert load_settings(environ={}, cwd=tmp_path / "a").newsletter.name == "A"
    chosen = load_settings(
        environ={"SLICE_CONFIG": str(tmp_path / "b" / "slice.toml")}, cwd=tmp_path / "a"
    )
    assert chosen.newsletter.name == "B"
    assert chosen.project_dir == (tmp_path / "b").resolve()


def test_relative_paths_resolve_against_the_project(tmp_path: Path) -> None:
    cfg = write(tmp_path / "slice.toml", '[paths]\noutbox = "out"\n')
    settings = load_settings(config=cfg, environ={}, cwd=Path("/"))
    assert settings.outbox_dir == tmp_path.resolve() / "out"
    assert settings.database_url.endswith(f"{tmp_path.resolve()}/subscribers/slice.db")


def test_database_url_from_environment_is_kept_as_given(tmp_path: Path) -> None:
    url = "postgresql://someone@db.example.org/slice"
    assert load_settings(environ={"SLICE_DATABASE_URL": url}, cwd=tmp_path).database_url == url


def test_secrets_come_from_the_environment_only(tmp_path: Path) -> None:
    settings = load_settings(
        environ={"SLICE_SECRET_KEY": "k" * 32, "SLICE_SMTP_PASSWORD": "pw"}, cwd=tmp_path
    )
    assert settings.secrets.secret_key == "k" * 32
    assert settings.secrets.smtp_password == "pw"
    assert "pw" not in repr(settings.secrets)
    assert "pw" not in settings.model_dump_json()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[smtp]\npassword = "hunter2"\n', "'smtp.password' is a secret"),
        ('secret_key = "abc"\n', "set SLICE_SECRET_KEY"),
        ('[[sources]]\nname = "p"\nkind = "pubmed"\napi_key = "x"\n', "SLICE_PUBMED_API_KEY"),
    ],
)
def test_a_secret_in_the_file_is_refused(tmp_path: Path, text: str, message: str) -> None:
    cfg = write(tmp_path / "slice.toml", text)
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(config=cfg, environ={})
    assert str(cfg) in str(info.value)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[smtp]\nprot = 25\n", "unknown setting 'smtp.prot'"),
        ("[smpt]\nport = 25\n", "unknown setting 'smpt'"),
        ('[smtp]\nport = "twenty-five"\n', "setting 'smtp.port'"),
        ('[smtp]\ntls = "ssl"\n', "setting 'smtp.tls'"),
        ('[web]\nbase_url = "example.org"\n', "setting 'web.base_url'"),
        ("[send]\nrate = -1\n", "setting 'send.rate'"),
    ],
)
def test_bad_file_values_name_the_key_and_the_file(
    tmp_path: Path, text: str, expected: str
) -> None:
    cfg = write(tmp_path / "slice.toml", text)
    with pytest.raises(ConfigError) as info:
        load_settings(config=cfg, environ={})
    message = str(info.value)
    assert expected in message
    assert str(cfg) in message
    assert "\n" not in message


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^SLICE_SMTP_PORT: setting 'smtp.port'"):
        load_settings(environ={"SLICE_SMTP_PORT": "abc"}, cwd=tmp_path)


def test_broken_toml_is_one_line(tmp_path: Path) -> None:
    cfg = write(tmp_path / "slice.toml", "[smtp\nport = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_settings(config=cfg, environ={})
    assert "\n" not in str(info.value)


def test_missing_config_flag_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such settings file"):
        load_settings(config=tmp_path / "nope.toml", environ={})


def test_duplicate_source_names(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "slice.toml",
        '[[sources]]\nname = "a"\nkind = "rss"\n[[sources]]\nname = "a"\nkind = "arxiv"\n',
    )
    with pytest.raises(ConfigError, match="two sources are named 'a'"):
        load_settings(config=cfg, environ={})


def test_secret_key_required_with_a_hint(tmp_path: Path) -> None:
    settings = load_settings(environ={}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="SLICE_SECRET_KEY is not set"):
        settings.require_secret_key()


def test_generated_config_lists_every_setting_at_its_default() -> None:
    text = default_config_text()
    body = text.split("# Paper sources")[0]
    setting = re.compile(r"^# ([a-z_]+) = ")
    kept = [line[2:] if setting.match(line) else line for line in body.splitlines()]
    parsed = tomllib.loads("\n".join(kept))
    defaults = Settings().model_dump(mode="json", exclude={"sources"})
    assert parsed == defaults
