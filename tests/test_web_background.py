"""`slice serve`'s background loops (the mail queue, the unsubscribe spool) while the database is
gone: each look says why in one line of the log and the loop keeps going, no traceback a poll."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import pytest

from newsletter import web
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.web import _apply_spool_forever, _send_queue_forever, create_app


def test_a_database_gone_under_the_background_loops_is_one_line_a_look(
    settings: Settings, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web, "SPOOL_APPLY_SECONDS", 0.05)
    store = Store.open(settings.database_url)
    app = create_app(settings, store=store)
    database = store.engine.url.database or ""
    store.engine.dispose()
    for leftover in ("", "-wal", "-shm"):  # the database is gone: a folder stands in its place
        Path(database + leftover).unlink(missing_ok=True)
    Path(database).mkdir()
    store.engine.dispose()
    subs = app.state.subscribers
    subs.spool.add("some-uid", reason="one-click", at=subs.clock())  # something to apply

    async def a_while() -> None:
        loops = [
            asyncio.create_task(_send_queue_forever(app.state.mail_queue, asyncio.Event(), 0.05)),
            asyncio.create_task(_apply_spool_forever(subs)),
        ]
        await asyncio.sleep(0.5)
        for loop in loops:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop

    with caplog.at_level(logging.WARNING, logger="newsletter"):
        asyncio.run(a_while())
    store.dispose()
    said = [r for r in caplog.records if r.name.startswith("newsletter")]
    queue = [r for r in said if r.getMessage().startswith("mail queue")]
    spool = [r for r in said if r.getMessage().startswith("spooled unsubscribes")]
    assert len(queue) >= 3 and spool  # it kept looking
    for record in said:
        assert record.levelno == logging.WARNING and record.exc_info is None
        assert "\n" not in record.getMessage()
        assert "unable to open database file" in record.getMessage()
