"""The signup form: ``GET /subscribe`` and ``POST /subscribe``.

``POST /subscribe`` answers with the same "check your inbox" page whether the
address is new, pending or already confirmed, so the form cannot be used to
learn who is subscribed; the confirmation email is queued in the database with
the change (`newsletter.readers.mailqueue` sends it, and retries while the relay
is down), so the page says it will be sent, not that it was. The form is
protected against cross-site submission without cookies or JavaScript: a signed,
time-limited form token, and the browser's ``Sec-Fetch-Site`` / ``Origin``
headers when it sends them. A hidden honeypot field catches naive bots, which
get the same page and change nothing. Every accepted form counts against its
client's and its address's hourly limits (`newsletter.web.limits`), whatever
the address's status.

The pages reached from links in emails (confirm, unsubscribe) are in
`newsletter.web.confirm`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from urllib.parse import urlsplit

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from newsletter.core.errors import InvalidAddressError, InvalidNameError, TokenError
from newsletter.readers.addresses import normalize_email
from newsletter.readers.mail import ttl_text
from newsletter.readers.subscribers import ConsentSource, Subscribers
from newsletter.web.bodylimit import MAX_BODY_BYTES, BodyTooLarge
from newsletter.web.limits import Limit, SignupLimits, client_address, client_key
from newsletter.web.pages import page, send_queued, subscribers_of, valid_for

router = APIRouter()
log = logging.getLogger("newsletter.web")

HONEYPOT = "homepage"
FORM_MAX_AGE = timedelta(days=2)


@dataclass(frozen=True)
class SignupForm:
    """What ``web/_signup.html`` needs; made fresh for every page that shows the form."""

    action: str
    token: str
    honeypot: str

    @classmethod
    def fresh(cls, subscribers: Subscribers) -> SignupForm:
        return cls(action="/subscribe", token=subscribers.tokens.form_token(), honeypot=HONEYPOT)


def _signup_page(
    request: Request, *, status: int, error: str = "", email: str = "", name: str = ""
) -> HTMLResponse:
    return page(
        request,
        "web/subscribe.html",
        status=status,
        signup_error=error,
        signup_email=email,
        signup_name=name,
    )


def client_ip(request: Request) -> str | None:
    """The client's address, believing forwarded headers only from trusted proxies."""
    return client_address(request, request.app.state.trusted_proxies)


def _cross_site(request: Request) -> bool:
    """Whether the browser says this post came from another site."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return False  # old browsers: the form token decides
    if origin == "null":
        return True  # an opaque origin: a sandboxed frame, a data: page, a file
    ours = {
        request.headers.get("host", ""),
        urlsplit(request.app.state.settings.web.base_url).netloc,
    }
    return urlsplit(origin).netloc not in ours


def _text(form: FormData, key: str) -> str:
    value = form.get(key)
    return value if isinstance(value, str) else ""


# --- routes ----------------------------------------------------------------------


@router.get("/subscribe", response_class=HTMLResponse)
def signup_page(request: Request) -> HTMLResponse:
    return _signup_page(request, status=200)


@router.post("/subscribe", response_class=HTMLResponse)
async def subscribe(request: Request, background: BackgroundTasks) -> HTMLResponse:
    too_large = _signup_page(
        request, status=413, error="That form was far too large; please try again."
    )
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        return too_large
    try:
        form = await request.form(max_files=0, max_fields=20, max_part_size=MAX_BODY_BYTES)
    except BodyTooLarge:
        return too_large
    except (HTTPException, MultiPartException, UnicodeDecodeError):
        return _signup_page(
            request, status=400, error="That form could not be read; please try again."
        )
    email, name = _text(form, "email")[:400], _text(form, "name")[:400]

    if _cross_site(request):
        return _signup_page(
            request,
            status=403,
            error="This form was sent from another website, so it was not accepted. "
            "If you meant to subscribe, submit it again here.",
            email=email,
            name=name,
        )
    subscribers = subscribers_of(request)
    try:
        subscribers.tokens.read_form_token(_text(form, "form_token"), max_age=FORM_MAX_AGE)
    except TokenError:
        return _signup_page(
            request,
            status=403,
            error="This form was out of date or did not come from this site. Please submit it again.",
            email=email,
            name=name,
        )
    if _text(form, HONEYPOT):
        log.info("signup honeypot filled; ignored")
        return _check_inbox(request, email)
    if not email.strip():
        return _signup_page(
            request, status=400, error="Please enter your email address.", name=name
        )
    try:
        address = normalize_email(email)
    except InvalidAddressError as exc:
        return _signup_page(request, status=400, error=_sentence(str(exc)), email=email, name=name)
    ip = client_ip(request)
    web = request.app.state.settings.web
    limits: SignupLimits = request.app.state.signup_limits
    counted = [
        Limit("client", client_key(ip), web.signups_per_ip_per_hour),
        Limit("address", address.key, web.signups_per_address_per_hour),
    ]
    try:
        result = await run_in_threadpool(
            partial(
                subscribers.subscribe,
                email,
                name=name,
                source=ConsentSource.WEB,
                ip=ip,
                admit=lambda session: limits.take(session, counted),
            )
        )
    except (InvalidAddressError, InvalidNameError) as exc:
        return _signup_page(request, status=400, error=_sentence(str(exc)), email=email, name=name)
    if result.refused:
        error = (
            "Too many sign-ups came from your network in the last hour. Please try again later."
            if result.refused == "client"
            else "This address was entered too often in the last hour. Please try again later."
        )
        return _signup_page(request, status=429, error=error, email=email, name=name)
    if result.confirmation is not None:
        background.add_task(send_queued, request, result.confirmation.uid)
    return _check_inbox(request, email)


def _check_inbox(request: Request, email: str) -> HTMLResponse:
    """The same page for every accepted form, whatever the address's status."""
    return page(
        request,
        "web/check_inbox.html",
        email=email.strip(),
        valid_for=valid_for(request),
        resend_after=_resend_after(request),
    )


def _resend_after(request: Request) -> str:
    minutes = request.app.state.settings.web.resend_interval_minutes
    if minutes == 0:
        again = "at once"
    elif minutes < 60:
        again = f"after {minutes:g} minutes"
    else:
        again = "after an hour" if minutes == 60 else f"after {ttl_text(minutes / 60)}"
    return again


def _sentence(message: str) -> str:
    text = message.strip()
    return text[:1].upper() + text[1:]
