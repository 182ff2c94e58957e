"""How a server's worker processes share the load: connections held and CPU used, per process.

Read from /proc (Linux): a server's workers are its child processes (or the server itself
when it has none), the connections each holds are the established sockets on the server's
port among its open files, and its CPU is utime + stime. bench/oneclick_bench.py prints
them per run (a worker that took most of the keep-alive connections shows as such), and
tests/test_serve_workers.py checks that every worker holds some.
"""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def workers(pid: int) -> list[int]:
    """The worker processes of the server ``pid``: its children, or itself when it has none."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and b"resource_tracker" not in cmdline:
            children.append(int(entry.name))
    return sorted(children) or [pid]


def named(name: str) -> list[int]:
    """Every process whose command name is ``name`` (``postgres``: the server and its backends)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == name:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (all its threads) so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # it ended (a backend whose connection closed): not counted
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def _established(port: int) -> set[str]:
    """Socket inodes of established TCP connections whose local port is ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, state, inode = parts[1], parts[3], parts[9]
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                found.add(inode)
    return found


def connections(pids: list[int], port: int) -> dict[int, int]:
    """How many established connections on ``port`` each of ``pids`` holds now."""
    inodes = _established(port)
    held = {}
    for pid in pids:
        count = 0
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            fds = []
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                count += 1
        held[pid] = count
    return held
