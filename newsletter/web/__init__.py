"""The web side (`slice serve`): signup, confirm, unsubscribe, and the public archive.

`create_app` builds the FastAPI app from settings and a store; each part adds
its routes as a router of its own module (`signup`, `confirm`, `archive`);
`issuecopy` puts the web copy of an issue inside the site's frame. While it
runs, a task sends the queued confirmation and welcome emails
(`newsletter.readers.mailqueue`), retrying while the relay is down. `pages`
holds what the signup and link pages share, `limits` the signup limits kept in
the database, `bodylimit` the cap on request bodies by bytes received,
`pagecache` the archive pages kept until the papers change, and `oneclick` the
one-click unsubscribes written together as they arrive.

Every template rendered by the app can use these globals, so the signup form
partial (``web/_signup.html``) works on any page that includes it:

- ``newsletter``: the ``[newsletter]`` settings (name, tagline, promise, ...)
- ``signup_form()``: what the form needs (action, a fresh form token, the
  honeypot field's name)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from newsletter.core.errors import StoreError, error_line
from newsletter.core.models import utcnow
from newsletter.core.settings import Settings
from newsletter.core.store import Store, open_store
from newsletter.issue.cards import date_label, range_label
from newsletter.issue.templating import template_environment
from newsletter.readers.mail import Mailer, SubscriberMail
from newsletter.readers.mailqueue import MailQueue, RetryPolicy
from newsletter.readers.subscribers import Clock, Subscribers
from newsletter.web.bodylimit import BodyLimit
from newsletter.web.limits import SignupLimits, parse_proxies
from newsletter.web.oneclick import OneClick
from newsletter.web.pagecache import PageCache

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
log = logging.getLogger(__name__)
QUEUE_GATHER_SECONDS = 0.5  # how long a woken mail-queue task waits for more to send
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


log = logging.getLogger("newsletter.web")


async def _send_queue_forever(queue: MailQueue, wake: asyncio.Event, poll: float) -> None:
    """Send queued emails as they fall due: the relay being down only delays them.

    Woken at once by a request that queued one; otherwise looks every ``poll``
    seconds (for retries, and for what other processes queued).
    """
    while True:
        wake.clear()
        try:
            if await asyncio.to_thread(queue.due):
                await queue.drain()
        except (StoreError, SQLAlchemyError, OSError) as exc:  # the database is down or busy
            log.warning(
                "mail queue: not sent this time (%s); trying again in %g s", error_line(exc), poll
            )
        except Exception:  # keep going: a queued email must not wait for a restart
            log.exception("mail queue: not sent this time; trying again in %g s", poll)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), poll)
            # woken by a signup: let the ones arriving with it join the same batch
            # (one claim, one relay connection, a few writes instead of a few per email)
            await asyncio.sleep(QUEUE_GATHER_SECONDS)


def _lifespan(poll: float) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        wake = asyncio.Event()
        tasks = [
            asyncio.create_task(_send_queue_forever(app.state.mail_queue, wake, poll)),
            asyncio.create_task(_apply_spool_forever(app.state.subscribers)),
        ]
        app.state.queue_wake = wake
        try:
            yield
        finally:
            del app.state.queue_wake
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await app.state.one_click.aclose()

    return lifespan


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
        except (StoreError, SQLAlchemyError, OSError) as exc:  # the database is down
            log.warning("spooled unsubscribes not applied (%s); trying again", error_line(exc))
        except Exception:  # keep trying: a spooled unsubscribe must not be dropped
            log.exception("spooled unsubscribes not applied; trying again")
        await asyncio.sleep(SPOOL_APPLY_SECONDS)


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    clock: Clock = utcnow,
    mailer: Mailer | None = None,
    retry: RetryPolicy | None = None,
    queue_poll_seconds: float = 2.0,
) -> FastAPI:
    """The app for ``settings``; ``store`` defaults to the project's database.

    ``clock``, ``mailer`` and ``retry`` are for tests (a fake clock, a recording
    mailer, short retry delays). While the app runs (its lifespan), a task sends
    the queued confirmation and welcome emails, checking every ``queue_poll_seconds``.
    """
    from newsletter.web import archive, confirm, signup

    app = FastAPI(
        title=settings.newsletter.name,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=_lifespan(queue_poll_seconds),
    )
    app.state.settings = settings
    app.state.store = store if store is not None else open_store(settings)
    templates = template_environment(settings.templates_dir)
    app.state.templates = templates
    subscribers = Subscribers(settings, app.state.store, clock=clock)
    app.state.subscribers = subscribers
    app.state.one_click = OneClick(subscribers)
    from newsletter.send.notices import SmtpMailer

    app.state.subscriber_mail = SubscriberMail(
        subscribers, mailer=mailer or SmtpMailer(settings), templates=templates
    )
    first = timedelta(seconds=settings.web.mail_retry_first_seconds)
    app.state.mail_queue = MailQueue(app.state.subscriber_mail, retry=retry or RetryPolicy(first))
    app.state.signup_limits = SignupLimits(subscribers)
    app.state.page_cache = PageCache(app.state.store.engine)
    app.state.trusted_proxies = parse_proxies(settings.web.trusted_proxies)
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
    app.include_router(confirm.router)
    app.include_router(archive.router)
    app.add_middleware(BodyLimit)
    app.add_middleware(SecurityHeaders)
    return app
