"""The archive's page cache as visitors see it, on SQLite and PostgreSQL.

- Papers stored by `slice ingest` show on the front page of a running
  `slice serve --workers 2` at once, whichever worker answers, though each worker
  had the page cached (it reads the papers' change counter on a connection of its own).
- Twenty visitors asking for the same page at the same moment, before anyone has
  seen it (just after an ingest, say), cost the database one search, not twenty.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event

from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.web import create_app
from tests.archive_support import add_papers, get, make_paper
from tests.load_support import pubmed_file

SLICE = str(Path(sys.executable).parent / "slice")


def titles(html: str) -> list[str]:
    return re.findall(r'<h3 id="paper-\d+"><a href="[^"]*">([^<]*)</a></h3>', html)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def serving(project: Path, db_url: str) -> Iterator[tuple[str, dict[str, str]]]:
    """`slice serve --workers 2` on the test project: its URL and environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLICE_")}
    env.update(
        SLICE_SECRET_KEY="cache-test-secret-0123456789abcdef",
        SLICE_DATABASE_URL=db_url,
        SLICE_CONFIG=str(project / "slice.toml"),
    )
    port = _free_port()
    log = (project / "serve.log").open("w", encoding="utf-8")
    proc = subprocess.Popen(
        [SLICE, "serve", "--port", str(port), "--workers", "2"], env=env, stderr=log, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (
                f"slice serve did not start: {(project / 'serve.log').read_text()}"
            )
            time.sleep(0.2)
        yield url, env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_an_ingest_shows_on_every_worker_at_once(
    serving: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    url, env = serving
    with httpx.Client(base_url=url, timeout=30) as client:
        # several connections, so that both workers answer and cache the empty front page
        for _ in range(3):
            answers = [httpx.get(f"{url}/", timeout=30) for _ in range(6)]
            assert all(a.status_code == 200 and "No papers yet" in a.text for a in answers)
        papers = pubmed_file(tmp_path / "pubmed.xml", 12)
        ingest = subprocess.run(
            [SLICE, "ingest", str(papers)], env=env, capture_output=True, text=True, timeout=300
        )
        assert ingest.returncode == 0, ingest.stderr
        for _ in range(12):  # new connections land on either worker; every answer is new
            page = httpx.get(f"{url}/", timeout=30).text
            assert "No papers yet" not in page
            assert "Deep learning study 11 of" in page
        assert client.get("/?q=perfusion").text.count('class="paper"') == 10


@pytest.fixture
def app(settings: Settings, any_store: Store) -> FastAPI:
    return create_app(settings, store=any_store)


def _searches(store: Store) -> list[str]:
    """The statements that read the full-text index, as the database is sent them."""
    seen: list[str] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "papers_fts" in statement or "paper_search" in statement:
            seen.append(statement)

    return seen


def test_visitors_asking_together_cost_one_search(app: FastAPI, any_store: Store) -> None:
    add_papers(any_store, [make_paper(i) for i in range(40)])
    searches = _searches(any_store)
    alone = get(app, "/?q=mammography")
    assert alone.status_code == 200 and len(titles(alone.text)) == 8
    one_visitor = len(searches)
    assert one_visitor > 0

    async def together() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://slice.test") as client:
            return list(await asyncio.gather(*(client.get("/?q=ultrasound") for _ in range(20))))

    searches.clear()
    answers = asyncio.run(together())
    assert [a.status_code for a in answers] == [200] * 20
    assert {len(titles(a.text)) for a in answers} == {8}
    assert len(searches) == one_visitor  # one search for all twenty
    # and the next paper stored is on the next visit
    add_papers(any_store, [make_paper(44)])
    assert len(titles(get(app, "/?q=ultrasound").text)) == 9
