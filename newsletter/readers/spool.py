"""Unsubscribes that could not be written to the database yet, kept in a file until they are.

A one-click unsubscribe must never be lost. When the database stays busy past
a short wait (or cannot be reached at all), `Subscribers.unsubscribe` appends
the request to ``unsubscribe-spool.jsonl`` in the subscribers folder (next to
the SQLite database by default) and answers as if it were done: one JSON line
per request, written with one ``write`` under an exclusive ``flock`` and
flushed to disk (``fsync``) before the page is sent.

`slice serve` (every few seconds), `slice send` (before and during a send) and
the `slice subscribers` commands apply what is spooled: the file is renamed
under the lock (new requests start a new file), its lines are applied in one
transaction with the time each request was made, and it is deleted. A crash
between the two leaves the renamed file, which the next apply picks up; applying
a line twice changes nothing, because an unsubscribe is idempotent.

Python has no portable file-locking module; ``fcntl.flock`` (POSIX) is what
the servers Slice runs on offer, and is all this needs.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from newsletter.core.settings import Settings

log = logging.getLogger(__name__)

SPOOL_NAME = "unsubscribe-spool.jsonl"
_APPLYING = ".applying"


@dataclass(frozen=True)
class SpooledUnsubscribe:
    uid: str
    reason: str
    at: datetime


class UnsubscribeSpool:
    """The spool file of one project (see the module's docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / SPOOL_NAME
        self._lock_path = folder / f".{SPOOL_NAME}.lock"

    @classmethod
    def of(cls, settings: Settings) -> UnsubscribeSpool:
        return cls(settings.resolve(settings.paths.subscribers))

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def add(self, uid: str, *, reason: str, at: datetime) -> None:
        """Record one unsubscribe durably. Raises OSError when the file cannot be written."""
        line = json.dumps({"uid": uid, "reason": reason, "at": at.isoformat()}) + "\n"
        with self._locked():
            created = not self.path.exists()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                data = line.encode()
                if os.write(fd, data) != len(data):
                    raise OSError("short write to the unsubscribe spool")
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:  # the new file's name must survive a crash too
                _fsync_dir(self.folder)

    def pending(self) -> bool:
        """Whether anything waits to be applied (cheap: a stat or two)."""
        if self.path.is_file():
            return True
        return self.folder.is_dir() and any(self.folder.glob(f"{SPOOL_NAME}.*{_APPLYING}"))

    def take(self) -> list[Path]:
        """Move the spool aside for applying; every file waiting to be applied, oldest first."""
        if not self.pending():
            return []
        with self._locked():
            if self.path.is_file():
                aside = self.folder / f"{SPOOL_NAME}.{datetime.now().timestamp():.6f}.{os.getpid()}"
                self.path.rename(aside.with_name(aside.name + _APPLYING))
        return sorted(self.folder.glob(f"{SPOOL_NAME}.*{_APPLYING}"))

    @staticmethod
    def read(path: Path) -> list[SpooledUnsubscribe]:
        entries = []
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:  # another process applied it meanwhile
            return []
        for number, line in enumerate(text.splitlines(), start=1):
            try:
                data = json.loads(line)
                entries.append(
                    SpooledUnsubscribe(
                        str(data["uid"]), str(data["reason"]), datetime.fromisoformat(data["at"])
                    )
                )
            except (ValueError, KeyError, TypeError):
                # only a crash in the middle of a write leaves such a line; it was never answered
                log.warning("%s: line %d is not a spooled unsubscribe; skipped", path, number)
        return entries

    @staticmethod
    def done(path: Path) -> None:
        path.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
