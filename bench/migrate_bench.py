"""What a test's migrated database costs: migrating a new one vs copying a migrated template.

    python bench/migrate_bench.py [--rounds N] [--pg postgresql://postgres@127.0.0.1:5432/test]

SQLite: `Store.open` on a new file (every migration) vs copying a migrated file and
opening that (which finds nothing to apply). PostgreSQL, when --pg is given:
CREATE DATABASE plus every migration vs CREATE DATABASE ... TEMPLATE a migrated one.
Prints the median of each and the ratio; tests/conftest.py uses the copies.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from newsletter.core.store import Store


def median_seconds(fn: Callable[[int], None], rounds: int) -> float:
    times = []
    for n in range(rounds):
        started = time.perf_counter()
        fn(n)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def sqlite(rounds: int) -> tuple[float, float]:
    folder = Path(tempfile.mkdtemp(prefix="slice-migrate-bench-"))
    try:
        template = folder / "template.db"
        Store.open(f"sqlite:///{template}").dispose()

        def migrate(n: int) -> None:
            Store.open(f"sqlite:///{folder / f'new{n}.db'}").dispose()

        def copy(n: int) -> None:
            target = folder / f"copy{n}.db"
            shutil.copyfile(template, target)
            Store.open(f"sqlite:///{target}").dispose()

        return median_seconds(migrate, rounds), median_seconds(copy, rounds)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def postgres(url: str, rounds: int) -> tuple[float, float]:
    admin_url = make_url(url).set(drivername="postgresql+psycopg")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def create(template: str | None = None) -> str:
        name = f"slice_bench_{uuid.uuid4().hex[:10]}"
        copy_of = f' TEMPLATE "{template}"' if template else ""
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"{copy_of}'))
        made.append(name)
        return name

    def open_url(name: str) -> str:
        return admin_url.set(database=name).render_as_string(hide_password=False)

    try:
        template = create()
        Store.open(open_url(template)).dispose()

        def migrate(_n: int) -> None:
            Store.open(open_url(create())).dispose()

        def copy(_n: int) -> None:
            Store.open(open_url(create(template))).dispose()

        return median_seconds(migrate, rounds), median_seconds(copy, rounds)
    finally:
        with admin.connect() as conn:
            for name in made:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--pg", default="", help="a PostgreSQL URL whose server may CREATE DATABASE"
    )
    args = parser.parse_args()
    rows = [("sqlite", *sqlite(args.rounds))]
    if args.pg:
        rows.append(("postgresql", *postgres(args.pg, args.rounds)))
    print(f"{'backend':<11} {'migrate':>9} {'copy':>9} {'ratio':>7}   (median of {args.rounds})")
    for backend, migrate, copy in rows:
        print(f"{backend:<11} {migrate * 1000:7.0f}ms {copy * 1000:7.0f}ms {migrate / copy:6.1f}x")


if __name__ == "__main__":
    main()
