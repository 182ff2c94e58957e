"""Each reader's List-Unsubscribe link works with an RFC 8058 one-click POST on the real app."""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from sqlmodel import select

from newsletter.core.config import load_settings
from newsletter.core.models import Subscriber
from newsletter.core.store import Store
from newsletter.send.service import SendOptions, send_issue
from newsletter.web import create_app
from tests.send_support import ISSUE, add_readers, parse, write_issue
from tests.support.smtpd import RecordingSMTPServer


def test_one_click_post_on_each_readers_link_unsubscribes_that_reader_only(
    project: Path, smtp_environ: dict[str, str], smtp_server: RecordingSMTPServer
) -> None:
    settings = load_settings(
        config=project / "slice.toml",
        environ={**smtp_environ, "SLICE_BASE_URL": "https://weekly.example.org"},
    )
    with Store.open(settings.database_url) as store:
        write_issue(settings, store, papers=2)
        addresses = add_readers(store, 4)
        options = SendOptions(rate=0, concurrency=2)
        asyncio.run(send_issue(settings, store, ISSUE, options=options, rng=random.Random(0)))
        links = {}
        for received in smtp_server.messages:
            msg = parse(received.data)
            header = str(msg["List-Unsubscribe"])
            https = re.match(r"<(https://[^>]+)>, <mailto:[^>]+>$", header)
            assert https is not None, header
            body = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
            assert f'href="{https.group(1)}"' in body  # the visible link is the same one
            links[received.rcpt_tos[0]] = https.group(1)

        async def click(url: str, form: dict[str, str], multipart: bool) -> httpx.Response:
            app = create_app(settings, store=store)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="https://weekly.example.org"
            ) as client:
                path = urlsplit(url).path
                if multipart:
                    return await client.post(path, files={k: (None, v) for k, v in form.items()})
                return await client.post(path, data=form)

        one_click = {"List-Unsubscribe": "One-Click"}
        first = asyncio.run(click(links[addresses[0]], one_click, multipart=False))
        assert first.status_code == 200 and "set-cookie" not in first.headers
        second = asyncio.run(click(links[addresses[1]], one_click, multipart=True))
        assert second.status_code == 200
        forged = asyncio.run(click(links[addresses[2]][:-3] + "xyz", one_click, multipart=False))
        assert forged.status_code == 400

        with store.read() as session:
            status = {s.email: s.status for s in session.exec(select(Subscriber)).all()}
        assert status == {
            addresses[0]: "unsubscribed",
            addresses[1]: "unsubscribed",
            addresses[2]: "confirmed",
            addresses[3]: "confirmed",
        }
