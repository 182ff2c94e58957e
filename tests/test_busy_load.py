"""Writers do not starve each other: a long `slice ingest`, one-click unsubscribes, signups
and a `slice send`, all at once, on SQLite and PostgreSQL.

A real `slice ingest` process stores 20,000 PubMed records (10,000 on PostgreSQL;
generated here, into tmp)
while 500 RFC 8058 one-click POSTs and 200 signups hit the real app on uvicorn and a
real `slice send` process mails 200 readers through aiosmtpd. What a person would
notice: every unsubscribe is recorded (in the database, or spooled and then applied by
serve), no request answers 5xx, the ingest stores every record, and the send finishes.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Select, func, select

from newsletter.core.config import load_settings
from newsletter.core.models import Paper, Subscriber, SubscriberStatus, table
from newsletter.core.store import Store
from newsletter.readers.tokens import Tokens
from newsletter.web import create_app
from tests.load_support import pubmed_file
from tests.send_support import ISSUE, add_readers, write_issue
from tests.signup_support import form_token
from tests.support.liveserver import LiveServer
from tests.support.smtpd import RecordingSMTPServer

# PostgreSQL writes each paper's search document in a trigger (m052), several times
# SQLite's per-row cost: half the records keep its run near SQLite's length
RECORDS = {"sqlite": 20_000, "postgresql": 10_000}
UNSUBSCRIBES = 500
SIGNUPS = 200
READERS = 200
S = table(Subscriber)
P = table(Paper)
SLICE = str(Path(sys.executable).parent / "slice")


@pytest.fixture
def env(db_url: str, smtp_server: RecordingSMTPServer) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("SLICE_")}
    return {
        **keep,
        "SLICE_SECRET_KEY": "load-test-secret-0123456789abcdef",
        "SLICE_DATABASE_URL": db_url,
        "SLICE_SMTP_HOST": "127.0.0.1",
        "SLICE_SMTP_PORT": str(smtp_server.port),
    }


@pytest.fixture
def project_toml(project: Path) -> Path:
    toml = project / "slice.toml"
    # one client sends every signup here: the per-client limit is not what is tested
    toml.write_text(toml.read_text().replace("[web]\n", "[web]\nsignups_per_ip_per_hour = 0\n", 1))
    return toml


def _count(store: Store, query: Select[int]) -> int:
    with store.read() as session:
        return int(session.execute(query).scalar_one())


@pytest.fixture
def running(project_toml: Path, env: dict[str, str]) -> Iterator[tuple[Store, LiveServer, Tokens]]:
    settings = load_settings(config=project_toml, environ=env)
    assert settings.web.signups_per_ip_per_hour == 0
    store = Store.open(settings.database_url)
    app = create_app(settings, store=store)
    server = LiveServer(app).start()
    settings.web.base_url = server.url
    try:
        yield store, server, app.state.subscribers.tokens
    finally:
        server.stop()
        store.dispose()


async def _hammer(
    url: str, tokens: list[str], signup_token: str, ingest: subprocess.Popen[str]
) -> tuple[list[int], int]:
    """Every answer's status, and how many came while the ingest was still writing."""
    during = 0

    def note(status: int) -> int:
        nonlocal during
        during += ingest.poll() is None
        return status

    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        gate = asyncio.Semaphore(20)

        async def unsubscribe(token: str) -> int:
            async with gate:
                answer = await client.post(
                    f"/unsubscribe/{token}",
                    content=b"List-Unsubscribe=One-Click",
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
                return note(answer.status_code)

        async def signup(n: int) -> int:
            async with gate:
                data = {"email": f"new{n}@example.net", "name": "", "form_token": signup_token}
                return note((await client.post("/subscribe", data=data)).status_code)

        jobs = [unsubscribe(t) for t in tokens] + [signup(n) for n in range(SIGNUPS)]
        # interleave the two kinds, as real traffic would
        jobs = jobs[::2] + jobs[1::2]
        statuses = list(await asyncio.gather(*jobs))
        return statuses, during


def test_unsubscribes_signups_and_a_send_go_on_during_a_long_ingest(
    running: tuple[Store, LiveServer, Tokens],
    project_toml: Path,
    env: dict[str, str],
    smtp_server: RecordingSMTPServer,
    tmp_path: Path,
) -> None:
    store, server, signer = running
    settings = load_settings(config=project_toml, environ=env)
    write_issue(settings, store)
    add_readers(store, READERS, prefix="reader")
    leaving = add_readers(store, UNSUBSCRIBES, prefix="leaving", domain="example.org")
    with store.read() as session:
        uids = session.execute(select(S.c.uid).where(S.c.email.in_(leaving))).scalars()
        tokens = [signer.unsubscribe_token(uid) for uid in uids]
    records = RECORDS[store.engine.dialect.name]
    papers = pubmed_file(tmp_path / "pubmed.xml", records)
    signup_token = form_token(httpx.get(f"{server.url}/subscribe").text)

    config = ["--config", str(project_toml)]
    ingest = subprocess.Popen(
        [SLICE, *config, "ingest", str(papers)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # the ingest is storing: from here on every other writer competes with it
        deadline = time.monotonic() + 60
        while _count(store, select(func.count()).select_from(P)) == 0:
            assert ingest.poll() is None, ingest.communicate()[0]
            assert time.monotonic() < deadline, "the ingest stored nothing in 60 s"
            time.sleep(0.05)
        send = subprocess.Popen(
            [SLICE, *config, "send", ISSUE, "--rate", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        statuses, during = asyncio.run(_hammer(server.url, tokens, signup_token, ingest))
        sent_output = send.communicate(timeout=120)[0]
        ingested_output = ingest.communicate(timeout=120)[0]
    finally:
        for proc in (ingest,):
            if proc.poll() is None:
                proc.kill()
    # requests were answered while the ingest still wrote (else this test proves nothing)
    assert during > 0
    assert sorted(set(statuses)) == [200], {s: statuses.count(s) for s in set(statuses)}
    assert ingest.returncode == 0, ingested_output
    assert _count(store, select(func.count()).select_from(P)) == records
    assert send.returncode == 0, sent_output
    assert "Error" not in sent_output
    # every unsubscribe is recorded: in the database, or spooled and applied by serve
    deadline = time.monotonic() + 20
    while True:
        left = _count(
            store,
            select(func.count())
            .select_from(S)
            .where(S.c.email.in_(leaving))
            .where(S.c.status != SubscriberStatus.UNSUBSCRIBED.value),
        )
        if left == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert left == 0
    new = _count(
        store,
        select(func.count()).select_from(S).where(S.c.email.like("new%")),
    )
    assert new == SIGNUPS
