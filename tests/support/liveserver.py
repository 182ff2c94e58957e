"""Run an ASGI app on a real uvicorn server on 127.0.0.1 (a free port), in a thread."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from newsletter.cli.serve import KEEP_ALIVE_SECONDS


class LiveServer:
    def __init__(self, app: Any) -> None:
        # IPPROTO_TCP, so asyncio sets TCP_NODELAY on accepted connections (no 40 ms
        # Nagle/delayed-ACK stall between a response's headers and its body)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        # proxy_headers off, as `slice serve` runs it: the peer is the client unless
        # the app is told to trust a proxy (web.trusted_proxies)
        # and idle connections kept as `slice serve` keeps them: with uvicorn's 5 s, a
        # server thread starved of the GIL by the client in this same process for 5 s
        # closed a connection on which a request was already waiting (seen in CI)
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="on",
            proxy_headers=False,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        self._thread.start()
        end = time.monotonic() + 10
        while not self._server.started and time.monotonic() < end:
            time.sleep(0.01)
        assert self._server.started, "uvicorn did not start"
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()
