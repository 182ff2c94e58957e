"""Archive pages kept until the papers change, shared by nothing but told by the database.

The papers change only when something writes them (an ingest, mostly); triggers
count every change in ``slice_counters`` (migration m071), so reading that one
row tells each `slice serve` worker whether its copy of a page is still right.
A page is also dropped after `MAX_AGE`, so the signup form's token in it stays fresh
(a form token is good for two days). Pages are few and small: at most
`MAX_PAGES`, least recently used dropped first.

A cached page costs one read of the counter and nothing else: no session, no
query of the papers, no template. The counter is read on a connection the cache
keeps for itself (outside the pool, in autocommit), about 20 µs on SQLite, so it
is read on the event loop itself; on PostgreSQL, a network round trip that could
hang while the server is away, it is read in a worker thread. When a page is
missing, one request renders it and the others asking for the same page at the
same time wait for that one (twenty visitors arriving just after an ingest start
one search, not twenty).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from newsletter.core.models import slice_counters

MAX_AGE = 60.0  # seconds
MAX_PAGES = 128
MAX_PAGE_BYTES = 512 * 1024

_VERSION = select(slice_counters.c.value).where(slice_counters.c.name == "papers")
_VERSION_SQL = "SELECT value FROM slice_counters WHERE name = 'papers'"
_INLINE_WAIT_MS = 200


class PageCache:
    """Rendered pages keyed by URL, valid while the papers' change counter stands still."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pages: OrderedDict[str, tuple[int, float, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self._conn: Any = None  # the DB-API connection the counter is read on
        self._conn_lock = threading.Lock()
        self._inline = engine.dialect.name == "sqlite"
        self._rendering: dict[tuple[str, int], asyncio.Future[bytes]] = {}

    def version(self) -> int:
        """The papers' change counter, as every worker sees it."""
        try:
            return self._read_own()
        except Exception:  # a dropped connection: once the usual way; a new one next time
            return self._read_pooled()

    def _read_own(self) -> int:
        with self._conn_lock:
            try:
                if self._conn is None:
                    self._conn = self._connect()
                cursor = self._conn.cursor()
                try:
                    cursor.execute(_VERSION_SQL)
                    row = cursor.fetchone()
                finally:
                    cursor.close()
                return int(row[0])
            except Exception:
                self._close()
                raise

    def _read_pooled(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(_VERSION).scalar_one())

    def _connect(self) -> Any:
        conn = self.engine.raw_connection()
        conn.detach()  # its own, for as long as the worker runs: no pool slot taken
        if self.engine.dialect.name == "postgresql":
            # each read sees the latest commit, and no transaction stays open between reads
            conn.dbapi_connection.set_autocommit(True)  # type: ignore[union-attr]
        else:
            # read on the event loop: never wait long for a lock (WAL readers rarely meet one)
            conn.cursor().execute(f"PRAGMA busy_timeout={_INLINE_WAIT_MS}")
        return conn

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken; a new one comes on next use
                conn.close()

    async def current_version(self) -> int:
        """`version`, read where it costs the event loop least (see the module's notes)."""
        if self._inline:
            try:
                return self._read_own()
            except Exception:  # the usual way, which may wait: not on the event loop
                return await run_in_threadpool(self._read_pooled)
        return await run_in_threadpool(self.version)

    def get(self, key: str, version: int) -> bytes | None:
        with self._lock:
            found = self._pages.get(key)
            if found is None:
                return None
            seen, made, body = found
            if seen != version or time.monotonic() - made > MAX_AGE:
                del self._pages[key]
                return None
            self._pages.move_to_end(key)
            return body

    def put(self, key: str, version: int, body: bytes) -> None:
        if len(body) > MAX_PAGE_BYTES:
            return
        with self._lock:
            self._pages[key] = (version, time.monotonic(), body)
            self._pages.move_to_end(key)
            while len(self._pages) > MAX_PAGES:
                self._pages.popitem(last=False)

    async def render(self, key: str, version: int, make: Callable[[], bytes]) -> bytes:
        """The page at ``key`` made by ``make`` (in a worker thread), and kept.

        Requests for a page that is being made wait for it instead of making it again.
        """
        flight = (key, version)
        pending = self._rendering.get(flight)
        while pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # this request was stopped, not the one making the page
            pending = self._rendering.get(flight)  # that one was stopped: make it here
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._rendering[flight] = future
        try:
            body = await run_in_threadpool(make)
        except BaseException as exc:
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()  # marked as seen: there may be nobody waiting
            else:
                future.cancel()
            raise
        finally:
            del self._rendering[flight]
        self.put(key, version, body)
        future.set_result(body)
        return body
