"""A real HTTP server on 127.0.0.1 that replays recorded answers, for the fetch code.

    server.add("/api/query", body=path.read_bytes(), content_type="application/atom+xml")
    server.add("/api/query", status=429, headers={"Retry-After": "2"})   # answered first
    server.add("/slow", delay=3)

Answers for a path are served in the order they were added; the last one repeats.
Every request is recorded (path, query, headers, time).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/plain; charset=utf-8"
    delay: float = 0.0


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    at: float


class ReplayServer:
    def __init__(self) -> None:
        self.replies: dict[str, list[Reply]] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer._serve(self)

            def do_POST(self) -> None:
                outer._serve(self)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(
        self,
        path: str,
        body: bytes | str = b"",
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        content_type: str = "text/plain; charset=utf-8",
        delay: float = 0.0,
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.replies.setdefault(path, []).append(
            Reply(status, data, headers or {}, content_type, delay)
        )

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        with self._lock:
            self.requests.append(
                Request(
                    handler.command,
                    parts.path,
                    parse_qs(parts.query),
                    dict(handler.headers.items()),
                    time.monotonic(),
                )
            )
            queue = self.replies.get(parts.path)
            if not queue:
                reply = Reply(404, b"not found")
            elif len(queue) > 1:
                reply = queue.pop(0)
            else:
                reply = queue[0]
        if reply.delay:
            time.sleep(reply.delay)
        try:
            handler.send_response(reply.status)
            handler.send_header("Content-Type", reply.content_type)
            handler.send_header("Content-Length", str(len(reply.body)))
            for key, value in reply.headers.items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def start(self) -> ReplayServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
