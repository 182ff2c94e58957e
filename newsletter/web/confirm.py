"""The pages reached from links in emails: confirm and unsubscribe.

Mail providers and corporate link scanners open the links in emails before the
reader does, so no GET changes anything:

- ``GET /confirm/<token>`` shows a page with one button (a plain form, no
  JavaScript); ``POST /confirm/<token>`` confirms and queues the welcome email.
  Links sent before this page existed work the same way. A link that cannot
  confirm (expired, replaced, forged) shows a page that offers a new one.
- ``GET /unsubscribe/<token>`` is a page with one button and never unsubscribes.
- ``POST /unsubscribe/<token>`` unsubscribes at once (RFC 8058 one-click): any
  body, no cookie, 200 with no redirect, idempotent; a bad token changes nothing.
"""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from newsletter.core.errors import TokenError
from newsletter.core.models import SUPPRESSED
from newsletter.readers.subscribers import ConfirmStatus
from newsletter.web.oneclick import OneClick
from newsletter.web.pages import page, send_queued, subscribers_of, valid_for
from newsletter.web.signup import client_ip

router = APIRouter()


def _link_problem(request: Request, status: ConfirmStatus) -> HTMLResponse:
    return page(
        request,
        "web/link_problem.html",
        status=400 if status == ConfirmStatus.INVALID else 410,
        token_page=True,
        problem=status.value,
        valid_for=valid_for(request),
    )


@router.get("/confirm/{token}", response_class=HTMLResponse)
def confirm_page(request: Request, token: str) -> HTMLResponse:
    status, email = subscribers_of(request).check_confirm(token)
    if status == ConfirmStatus.CONFIRMED:
        return page(
            request, "web/confirm.html", token_page=True, email=email, action=f"/confirm/{token}"
        )
    if status == ConfirmStatus.ALREADY_CONFIRMED:
        return page(request, "web/confirmed.html", token_page=True, already=True)
    return _link_problem(request, status)


@router.post("/confirm/{token}", response_class=HTMLResponse)
async def confirm(request: Request, token: str, background: BackgroundTasks) -> HTMLResponse:
    # The body (the button's name) is not needed: a post to a genuine link is the request.
    result = await run_in_threadpool(subscribers_of(request).confirm, token, ip=client_ip(request))
    if result.status == ConfirmStatus.CONFIRMED:
        assert result.welcome is not None
        background.add_task(send_queued, request, result.welcome.uid)
        return page(request, "web/confirmed.html", token_page=True, already=False)
    if result.status == ConfirmStatus.ALREADY_CONFIRMED:
        return page(request, "web/confirmed.html", token_page=True, already=True)
    return _link_problem(request, result.status)


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_page(request: Request, token: str) -> HTMLResponse:
    try:
        sub = subscribers_of(request).read_unsubscribe(token)
    except TokenError:
        return _bad_unsubscribe_link(request)
    gone = sub is None or sub.status in SUPPRESSED
    return page(
        request,
        "web/unsubscribe.html",
        token_page=True,
        email=sub.email if sub else "",
        already=gone,
        action=f"/unsubscribe/{token}",
    )


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe(request: Request, token: str) -> HTMLResponse:
    # RFC 8058: the body ("List-Unsubscribe=One-Click", urlencoded or multipart) is not
    # needed to act, so it is not parsed; a post to a genuine link is the request.
    # Written with the others arriving at the same time (newsletter.web.oneclick).
    one_click: OneClick = request.app.state.one_click
    try:
        result = await one_click.unsubscribe(token)
    except TokenError:
        return _bad_unsubscribe_link(request)
    return page(
        request,
        "web/unsubscribed.html",
        token_page=True,
        email=result.email or "",
        signup_email=result.email or "",
    )


def _bad_unsubscribe_link(request: Request) -> HTMLResponse:
    return page(
        request,
        "web/link_problem.html",
        status=400,
        token_page=True,
        problem="unsubscribe-invalid",
        valid_for=valid_for(request),
    )
