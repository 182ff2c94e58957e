"""Writers on one SQLite file take turns: a long writer gives way to the ones waiting.

SQLite has one write lock and no queue for it. A writer that finds it taken sleeps
in SQLite's busy handler and looks again (at most every 100 ms); a writer that
commits and at once begins its next transaction (an ingest, a chunk after a chunk)
takes the lock back in the microseconds between, so the sleepers may never see it
free. Seen under load: signups waited 30 s behind a 20,000-record ingest and gave up.

So each writer marks itself waiting while it waits: a shared `flock` on a file next
to the database (``<database>-writers``), held from before ``BEGIN IMMEDIATE`` until
the lock is taken. A long writer calls `give_way` between its transactions: when
anyone holds that mark it pauses long enough for every sleeper to look again
(`GAP_SECONDS`, over SQLite's longest sleep), and otherwise does not pause at all.

Writers that come often and briefly (the subscriber list's: a server worker's
one-click batches, signups, its mail queue) also queue for a turn
(`WriterTurns.turn`): an exclusive ``flock`` on ``<database>-turn``, taken before
``BEGIN IMMEDIATE`` and let go after the commit. A writer waiting there looks
again within 2 ms of the holder letting go (and gives up after its busy wait, as
SQLite would), where SQLite's busy handler sleeps 1, 2, 5 ... up to 100 ms between
looks: two `slice serve` workers writing one-click batches
side by side spent most of their time in those sleeps, and served fewer requests
than one worker.

Written here because neither SQLite nor SQLAlchemy offers fairness between
processes. Advisory locks work between the processes of one machine, which is
where a SQLite file's writers are; PostgreSQL queues its lock waiters itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from newsletter.core.errors import StoreBusyError

GAP_SECONDS = 0.15  # SQLite's busy handler sleeps at most 100 ms between looks
TURN_LOOK_SECONDS = 0.002  # the longest pause between two looks at a taken turn


class WriterTurns:
    """The waiting mark of one SQLite database file."""

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + "-writers")
        self.turn_path = database.with_name(database.name + "-turn")

    def _open(self, path: Path | None = None) -> int:
        # one descriptor per use: flock belongs to an open file, and threads of one
        # process must not share (or release) each other's marks
        return os.open(path or self.path, os.O_RDWR | os.O_CREAT, 0o600)

    @contextlib.contextmanager
    def turn(self, seconds: float) -> Iterator[None]:
        """Hold the brief writers' turn while the block runs.

        Waits at most ``seconds`` for the writers ahead, looking every few
        milliseconds, then raises `StoreBusyError`: a writer stopped while it holds
        the turn (SIGSTOP, a debugger) must not hold everyone else forever, and the
        caller's answer to a busy database (the unsubscribe spool) takes over.
        """
        try:
            fd = self._open(self.turn_path)
        except OSError:  # a read-only folder: no turns, SQLite's busy handler still works
            yield
            return
        try:
            deadline = time.monotonic() + seconds
            pause = 0.0005
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise StoreBusyError.after(seconds) from None
                    time.sleep(pause)
                    pause = min(pause * 2, TURN_LOOK_SECONDS)
            yield
        finally:
            os.close(fd)  # closing lets the next one in

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Mark this writer as waiting for the write lock while the block runs."""
        try:
            fd = self._open()
        except OSError:  # a read-only folder: no mark, SQLite still works
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # closing releases the mark

    def others_waiting(self) -> bool:
        """Whether another writer is waiting for the write lock now."""
        try:
            fd = self._open()
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def give_way(self, sleep: float = GAP_SECONDS) -> bool:
        """Pause between two transactions if another writer waits; whether it paused."""
        if not self.others_waiting():
            return False
        time.sleep(sleep)
        return True
