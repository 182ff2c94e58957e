"""Fixtures shared by every part's tests: a project folder, databases, an SMTP peer, an HTTP peer."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
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
def store(settings: Settings, migrated_sqlite: Path) -> Iterator[Store]:
    """A fresh SQLite database file in the project, migrated."""
    _place_migrated(settings.database_url, migrated_sqlite)
    with Store.open(settings.database_url) as opened:
        yield opened


def _pg_admin_url() -> URL:
    admin_url = make_url(PG_ADMIN_URL)
    if admin_url.drivername in ("postgresql", "postgres"):
        admin_url = admin_url.set(drivername="postgresql+psycopg")
    return admin_url


def _fresh_postgres(template: str | None = None) -> Iterator[str]:
    """A new database of its own for one test: empty, or a copy of ``template``."""
    if not PG_ADMIN_URL:
        pytest.skip("PostgreSQL tests need SLICE_TEST_DATABASE_URL (set by .ci/run)")
    admin_url = _pg_admin_url()
    name = f"slice_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    copy_of = f' TEMPLATE "{template}"' if template else ""
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"{copy_of}'))
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


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file with every migration applied, made once per run.

    A test that wants a migrated store gets a copy of it: copying the file takes
    a millisecond, migrating a new one a good part of a second on a busy machine.
    """
    path = tmp_path_factory.mktemp("migrated") / "slice.db"
    Store.open(f"sqlite:///{path}").dispose()
    # the last connection closed checkpoints the WAL into the file and removes it
    assert not path.with_name(path.name + "-wal").exists()
    return path


@pytest.fixture(scope="session")
def migrated_postgres() -> Iterator[str]:
    """The name of a PostgreSQL database with every migration applied, made once per run.

    Each test's migrated database is created from it (CREATE DATABASE ... TEMPLATE).
    """
    for url in _fresh_postgres():
        with Store.open(url):
            pass  # migrated, and disconnected: a template must have no sessions
        name = make_url(url).database
        assert name is not None
        yield name


def _place_migrated(url: str, template: Path) -> None:
    """Put a copy of the migrated ``template`` where ``url`` (a SQLite URL) has no file yet."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return
    target = Path(parsed.database)
    if parsed.database == ":memory:" or target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, target)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each backend: a SQLite file, and PostgreSQL when configured.

    For `any_store` it is already migrated (a copy of the migrated template),
    which is what `any_store` would make of it anyway.
    """
    migrated = "any_store" in request.fixturenames
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'db' / 'slice.db'}"
        if migrated:
            _place_migrated(url, request.getfixturevalue("migrated_sqlite"))
        yield url
    else:
        if not PG_ADMIN_URL:
            pytest.skip("PostgreSQL tests need SLICE_TEST_DATABASE_URL (set by .ci/run)")
        template = request.getfixturevalue("migrated_postgres") if migrated else None
        yield from _fresh_postgres(template)


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
def cstore(csettings: Settings, migrated_sqlite: Path) -> Iterator[Store]:
    """The compose tests' database, migrated."""
    _place_migrated(csettings.database_url, migrated_sqlite)
    with Store.open(csettings.database_url) as opened:
        yield opened
