"""Archive pages kept until the papers change, shared by nothing but told by the database.

The papers change only when something writes them (an ingest, mostly); triggers
count every change in ``slice_counters`` (migration m071), so reading that one
row tells each `slice serve` worker whether its copy of a page is still right.
A page is also dropped after `MAX_AGE`, so the signup form's token in it stays fresh
(a form token is good for two days). Pages are few and small: at most
`MAX_PAGES`, least recently used dropped first.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from sqlalchemy import select
from sqlalchemy.engine import Engine

from newsletter.core.models import slice_counters

MAX_AGE = 60.0  # seconds
MAX_PAGES = 128
MAX_PAGE_BYTES = 512 * 1024

_VERSION = select(slice_counters.c.value).where(slice_counters.c.name == "papers")


class PageCache:
    """Rendered pages keyed by URL, valid while the papers' change counter stands still."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pages: OrderedDict[str, tuple[int, float, str]] = OrderedDict()
        self._lock = threading.Lock()

    def version(self) -> int:
        """The papers' change counter, as every worker sees it."""
        with self.engine.connect() as conn:
            return int(conn.execute(_VERSION).scalar_one())

    def get(self, key: str, version: int) -> str | None:
        with self._lock:
            found = self._pages.get(key)
            if found is None:
                return None
            seen, made, html = found
            if seen != version or time.monotonic() - made > MAX_AGE:
                del self._pages[key]
                return None
            self._pages.move_to_end(key)
            return html

    def put(self, key: str, version: int, html: str) -> None:
        if len(html) > MAX_PAGE_BYTES:
            return
        with self._lock:
            self._pages[key] = (version, time.monotonic(), html)
            self._pages.move_to_end(key)
            while len(self._pages) > MAX_PAGES:
                self._pages.popitem(last=False)
