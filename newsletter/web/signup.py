"""Signup, confirmation and unsubscribe routes.

- ``POST /subscribe`` answers with the same "check your inbox" page whether the
  address is new, pending or already confirmed, so the form cannot be used to
  learn who is subscribed; the confirmation email goes out after the response.
  The form is protected against cross-site submission without cookies or
  JavaScript: a signed, time-limited form token, and the browser's
  ``Sec-Fetch-Site`` / ``Origin`` headers when it sends them. A hidden honeypot
  field catches naive bots, which get the same page and change nothing.
- ``GET /confirm/<token>`` confirms; any other link shows a page that offers a new one.
- ``GET /unsubscribe/<token>`` is a page with one button and never unsubscribes:
  link scanners follow links in emails.
- ``POST /unsubscribe/<token>`` unsubscribes at once (RFC 8058 one-click): any
  body, no cookie, 200 with no redirect, idempotent; a bad token changes nothing.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from newsletter.core.errors import InvalidAddressError, InvalidNameError, TokenError
from newsletter.core.models import SUPPRESSED
from newsletter.readers.mail import SubscriberMail, ttl_text
from newsletter.readers.subscribers import (
    Clock,
    Confirmation,
    ConfirmStatus,
    ConsentSource,
    Subscribers,
    Welcome,
)

router = APIRouter()
log = logging.getLogger("newsletter.web")

HONEYPOT = "homepage"
FORM_MAX_AGE = timedelta(days=2)
MAX_FORM_BYTES = 16 * 1024

# Pages reached through a token: not cached, not indexed, never referred onward.
TOKEN_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
}


@dataclass(frozen=True)
class SignupForm:
    """What ``web/_signup.html`` needs; made fresh for every page that shows the form."""

    action: str
    token: str
    honeypot: str

    @classmethod
    def fresh(cls, subscribers: Subscribers) -> SignupForm:
        return cls(action="/subscribe", token=subscribers.tokens.form_token(), honeypot=HONEYPOT)


class SignupLimiter:
    """Confirmation emails each client address caused in the last hour (in memory, this process).

    The resend interval keeps one mailbox from being flooded; this keeps one client
    from using the form to mail many strangers.
    """

    WINDOW = timedelta(hours=1)
    MAX_CLIENTS = 10_000

    def __init__(self, per_hour: int, clock: Clock) -> None:
        self.per_hour = per_hour
        self.clock = clock
        self._sent: dict[str, deque[datetime]] = {}

    def _recent(self, ip: str) -> deque[datetime]:
        times = self._sent.get(ip, deque())
        cutoff = self.clock() - self.WINDOW
        while times and times[0] <= cutoff:
            times.popleft()
        return times

    def exhausted(self, ip: str | None) -> bool:
        return bool(self.per_hour) and ip is not None and len(self._recent(ip)) >= self.per_hour

    def record(self, ip: str | None) -> None:
        if not self.per_hour or ip is None:
            return
        times = self._recent(ip)
        times.append(self.clock())
        self._sent.pop(ip, None)
        self._sent[ip] = times  # most recently active last
        if len(self._sent) > self.MAX_CLIENTS:
            del self._sent[next(iter(self._sent))]


def _subscribers(request: Request) -> Subscribers:
    found: Subscribers = request.app.state.subscribers
    return found


def _mail(request: Request) -> SubscriberMail:
    found: SubscriberMail = request.app.state.subscriber_mail
    return found


def _page(
    request: Request,
    template: str,
    *,
    status: int = 200,
    token_page: bool = False,
    **context: Any,
) -> HTMLResponse:
    html = request.app.state.templates.get_template(template).render(**context)
    headers = TOKEN_PAGE_HEADERS if token_page else {"Cache-Control": "no-store"}
    return HTMLResponse(html, status_code=status, headers=headers)


def _signup_page(
    request: Request, *, status: int, error: str = "", email: str = "", name: str = ""
) -> HTMLResponse:
    return _page(
        request,
        "web/subscribe.html",
        status=status,
        signup_error=error,
        signup_email=email,
        signup_name=name,
    )


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _cross_site(request: Request) -> bool:
    """Whether the browser says this post came from another site."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return False  # old browsers and privacy modes: the form token decides
    ours = {
        request.headers.get("host", ""),
        urlsplit(request.app.state.settings.web.base_url).netloc,
    }
    return urlsplit(origin).netloc not in ours


def _text(form: FormData, key: str) -> str:
    value = form.get(key)
    return value if isinstance(value, str) else ""


# --- background sends (after the response) -------------------------------------


async def _send_confirmation(mail: SubscriberMail, confirmation: Confirmation) -> None:
    problem = await mail.send_confirmation(confirmation)
    if problem:
        log.warning("confirmation email to %s not sent: %s", confirmation.email, problem)


async def _send_welcome(mail: SubscriberMail, welcome: Welcome) -> None:
    problem = await mail.send_welcome(welcome)
    if problem:
        log.warning("welcome email to %s not sent: %s", welcome.email, problem)


# --- routes ----------------------------------------------------------------------


@router.get("/subscribe", response_class=HTMLResponse)
def signup_page(request: Request) -> HTMLResponse:
    return _signup_page(request, status=200)


@router.post("/subscribe", response_class=HTMLResponse)
async def subscribe(request: Request, background: BackgroundTasks) -> HTMLResponse:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_FORM_BYTES:
        return _signup_page(
            request, status=413, error="That form was far too large; please try again."
        )
    try:
        form = await request.form(max_files=0, max_fields=20, max_part_size=MAX_FORM_BYTES)
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
    subscribers = _subscribers(request)
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
    limiter: SignupLimiter = request.app.state.signup_limiter
    if limiter.exhausted(_client_ip(request)):
        return _signup_page(
            request,
            status=429,
            error="Too many sign-ups came from your network in the last hour. "
            "Please try again later.",
            email=email,
            name=name,
        )
    try:
        result = await run_in_threadpool(
            subscribers.subscribe,
            email,
            name=name,
            source=ConsentSource.WEB,
            ip=_client_ip(request),
        )
    except (InvalidAddressError, InvalidNameError) as exc:
        return _signup_page(request, status=400, error=_sentence(str(exc)), email=email, name=name)
    if result.confirmation is not None:
        limiter.record(_client_ip(request))
        background.add_task(_send_confirmation, _mail(request), result.confirmation)
    return _check_inbox(request, email)


@router.get("/confirm/{token}", response_class=HTMLResponse)
def confirm(request: Request, token: str, background: BackgroundTasks) -> HTMLResponse:
    result = _subscribers(request).confirm(token, ip=_client_ip(request))
    if result.status == ConfirmStatus.CONFIRMED:
        assert result.welcome is not None
        background.add_task(_send_welcome, _mail(request), result.welcome)
        return _page(request, "web/confirmed.html", token_page=True, already=False)
    if result.status == ConfirmStatus.ALREADY_CONFIRMED:
        return _page(request, "web/confirmed.html", token_page=True, already=True)
    status = 400 if result.status == ConfirmStatus.INVALID else 410
    return _page(
        request,
        "web/link_problem.html",
        status=status,
        token_page=True,
        problem=result.status.value,
        valid_for=_valid_for(request),
    )


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_page(request: Request, token: str) -> HTMLResponse:
    try:
        sub = _subscribers(request).read_unsubscribe(token)
    except TokenError:
        return _bad_unsubscribe_link(request)
    gone = sub is None or sub.status in SUPPRESSED
    return _page(
        request,
        "web/unsubscribe.html",
        token_page=True,
        email=sub.email if sub else "",
        already=gone,
        action=f"/unsubscribe/{token}",
    )


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe(request: Request, token: str) -> HTMLResponse:
    # RFC 8058: the body ("List-Unsubscribe=One-Click", urlencoded or multipart) is not
    # needed to act, so it is not parsed; a post to a genuine link is the request.
    try:
        result = _subscribers(request).unsubscribe(token)
    except TokenError:
        return _bad_unsubscribe_link(request)
    return _page(
        request,
        "web/unsubscribed.html",
        token_page=True,
        email=result.email or "",
        signup_email=result.email or "",
    )


def _bad_unsubscribe_link(request: Request) -> HTMLResponse:
    return _page(
        request,
        "web/link_problem.html",
        status=400,
        token_page=True,
        problem="unsubscribe-invalid",
        valid_for=_valid_for(request),
    )


def _valid_for(request: Request) -> str:
    return ttl_text(request.app.state.settings.web.confirm_ttl_hours)


def _check_inbox(request: Request, email: str) -> HTMLResponse:
    """The same page for every accepted form, whatever the address's status."""
    return _page(
        request,
        "web/check_inbox.html",
        email=email.strip(),
        valid_for=_valid_for(request),
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
