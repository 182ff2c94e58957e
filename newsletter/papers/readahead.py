"""A big file's records parsed in a helper process while ingest stores the ones before.

Parsing a PubMed file (XML, text hygiene, MathML) takes about as long as
validating and storing its records, and Python runs one of them at a time per
process. For a file over `READ_AHEAD_BYTES` the parse runs in a child process
(``spawn``, so no lock or thread of this process is copied) that sends records
in batches through a bounded queue: memory stays flat, and both halves run at
once on two cores. Smaller files are read in this process, where starting a
child would cost more than it saves.

A parse error in the child is raised here, in the order the records came, as
if the file had been read in this process; stopping early (an error while
storing) ends the child.
"""

from __future__ import annotations

import multiprocessing
import queue as queues
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from newsletter.core.errors import ParseError
from newsletter.papers.sources.base import PaperRecord

READ_AHEAD_BYTES = 4_000_000
BATCH = 250  # records per message from the child
_WAIT_SECONDS = 1.0  # how often the parent checks that the child is still alive


def read_records(path: Path, fmt: str | None = None) -> Iterator[PaperRecord]:
    """The records of ``path``, parsed ahead in a child process when the file is big."""
    from newsletter.papers.sources.files import read_file

    try:
        big = path.stat().st_size > READ_AHEAD_BYTES
    except OSError:
        big = False
    if not big:
        yield from read_file(path, fmt)
        return
    yield from _read_ahead(path, fmt)


def _read_ahead(path: Path, fmt: str | None) -> Iterator[PaperRecord]:
    context = multiprocessing.get_context("spawn")
    channel: Any = context.Queue(maxsize=8)
    child = context.Process(target=_parse, args=(path, fmt, channel), daemon=True)
    child.start()
    try:
        while True:
            try:
                kind, payload = channel.get(timeout=_WAIT_SECONDS)
            except queues.Empty:
                if not child.is_alive():
                    raise ParseError(
                        f"{path}: the process reading it stopped unexpectedly"
                    ) from None
                continue
            if kind == "records":
                yield from payload
            elif kind == "error":
                raise payload
            else:
                return
    finally:
        if child.is_alive():
            child.terminate()
        child.join()
        channel.close()


def _parse(path: Path, fmt: str | None, channel: Any) -> None:
    """The child: parse ``path`` and send its records, then "done" or the error."""
    from newsletter.core.errors import NewsletterError
    from newsletter.papers.sources.files import read_file

    batch: list[PaperRecord] = []
    try:
        for record in read_file(path, fmt):
            batch.append(record)
            if len(batch) >= BATCH:
                channel.put(("records", batch))
                batch = []
        if batch:
            channel.put(("records", batch))
        channel.put(("done", None))
    except NewsletterError as exc:
        if batch:
            channel.put(("records", batch))
        channel.put(("error", exc))
    except Exception as exc:  # a bug in a parser: still one clear line in the parent
        channel.put(("error", ParseError(f"{path}: {exc.__class__.__name__}: {exc}")))
