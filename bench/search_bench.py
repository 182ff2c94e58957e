"""Search at 100,000 papers on SQLite and PostgreSQL: common words, prefixes, sixteen ORs.

    .venv/bin/python bench/search_bench.py [--papers 100000] [--rounds 5] [--pg URL]

Fills a fresh SQLite file and (when a PostgreSQL server URL is given with
``--pg`` or SLICE_TEST_DATABASE_URL) a fresh PostgreSQL database with the same
invented papers; one in ten carries inline markup (``VO<sub>2</sub>max``,
``<i>in vivo</i>``). Rows go in with plain SQL so the index is built by the
triggers, as for any writer. Then times `search_papers` (the archive's whole
search: match, count, rank, read the page's rows) for typical queries. The
baseline, measured in the same run on the same database, is the bare index
count of one common word (FTS5 ``MATCH`` / ``@@`` on the GIN-indexed
documents), the least any search of that word can do.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, make_url, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from archive_bench import invent  # this folder: the same invented papers

from newsletter.core.store import Store
from newsletter.papers.search import SearchParams, search_papers

COMMON = "learning"
QUERIES = {
    "common word": COMMON,
    "two common words": "deep learning",
    "stemmed plural": "radiologists",
    "phrase": '"large language model"',
    "prefix": "mammo*",
    "short prefix": "seg*",
    "16 ORs of common words": " OR ".join(
        [
            "learning",
            "patients",
            "study",
            "results",
            "performance",
            "images",
            "dataset",
            "clinical",
            "validation",
            "cohort",
            "baseline",
            "sensitivity",
            "specificity",
            "workflow",
            "reader",
            "scanners",
        ]
    ),
    "16 ORs of one common word": " OR ".join([COMMON] * 16),
    "markup as text": "VO2max",
    "filtered + sorted": COMMON,  # with source, since and sort=newest
}
MARKUP = [
    " Peak VO<sub>2</sub>max rose by 12%.",
    " Effects <i>in vivo</i> were smaller.",
    " Dose was 10<sup>-3</sup> Gy.",
]
COLUMNS = (
    "title, authors, abstract, source, kind, published, url, journal, doi, title_key, "
    "seen_in, extra, first_seen, updated_at"
)


def rows(count: int) -> Iterator[tuple[object, ...]]:
    rng = random.Random(42)
    for i in range(count):
        row = list(invent(rng, i))
        if i % 10 == 0:
            row[2] = str(row[2]) + MARKUP[i // 10 % len(MARKUP)]
        yield tuple(row)


def fill_sqlite(db: Path, count: int) -> float:
    started = time.perf_counter()
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany(
            f"INSERT INTO papers ({COLUMNS}) VALUES ({', '.join('?' * 14)})",
            rows(count),
        )
    conn.execute("PRAGMA optimize")
    conn.close()
    return time.perf_counter() - started


def fill_postgres(store: Store, count: int) -> float:
    started = time.perf_counter()
    names = [c.strip() for c in COLUMNS.split(",")]
    insert = text(f"INSERT INTO papers ({COLUMNS}) VALUES ({', '.join(':' + n for n in names)})")
    batch: list[dict[str, object]] = []
    with store.engine.begin() as conn:
        for row in rows(count):
            batch.append(dict(zip(names, row, strict=True)))
            if len(batch) == 2000:
                conn.execute(insert, batch)
                batch = []
        if batch:
            conn.execute(insert, batch)
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    return time.perf_counter() - started


@contextmanager
def fresh_postgres(admin: str) -> Iterator[str]:
    url = make_url(admin)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    name = f"slice_bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def timed(run: Callable[[], Any], rounds: int) -> tuple[float, float, Any]:
    result = run()  # warm the caches once
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        result = run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times), result


def bench(store: Store, rounds: int) -> None:
    dialect = store.engine.dialect.name
    if dialect == "sqlite":
        baseline_sql = "SELECT count(*) FROM papers_fts WHERE papers_fts MATCH :q"
    else:
        baseline_sql = (
            "SELECT count(*) FROM paper_search "
            "WHERE document @@ plainto_tsquery('english'::regconfig, :q)"
        )

    def baseline() -> int:
        with store.read() as session:
            return int(session.execute(text(baseline_sql), {"q": COMMON}).scalar_one())

    base_p50, base_max, hits = timed(baseline, rounds)
    print(f"\n{dialect}: baseline (bare index count of {COMMON!r}, {hits:,} hits)")
    print(f"  p50 {base_p50:7.1f} ms   max {base_max:7.1f} ms")
    print(f"  {'query':28} {'hits':>8} {'p50 ms':>8} {'max ms':>8} {'x base':>7}")
    worst = 0.0
    for label, q in QUERIES.items():
        params = SearchParams(q=q)
        if label.startswith("filtered"):
            params = SearchParams(q=q, source="pubmed", since=None, sort="newest")

        def run(params: SearchParams = params) -> int:
            with store.read() as session:
                return search_papers(session, params).total

        p50, top, total = timed(run, rounds)
        worst = max(worst, top)
        print(f"  {label:28} {total:>8,} {p50:8.1f} {top:8.1f} {p50 / base_p50:6.1f}x")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"  slowest single search: {worst:.0f} ms (load average {load} on {os.cpu_count()} CPUs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--papers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5, help="timed runs per query")
    parser.add_argument("--pg", default=os.environ.get("SLICE_TEST_DATABASE_URL", ""))
    parser.add_argument("--only", choices=["sqlite", "postgresql"], default=None)
    args = parser.parse_args()

    if args.only != "postgresql":
        db = Path(tempfile.mkdtemp(prefix="slice-search-bench-")) / "slice.db"
        with Store.open(f"sqlite:///{db}") as store:
            seconds = fill_sqlite(db, args.papers)
            print(f"sqlite: {args.papers:,} papers stored and indexed in {seconds:.1f} s")
            bench(store, args.rounds)
    if args.only != "sqlite" and args.pg:
        with fresh_postgres(args.pg) as url, Store.open(url) as store:
            seconds = fill_postgres(store, args.papers)
            print(f"\npostgresql: {args.papers:,} papers stored and indexed in {seconds:.1f} s")
            bench(store, args.rounds)


if __name__ == "__main__":
    main()
