"""Fixtures shared by every part's tests: a project folder, databases, an SMTP peer, an HTTP peer."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

from newsletter.cli import app
from newsletter.core.config import load_settings
from newsletter.core.project import init_project
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from tests.support.httpserver import ReplayServer
from tests.support.smtpd import RecordingSMTPServer

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TEST_SECRET = "test-secret-key-0123456789abcdef"
PG_ADMIN_URL = os.environ.get("SLICE_TEST_DATABASE_URL", "")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A new, empty Slice project folder (what `slice init` makes)."""
    root = tmp_path / "project"
    init_project(root, name="Test Weekly")
    return root


@pytest.fixture
def environ() -> dict[str, str]:
    """The environment the settings see: only a signing key."""
    return {"SLICE_SECRET_KEY": TEST_SECRET}


@pytest.fixture
def settings(project: Path, environ: dict[str, str]) -> Settings:
    return load_settings(config=project / "slice.toml", environ=environ)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    """A fresh SQLite database file in the project, migrated."""
    with Store.open(settings.database_url) as opened:
        yield opened


def _fresh_postgres() -> Iterator[str]:
    if not PG_ADMIN_URL:
        pytest.skip("PostgreSQL tests need SLICE_TEST_DATABASE_URL (set by .ci/run)")
    admin_url = make_url(PG_ADMIN_URL)
    if admin_url.drivername in ("postgresql", "postgres"):
        admin_url = admin_url.set(drivername="postgresql+psycopg")
    name = f"slice_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        pytest.skip(
            f"PostgreSQL at SLICE_TEST_DATABASE_URL is not reachable: {exc.__class__.__name__}"
        )
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each backend: a SQLite file, and PostgreSQL when configured."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'slice.db'}"
    else:
        yield from _fresh_postgres()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """An empty PostgreSQL database (skipped without SLICE_TEST_DATABASE_URL)."""
    yield from _fresh_postgres()


@pytest.fixture
def any_store(db_url: str) -> Iterator[Store]:
    """A migrated store on each backend."""
    with Store.open(db_url) as opened:
        yield opened


@pytest.fixture
def smtp_server() -> Iterator[RecordingSMTPServer]:
    """A real SMTP server on 127.0.0.1 that records messages and can be told to fail."""
    server = RecordingSMTPServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp_environ(environ: dict[str, str], smtp_server: RecordingSMTPServer) -> dict[str, str]:
    """The environment pointed at the recording SMTP server."""
    return {**environ, "SLICE_SMTP_HOST": "127.0.0.1", "SLICE_SMTP_PORT": str(smtp_server.port)}


@pytest.fixture
def replay_server() -> Iterator[ReplayServer]:
    """A real HTTP server on 127.0.0.1 serving recorded payloads."""
    server = ReplayServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def run_cli(project: Path, environ: dict[str, str]) -> Callable[..., Result]:
    """Run `slice ARGS...` against the test project, as a person would type it."""

    def run(
        *args: str, env: dict[str, str] | None = None, input: str | None = None, **kw: Any
    ) -> Result:
        runner = CliRunner()
        full_env: dict[str, str | None] = {
            k: None for k in os.environ if k.startswith("SLICE_") or k == "NCBI_API_KEY"
        }
        full_env.update(env if env is not None else environ)
        return runner.invoke(
            app, ["--config", str(project / "slice.toml"), *args], env=full_env, input=input, **kw
        )

    return run


@pytest.fixture
def csettings(project: Path, environ: dict[str, str]) -> Settings:
    """Settings for the compose tests: the test project with the compose test profile."""
    from tests.composedata import project_settings

    return project_settings(project, environ)


@pytest.fixture
def cstore(csettings: Settings) -> Iterator[Store]:
    """The compose tests' database, migrated."""
    with Store.open(csettings.database_url) as opened:
        yield opened
