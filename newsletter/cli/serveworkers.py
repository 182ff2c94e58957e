"""`slice serve --workers N`: N uvicorn processes, each on a listening socket of its own.

uvicorn's own ``--workers`` binds one socket and shares it: every worker waits on
it, and the one that wakes first accepts every connection waiting at that moment.
Keep-alive clients (a proxy's upstream connections, a mail provider's one-click
POSTs) stay on the connection they opened, so with 20 clients arriving together
one worker was seen holding all 20 while the other sat idle, and two workers
served no more than one.

Here each worker binds the address itself with ``SO_REUSEPORT`` and the kernel
spreads new connections over the workers' sockets (by a hash of each
connection's addresses and ports). Before any worker starts, this process binds
the address once without that option, so that a port already in use (a second
`slice serve` too) is an error as it would be with one worker, not a silent share.

This process only supervises: it starts the workers, starts a worker again if
one dies after it started serving, and on SIGTERM (or Ctrl-C, unless SIGINT is
ignored) asks each worker to finish its requests and waits for them.
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
import sys
import threading
import time
from multiprocessing.process import BaseProcess
from typing import Any

from newsletter.core.errors import NewsletterError

BACKLOG = 2048  # uvicorn's default
STOP_SECONDS = 30  # how long a stopping worker may take to finish its requests
STARTUP_FAILURE = 3  # uvicorn's exit code for a worker that could not start
# a worker that ends this soon after it started is taken as one that cannot start
# (bad settings, a broken template folder): starting it again would fail again
SETTLED_SECONDS = 60.0


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def check_free(host: str, port: int) -> int:
    """Raise if ``host:port`` is taken (by anything, another `slice serve` included); the port.

    Port 0 is given a free port, which the workers then share.
    """
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the workers do
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise NewsletterError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                "is another `slice serve` running? Choose another --port."
            ) from exc
        found: int = probe.getsockname()[1]
        return found


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket of this worker's own on ``host:port``, sharing the port with the other workers."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.set_inheritable(False)
    return sock


def _worker(host: str, port: int, options: dict[str, Any]) -> None:
    """One worker process: uvicorn on a socket of its own (SIGINT and SIGTERM end it)."""
    import uvicorn

    try:
        sock = listening_socket(host, port)
    except OSError as exc:
        print(f"Error: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(STARTUP_FAILURE) from None
    config = uvicorn.Config(host=host, port=port, **options)
    uvicorn.Server(config).run(sockets=[sock])


def run_workers(workers: int, host: str, port: int, options: dict[str, Any]) -> None:
    """Run ``workers`` processes serving ``options["app"]`` on ``host:port`` until a signal."""
    port = check_free(host, port)
    stop = threading.Event()
    stop_signals = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        stop_signals.append(signal.SIGINT)
    for sig in stop_signals:
        signal.signal(sig, lambda _sig, _frame: stop.set())
    # spawned, not forked: this process has the store open, and a worker must not share
    # its connections; each worker builds the app from the settings (SLICE_SERVE_WORKER)
    spawn = multiprocessing.get_context("spawn")

    started: dict[int, float] = {}

    def start(number: int) -> BaseProcess:
        proc = spawn.Process(
            target=_worker, args=(host, port, options), name=f"slice-serve-{number}"
        )
        proc.start()
        started[number] = time.monotonic()
        return proc

    running = [start(n) for n in range(workers)]
    failed = False
    try:
        while not stop.wait(0.5):
            for number, proc in enumerate(running):
                if proc.is_alive() or stop.is_set():
                    continue
                if time.monotonic() - started[number] < SETTLED_SECONDS:
                    failed = True  # the same again would fail the same way
                    stop.set()
                    break
                running[number] = start(number)  # it died while serving: replace it
    finally:
        for proc in running:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: uvicorn finishes the requests under way
        for proc in running:
            proc.join(STOP_SECONDS)
            if proc.is_alive():
                proc.kill()
                proc.join()
    if failed:
        raise NewsletterError("a `slice serve` worker could not start; the lines above say why.")
