"""Another program holding a SQLite database's write lock, for the tests of busy databases."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from newsletter.core.store import Store


@contextmanager
def locked(store: Store) -> Iterator[None]:
    """Another program (an ingest, a send) holding SQLite's write lock until the block ends."""
    other = sqlite3.connect(store.engine.url.database or "", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("COMMIT")
        other.close()
