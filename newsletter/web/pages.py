"""What the signup and link pages share: rendering a page, and the services on the app."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from newsletter.readers.mail import ttl_text
from newsletter.readers.subscribers import Subscribers

# Pages reached through a token: not cached, not indexed, never referred onward.
TOKEN_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
}


def subscribers_of(request: Request) -> Subscribers:
    found: Subscribers = request.app.state.subscribers
    return found


def page(
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


def valid_for(request: Request) -> str:
    """How long a confirmation link works, in words."""
    return ttl_text(request.app.state.settings.web.confirm_ttl_hours)


async def send_queued(request: Request, uid: str) -> None:
    """Have the email just queued for ``uid`` sent, after the response.

    While the app runs its queue task, that task is woken and sends it with any
    others in one batch; without the task (an app driven without its lifespan)
    it is sent here. Either way, if the relay is down it stays queued.
    """
    wake: asyncio.Event | None = getattr(request.app.state, "queue_wake", None)
    if wake is not None:
        wake.set()
        return
    await request.app.state.mail_queue.drain(uids=[uid])
