"""`slice serve --workers 2`: connections spread over the workers, every one-click recorded.

Against the real command in a subprocess. Keep-alive clients that connect at the
same moment (a mail provider's one-click POSTs, a proxy's upstream connections)
must not all land on one worker; every POST answered 200 is an unsubscribe in
the database; a port already taken is a one-line error. SIGTERM stopping the
workers is in test_send_stop.py. SQLite always, PostgreSQL too when
SLICE_TEST_DATABASE_URL is set.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from newsletter.core.config import load_settings
from newsletter.core.models import Subscriber, SubscriberStatus
from newsletter.core.project import init_project
from newsletter.core.store import Store
from newsletter.readers.subscribers import ConsentSource, Subscribers
from tests.support import workershare
from tests.support.serve import SliceServe

SECRET = "serve-workers-secret-0123456789"
CLIENTS = 20
EACH = 15  # one-click POSTs per client, one after another on its connection


def _readers(project: Path, db_url: str, count: int) -> list[str]:
    """``count`` confirmed readers in the database; their unsubscribe tokens."""
    environ = {"SLICE_SECRET_KEY": SECRET, "SLICE_DATABASE_URL": db_url}
    settings = load_settings(config=project / "slice.toml", environ=environ)
    with Store.open(db_url) as store:
        with store.write() as session:
            session.add_all(
                Subscriber(
                    email=f"reader{i}@example.org",
                    email_key=f"reader{i}@example.org",
                    status=SubscriberStatus.CONFIRMED.value,
                    consent_source=ConsentSource.IMPORT_HELD.value,
                )
                for i in range(count)
            )
        subscribers = Subscribers(settings, store)
        return [subscribers.tokens.unsubscribe_token(s.uid) for s in subscribers.all()]


def _unsubscribed(project: Path, db_url: str) -> int:
    settings = load_settings(
        config=project / "slice.toml",
        environ={"SLICE_SECRET_KEY": SECRET, "SLICE_DATABASE_URL": db_url},
    )
    with Store.open(db_url) as store:
        return Subscribers(settings, store).count().get("unsubscribed", 0)


def _one_click(token: str) -> bytes:
    body = b"List-Unsubscribe=One-Click"
    return (
        f"POST /unsubscribe/{token} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        + b"Content-Type: application/x-www-form-urlencoded\r\n"
        + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )


async def _answer(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lower = head.lower()
    at = lower.find(b"content-length:")
    await reader.readexactly(int(lower[at + 15 : lower.find(b"\r\n", at)]))
    return int(head[9:12])


async def _twenty_clients(
    server: SliceServe, tokens: list[str]
) -> tuple[list[int], list[int], list[float]]:
    """Status of every POST; the connections each worker held once all 20 clients were in,
    and the CPU seconds each used for the POSTs after that."""
    streams = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(CLIENTS)]
    shares = [tokens[i::CLIENTS] for i in range(CLIENTS)]
    for (_, writer), share in zip(streams, shares, strict=True):
        writer.write(_one_click(share[0]))  # a first POST on each: every connection accepted
    codes = list(await asyncio.gather(*(_answer(reader) for reader, _ in streams)))
    workers = workershare.workers(server.proc.pid)
    held = list(workershare.connections(workers, server.port).values())
    before = [workershare.cpu_seconds(pid) for pid in workers]

    async def client(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rest: list[str]
    ) -> list[int]:
        got = []
        for token in rest:
            writer.write(_one_click(token))
            got.append(await _answer(reader))
        writer.close()
        return got

    found = await asyncio.gather(
        *(client(r, w, share[1:]) for (r, w), share in zip(streams, shares, strict=True))
    )
    used = [
        workershare.cpu_seconds(pid) - began for pid, began in zip(workers, before, strict=True)
    ]
    return codes + [code for more in found for code in more], held, used


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "served"
    init_project(root, name="Workers Weekly")
    return root


def test_two_workers_share_twenty_keep_alive_clients_and_record_every_one_click(
    project: Path, db_url: str
) -> None:
    tokens = _readers(project, db_url, CLIENTS * EACH)
    env = {"SLICE_SECRET_KEY": SECRET, "SLICE_DATABASE_URL": db_url}
    server = SliceServe(project, workers=2, env=env).start()
    try:
        codes, held, used = asyncio.run(_twenty_clients(server, tokens))
    finally:
        server.stop()
    # the kernel spreads the connections over both workers' sockets (all 20 on one
    # worker would happen about twice in a million runs); each serves the ones it has
    assert len(held) == 2 and sum(held) == CLIENTS and min(held) >= 1, held
    assert min(used) > 0, used
    assert codes == [200] * (CLIENTS * EACH)
    assert _unsubscribed(project, db_url) == CLIENTS * EACH
    assert "Traceback" not in server.stderr


def test_a_port_in_use_is_one_line_with_two_workers(run_cli: Callable[..., Result]) -> None:
    """Each worker could share the port with a second `slice serve`; it is refused instead."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run_cli("serve", "--host", "127.0.0.1", "--port", port, "--workers", "2")
    assert result.exit_code == 1
    assert f"Error: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
