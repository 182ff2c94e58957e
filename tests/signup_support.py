"""Helpers for the subscriber and signup tests: a fake clock, an app client, and reading mail as a reader does."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from newsletter.core.config import load_settings
from newsletter.core.models import Subscriber
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.readers.subscribers import Subscribers
from newsletter.web import create_app
from tests.support.smtpd import RecordingSMTPServer

BASE = "http://127.0.0.1:8000"
LINK = re.compile(r"https?://[^\s<>\"']+")


@dataclass
class FakeClock:
    now: datetime = field(default_factory=lambda: datetime(2026, 3, 2, 9, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def smtp_settings(project: Path, smtp_environ: dict[str, str], **env: str) -> Settings:
    return load_settings(config=project / "slice.toml", environ={**smtp_environ, **env})


def text_part(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def links(message: EmailMessage, kind: str) -> list[str]:
    """Links of one kind (confirm, unsubscribe, issues) in the plain-text part, in order."""
    return [u for u in LINK.findall(text_part(message)) if f"/{kind}/" in u]


def path_of(url: str) -> str:
    """A link from an email, as a path for the test client (it is served at BASE)."""
    assert url.startswith(BASE), url
    return url[len(BASE) :]


def tamper(token: str) -> str:
    """The token with one character of its signature changed.

    Not the last character: base64's last character carries padding bits, so some
    changes there decode to the very same signature.
    """
    at = len(token) - 6
    return token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1 :]


def form_token(html: str) -> str:
    found = re.search(r'name="form_token" value="([^"]+)"', html)
    assert found, "the page has no signup form"
    return found.group(1)


CONFIRM_FORM = re.compile(r'<form method="post" action="(/confirm/[^"]+)">')


async def press_confirm(client: httpx.AsyncClient, path: str) -> httpx.Response:
    """Open a confirmation link and press the page's button (if it has one)."""
    shown = await client.get(path)
    found = CONFIRM_FORM.search(shown.text)
    if shown.status_code != 200 or found is None:
        return shown
    assert found.group(1) == path.split("?")[0]
    return await client.post(found.group(1), data={"confirm": "yes"})


def rows(store: Store) -> list[Subscriber]:
    from sqlmodel import select

    with store.read() as session:
        return list(session.exec(select(Subscriber)).all())


def one(store: Store) -> Subscriber:
    found = rows(store)
    assert len(found) == 1, found
    return found[0]


class Site:
    """The real app over ASGI, with a fake clock and the recording SMTP server."""

    def __init__(self, settings: Settings, store: Store, smtp: RecordingSMTPServer) -> None:
        self.clock = FakeClock()
        self.settings = settings
        self.store = store
        self.smtp = smtp
        self.app: FastAPI = create_app(settings, store=store, clock=self.clock)
        self.subscribers: Subscribers = self.app.state.subscribers
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(self.app, client=("203.0.113.7", 5555)),
            base_url=BASE,
        )

    async def token(self) -> str:
        return form_token((await self.client.get("/subscribe")).text)

    async def subscribe(self, email: str, name: str = "", **extra: str) -> httpx.Response:
        data = {"email": email, "name": name, "form_token": await self.token(), **extra}
        return await self.client.post("/subscribe", data=data)

    async def confirm(self, path: str) -> httpx.Response:
        """Follow a confirmation link as a reader does: open it, press its one button.

        When the link cannot confirm, its page has no button: that page is the answer.
        """
        return await press_confirm(self.client, path)

    def mail(self) -> list[EmailMessage]:
        return self.smtp.parsed()

    def mail_to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.mail() if address.lower() in str(m["To"]).lower()]

    async def close(self) -> None:
        await self.client.aclose()


def run(coro_factory: Callable[[], Any]) -> Any:
    import asyncio

    return asyncio.run(coro_factory())


@pytest.fixture(name="anyio_backend")
def asyncio_backend() -> str:
    return "asyncio"


@pytest.fixture(name="site")
async def signup_site(
    project: Path, smtp_environ: dict[str, str], smtp_server: RecordingSMTPServer, db_url: str
) -> AsyncIterator[Site]:
    """The app on each database backend (SQLite always, PostgreSQL when configured)."""
    settings = smtp_settings(project, smtp_environ)
    store = Store.open(db_url)
    opened = Site(settings, store, smtp_server)
    try:
        yield opened
    finally:
        await opened.close()
        store.dispose()
