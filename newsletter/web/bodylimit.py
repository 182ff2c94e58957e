"""A limit on request bodies by the bytes actually received, chunked or not.

Every form this site takes is a few hundred bytes, so no request needs more than
`MAX_BODY_BYTES`. Content-Length is only a claim: a chunked body has none, and a
parser that trusts it reads whatever arrives. `BodyLimit` counts the bytes as the
app receives them and stops at the limit: the app's ``receive()`` raises
`BodyTooLarge` (routes that read a form turn it into their own 413 page) and, if
nothing answered yet, the middleware answers 413 and the server closes the
connection without reading the rest. Written here because Starlette has no
body limit (only per-part limits for multipart forms).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 16 * 1024

_PAGE = (
    b"<!doctype html><meta charset=utf-8><title>Too large</title>"
    b"<p>That request was far too large for this site, so it was not read.</p>"
)


class BodyTooLarge(Exception):
    """The request body went past the limit; the rest of it is not read."""


class BodyLimit:
    """Refuses (413) any request whose body, as received, is larger than ``limit`` bytes."""

    def __init__(self, app: ASGIApp, *, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(f"request body over {self.limit} bytes")
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            if started:
                raise
            await send(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [
                        (b"content-type", b"text/html; charset=utf-8"),
                        (b"content-length", str(len(_PAGE)).encode()),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": _PAGE})
