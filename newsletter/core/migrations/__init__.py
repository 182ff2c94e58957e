"""Ordered, named schema migrations, recorded in the ``slice_migrations`` table.

Each migration is a module ``mNNN_what.py`` in this package with a function
``upgrade(conn: Connection) -> None``. They run in name order, each in its own
transaction, and each is recorded when it commits. A migration never changes
after it has shipped: a new change is a new module.

The migrations spell out their tables instead of calling the models'
``create_all``, so that an old database and a new one end up with the same
schema however many migrations each has seen.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from sqlalchemy import Column, DateTime, MetaData, String, Table, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from newsletter.core.errors import MigrationError
from newsletter.core.models import utcnow

_NAME = re.compile(r"^m\d{3}_[a-z0-9_]+$")

_meta = MetaData()
migrations_table = Table(
    "slice_migrations",
    _meta,
    Column("name", String(200), primary_key=True),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Migration:
    name: str
    upgrade: Callable[[Connection], None]


def discover() -> list[Migration]:
    """Every migration module in this package, in order."""
    found: list[Migration] = []
    for info in pkgutil.iter_modules(__path__):
        if not _NAME.match(info.name):
            continue
        module: ModuleType = importlib.import_module(f"{__name__}.{info.name}")
        found.append(Migration(info.name, module.upgrade))
    return sorted(found, key=lambda m: m.name)


def applied(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        if not engine.dialect.has_table(conn, migrations_table.name):
            return []
        return [row[0] for row in conn.execute(select(migrations_table.c.name).order_by("name"))]


def migrate(engine: Engine, migrations: list[Migration] | None = None) -> list[str]:
    """Apply the migrations the database has not seen. Returns the names applied.

    Safe to call from several processes at once: the work happens under a write
    lock (SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's advisory lock), and each
    process re-reads what is applied once it holds the lock.
    """
    migrations = discover() if migrations is None else migrations
    done: list[str] = []
    try:
        with engine.connect().execution_options(slice_write=True) as conn:
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(5173011)")
                _meta.create_all(conn, checkfirst=True)
            for migration in migrations:
                with conn.begin():
                    if engine.dialect.name == "postgresql":
                        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(5173011)")
                    seen = conn.execute(
                        select(migrations_table.c.name).where(
                            migrations_table.c.name == migration.name
                        )
                    ).first()
                    if seen:
                        continue
                    try:
                        migration.upgrade(conn)
                    except SQLAlchemyError as exc:
                        raise MigrationError(
                            f"migration {migration.name} failed: {exc.__class__.__name__}: "
                            f"{str(exc.orig if hasattr(exc, 'orig') else exc).splitlines()[0]}"
                        ) from exc
                    conn.execute(
                        migrations_table.insert().values(name=migration.name, applied_at=utcnow())
                    )
                    done.append(migration.name)
    except (MigrationError, OperationalError):
        raise  # OperationalError: the database cannot be reached; the store says so
    except SQLAlchemyError as exc:
        raise MigrationError(f"cannot migrate the database: {exc}") from exc
    return done
