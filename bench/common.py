"""What several benches share, so that a baseline is measured one way everywhere.

- `peak_rss_mb`: a process's peak memory (VmHWM), with its children's if asked
- `run_phase`: a bench's phase in a fresh process, on this checkout or another one
- `one_message`, `aiosmtplib_send`: the send benches' message and their plain
  aiosmtplib baseline (the same bytes over reused connections, nothing else)

Imported by the bench scripts as ``common`` (a script's own folder is on sys.path);
the package is imported only inside the functions that need it, so a phase run on
another checkout (``--old-tree``) uses that checkout's code.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from newsletter.core.settings import Settings

SECRET = "bench-secret-key-0123456789abcdef"  # signs the benches' tokens


def status_kib(field: str) -> int:
    """A field of /proc/self/status in KiB (VmRSS now, VmHWM the peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def peak_rss_mb(*, children: bool = False) -> float:
    """This process's peak RSS in MB; with ``children``, the largest of it and its waited-for
    children's (a read-ahead parser, say).

    VmHWM, not ru_maxrss: Linux carries a parent's ru_maxrss over into a forked child,
    so a phase started by a bench that grew would report the bench's peak as its own.
    """
    own = status_kib("VmHWM") / 1024
    if not children:
        return own
    return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)  # KiB


def run_phase(script: str, tree: Path, name: str, *args: str) -> dict[str, float]:
    """``script --phase NAME ARGS...`` in a fresh process (so its peak memory is its own) on
    the code in ``tree`` (this checkout, or another one given as --old-tree); the figures it
    printed as JSON on its last line."""
    done = subprocess.run(
        [sys.executable, script, "--phase", name, *args],
        env={**os.environ, "PYTHONPATH": str(tree)},
        cwd=tree,
        check=True,
        capture_output=True,
        text=True,
    )
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def one_message(settings: Settings) -> bytes:
    """The bench issue's email to one reader, as `slice send` puts it on the wire."""
    from newsletter.core.clock import SystemClock
    from newsletter.issue.outbox import IssueFolder
    from newsletter.send.message import Reader
    from newsletter.send.setup import issue_message
    from tests.send_support import ISSUE

    message = issue_message(settings, IssueFolder.of(settings.outbox_dir, ISSUE))
    reader = Reader("bench-uid", "reader@example.com", "Ada Lovelace")
    return message.render(reader, now=SystemClock().now())


def aiosmtplib_send(port: int, data: bytes, count: int, connections: int) -> float:
    """The send benches' baseline: seconds for plain aiosmtplib to send ``data`` ``count``
    times over ``connections`` reused connections: no ledger, no fill-in, no signing."""
    import aiosmtplib

    left = count

    async def connection() -> None:
        nonlocal left
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
        await client.connect()
        while left > 0:
            left -= 1
            await client.sendmail("newsletter@example.org", ["reader@example.com"], data)
        await client.quit()

    async def run() -> None:
        await asyncio.gather(*(connection() for _ in range(connections)))

    started = time.perf_counter()
    asyncio.run(run())
    return time.perf_counter() - started
