"""What the papers table's triggers cost an ingest: the same rows inserted with and without them.

    .venv/bin/python bench/ingest_triggers_bench.py [--records 10000] [--old-tree DIR]

Ingests a generated PubMed file (`ingest_bench.py`'s) into a new SQLite database
with this checkout's schema (and, with ``--old-tree``, another one with that
checkout's), then inserts the stored rows again with plain `sqlite3`, 250 rows per
``BEGIN IMMEDIATE`` transaction as ingest writes them, into copies of the empty
schema: with every trigger, without the search index's insert trigger, without the
change counter's, and without either. Prints the CPU seconds of each, best of
``--rounds``; the difference to "no triggers" is what the trigger costs every ingest.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from common import run_phase
from ingest_bench import write_file

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 250
TRIGGERS = {"search index": "papers_fts_insert", "change counter": "papers_version_insert"}


def reinsert(source: Path, target: Path, drop: tuple[str, ...]) -> float:
    """CPU seconds to insert ``source``'s papers into an empty ``target`` of the same schema."""
    with sqlite3.connect(source) as old:
        rows = old.execute("SELECT * FROM papers ORDER BY id").fetchall()
        columns = [d[0] for d in old.execute("SELECT * FROM papers LIMIT 1").description]
        schema = old.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
            "AND name NOT LIKE 'sqlite_%' ORDER BY CASE type WHEN 'table' THEN 0 ELSE 1 END"
        ).fetchall()
    new = sqlite3.connect(target, isolation_level=None)
    shadow = {f"papers_fts_{part}" for part in ("data", "idx", "content", "docsize", "config")}
    for kind, name, sql in schema:
        if not (kind == "table" and name in shadow):  # FTS5 makes its own
            new.execute(sql)
    if new.execute("SELECT count(*) FROM sqlite_master WHERE name = 'slice_counters'").fetchone()[
        0
    ]:
        new.execute("INSERT INTO slice_counters (name, value) VALUES ('papers', 0)")
    for trigger in drop:
        new.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    marks = ", ".join("?" for _ in columns)
    insert = f"INSERT INTO papers ({', '.join(columns)}) VALUES ({marks})"
    start = time.process_time()
    for at in range(0, len(rows), CHUNK):
        new.execute("BEGIN IMMEDIATE")
        new.executemany(insert, rows[at : at + CHUNK])
        new.execute("COMMIT")
    seconds = time.process_time() - start
    new.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--old-tree", type=Path, help="A checkout whose schema to compare with.")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    script = str(ROOT / "bench" / "ingest_bench.py")
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "pubmed.xml"
        write_file(xml, args.records)
        trees = {"this checkout": ROOT}
        if args.old_tree:
            trees["old tree"] = args.old_tree.resolve()
        print(f"{args.records} rows, CPU seconds (best of {args.rounds}):")
        for label, tree in trees.items():
            db = Path(tmp) / f"{label.replace(' ', '_')}.db"
            run_phase(script, tree, "old", "--file", str(xml), "--db", str(db))
            variants = {
                "every trigger": (),
                **{f"without the {k}": (v,) for k, v in TRIGGERS.items()},
                "no triggers": tuple(TRIGGERS.values()),
            }
            for name, drop in variants.items():
                best = float("inf")
                for _ in range(args.rounds):
                    target = Path(tmp) / "copy.db"
                    best = min(best, reinsert(db, target, drop))
                    target.unlink()
                print(f"  {label:<14} {name:<30} {best:6.2f}")


if __name__ == "__main__":
    main()
