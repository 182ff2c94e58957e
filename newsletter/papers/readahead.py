"""A big file's records parsed in a helper process while ingest stores the ones before.

Parsing a PubMed file (XML, text hygiene, MathML) takes about as long as
storing its records, and Python runs one of them at a time per process. For a
file over `READ_AHEAD_BYTES` the parse, and each record's validation
(`newsletter.papers.records.validate`), run in a child process,
``python -m newsletter.papers.readahead FILE [FORMAT]``, which writes the records
to its stdout in pickled batches: the pipe's own back-pressure keeps memory
flat, and both halves run at once on two cores. The pipe is widened to 1 MB
(Linux) so that the parser can run a whole batch ahead. Smaller files are read in this
process, where starting a child would cost more than it saves.

A plain child process rather than `multiprocessing`: its ``spawn`` start method
re-runs the caller's main script, which breaks any script that calls ingest
without an ``if __name__ == "__main__"`` guard. The pickles come only from that
child, which runs this package's code on the file the caller named.

A parse error in the child is raised here, in the order the records came, as
if the file had been read in this process; stopping early (an error while
storing) ends the child.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO

from newsletter.core.errors import NewsletterError, ParseError
from newsletter.papers.sources.base import PaperRecord

READ_AHEAD_BYTES = 4_000_000
BATCH = 250  # records per pickled batch
PIPE_BYTES = 1 << 20  # the pipe's size (Linux's default limit for any user)


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
    # the child sees the modules this process sees, however it was started
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    child = subprocess.Popen(  # noqa: S603 - this interpreter, this module, the caller's file
        [sys.executable, "-m", __name__, str(path), fmt or ""],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        bufsize=PIPE_BYTES,
        env=env,
    )
    assert child.stdout is not None
    _widen(child.stdout)
    try:
        while True:
            try:
                kind, payload = pickle.load(child.stdout)  # noqa: S301 - from our own child
            except (EOFError, pickle.UnpicklingError):
                code = child.wait()
                raise ParseError(
                    f"{path}: the process reading it stopped unexpectedly (exit status {code})"
                ) from None
            if kind == "records":
                yield from payload
            elif kind == "error":
                raise payload
            else:
                return
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdout.close()


def _widen(pipe: IO[bytes]) -> None:
    """Let a batch or more wait in the pipe (Linux; elsewhere the pipe stays as it is).

    A pipe holds 64 KB and a batch is ~600 KB: the two processes handed over every
    64 KB, each handover waiting for the other to be scheduled, which on a busy
    machine cost more wall time than the parse. With room for a whole batch the
    parser runs a batch ahead and each side blocks only when it is really ahead.
    """
    try:
        import fcntl
    except ImportError:  # not a Unix
        return
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is None:
        return
    # above the system's limit (/proc/sys/fs/pipe-max-size) the pipe keeps its size
    with contextlib.suppress(OSError):
        fcntl.fcntl(pipe.fileno(), set_size, PIPE_BYTES)


def _send(out: BinaryIO, kind: str, payload: object) -> None:
    pickle.dump((kind, payload), out, protocol=pickle.HIGHEST_PROTOCOL)


def main(argv: list[str]) -> int:
    """The child: parse and validate the file's records, send them, then "done" or the error."""
    from newsletter.papers.records import validate
    from newsletter.papers.sources.files import read_file

    path, fmt = Path(argv[0]), (argv[1] if len(argv) > 1 and argv[1] else None)
    out = sys.stdout.buffer
    batch: list[PaperRecord] = []
    try:
        for record in read_file(path, fmt):
            reason = validate(record)  # here, on the other core, rather than in ingest
            if reason:
                record.extra["problem"] = reason  # what ingest's validate reports
            batch.append(record)
            if len(batch) >= BATCH:
                _send(out, "records", batch)
                batch = []
        if batch:
            _send(out, "records", batch)
        _send(out, "done", None)
    except BrokenPipeError:  # the parent stopped reading (it failed to store): nothing to do
        return 0
    except NewsletterError as exc:
        if batch:
            _send(out, "records", batch)
        _send(out, "error", ParseError(str(exc)))
    except Exception as exc:  # a bug in a parser: still one clear line in the parent
        _send(out, "error", ParseError(f"{path}: {exc.__class__.__name__}: {exc}"))
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
