"""The web side (`slice serve`): signup, confirm, unsubscribe, and the public archive.

`create_app` builds the FastAPI app from settings and a store; each part adds
its routes as a router of its own module (`signup`, `archive`); `issuecopy`
puts the web copy of an issue inside the site's frame.

Every template rendered by the app can use these globals, so the signup form
partial (``web/_signup.html``) works on any page that includes it:

- ``newsletter``: the ``[newsletter]`` settings (name, tagline, promise, ...)
- ``signup_form()``: what the form needs (action, a fresh form token, the
  honeypot field's name)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from newsletter.core.errors import StoreError
from newsletter.core.models import utcnow
from newsletter.core.settings import Settings
from newsletter.core.store import Store, open_store
from newsletter.issue.cards import date_label, range_label
from newsletter.issue.templating import template_environment
from newsletter.readers.mail import Mailer, SubscriberMail
from newsletter.readers.subscribers import Clock, Subscribers

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
log = logging.getLogger(__name__)
SPOOL_APPLY_SECONDS = 2.0  # how often spooled unsubscribes are looked for
RETRY_AFTER_SECONDS = 30  # told to clients when the database cannot take a request

# Sent with every page: no framing (the unsubscribe button must not be clickjacked),
# no type sniffing, and no full URLs (with their tokens) in Referer headers.
SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeaders:
    """Adds `SECURITY_HEADERS` to every response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in SECURITY_HEADERS if h[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


_STATUS_TEXT = {
    400: ("Bad request", "The page could not understand that request."),
    403: ("Not allowed", "That request is not allowed."),
    404: (
        "Page not found",
        "There is no page at this address. Check the link, or start again from the home page.",
    ),
    405: ("Not allowed", "This page cannot be used that way."),
    503: (
        "Please try again in a minute",
        "The site is busy and could not record that just now. Nothing was changed.",
    ),
}


async def _apply_spool_forever(subscribers: Subscribers) -> None:
    """Apply unsubscribes spooled while the database was busy, as soon as it answers."""
    while True:
        try:
            if subscribers.spool.pending():
                applied = await run_in_threadpool(subscribers.apply_spooled)
                if applied:
                    log.info("applied %d spooled unsubscribe(s)", applied)
        except Exception:  # keep trying: a spooled unsubscribe must not be dropped
            log.exception("spooled unsubscribes not applied; trying again")
        await asyncio.sleep(SPOOL_APPLY_SECONDS)


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    clock: Clock = utcnow,
    mailer: Mailer | None = None,
) -> FastAPI:
    """The app for ``settings``; ``store`` defaults to the project's database.

    ``clock`` and ``mailer`` are for tests (a fake clock, a recording mailer).
    """
    from newsletter.web import archive, signup

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        upkeep = asyncio.create_task(_apply_spool_forever(subscribers))
        try:
            yield
        finally:
            upkeep.cancel()
            await asyncio.gather(upkeep, return_exceptions=True)

    app = FastAPI(
        title=settings.newsletter.name,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = store if store is not None else open_store(settings)
    templates = template_environment(settings.templates_dir)
    app.state.templates = templates
    subscribers = Subscribers(settings, app.state.store, clock=clock)
    app.state.subscribers = subscribers
    from newsletter.send.notices import SmtpMailer

    app.state.subscriber_mail = SubscriberMail(
        subscribers, mailer=mailer or SmtpMailer(settings), templates=templates
    )
    app.state.signup_limiter = signup.SignupLimiter(settings.web.signups_per_ip_per_hour, clock)
    templates.globals["newsletter"] = settings.newsletter
    # a stored (UTC) moment as the editor's local date, for the dates readers see
    zone = settings.newsletter.tz

    def local(moment: datetime) -> datetime:
        return moment.replace(tzinfo=moment.tzinfo or UTC).astimezone(zone)

    templates.filters["local"] = local
    # one way to write a date on every page, the same as the emails (newsletter.issue.cards)
    templates.filters["date_label"] = date_label
    templates.filters["range_label"] = range_label
    templates.filters["datetime_attr"] = archive.datetime_attr
    templates.globals["signup_form"] = lambda: signup.SignupForm.fresh(subscribers)

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
        title, text = _STATUS_TEXT.get(exc.status_code, ("Something went wrong", str(exc.detail)))
        if exc.detail and exc.detail != HTTPStatus(exc.status_code).phrase:
            text = str(exc.detail)
        page = templates.get_template("web/error.html").render(title=title, text=text)
        return HTMLResponse(page, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> HTMLResponse:
        # the database stayed busy past every retry, or is down: say so, and when to come back
        log.error("%s %s: %s", request.method, request.url.path, exc)
        return await http_error(
            request,
            StarletteHTTPException(503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}),
        )

    app.include_router(signup.router)
    app.include_router(archive.router)
    app.add_middleware(SecurityHeaders)
    return app
