"""Inbound benchmark: messages per second through `slice inbound` over LMTP, against a bare sink.

    .venv/bin/python bench/inbound_bench.py [--messages 2000] [--connections 1,4]

A fresh SQLite project with one sent issue (one delivery per reader) receives a
mix of real-shaped reports, each for a different reader: permanent DSNs to the
reader's VERP address, delayed DSNs, ARF complaints found by token, mailto:
unsubscribes, vacation replies and forged reports without a token (one in
six each). Each is sent by smtplib.LMTP clients over 1 or N connections.

Baseline, measured in the same run: the same messages over the same number of
connections to aiosmtpd's LMTP server with a handler that answers 250 at once
(the protocol's cost, no parsing, no database). Also timed: `Inbound.process`
called directly (parsing, classifying, one commit per message), no network.
"""

from __future__ import annotations

import argparse
import smtplib
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiosmtpd.lmtp import LMTP  # noqa: E402
from aiosmtpd.smtp import SMTP, Envelope, Session  # noqa: E402

from newsletter.core.config import load_settings  # noqa: E402
from newsletter.core.project import init_project  # noqa: E402
from newsletter.core.settings import Settings  # noqa: E402
from newsletter.core.store import Store  # noqa: E402
from newsletter.send.devsmtp import SmtpServerThread  # noqa: E402
from newsletter.send.inbound import inbound_processor, inbound_server  # noqa: E402
from tests.inbound_support import REPORTS, sent_issue  # noqa: E402
from tests.send_support import add_readers  # noqa: E402

SECRET = "bench-secret-key-0123456789abcdef"
KINDS = [
    "dsn-permanent.eml",
    "dsn-delayed.eml",
    "arf-complaint.eml",
    "mailto-unsubscribe.eml",
    "out-of-office.eml",
    "forged-dsn.eml",
]


class Sink:
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 2.0.0 OK"


class SinkServer(SmtpServerThread):
    def _factory(self) -> SMTP:
        return LMTP(self.handler, hostname="sink", **self._smtp_kwargs)


def project(root: Path, readers: int) -> tuple[Settings, list[tuple[str, bytes]]]:
    """A project with ``readers`` who got one issue, and one report per reader."""
    from newsletter.readers.tokens import Tokens

    init_project(root, name="Bench")
    settings = load_settings(config=root / "slice.toml", environ={"SLICE_SECRET_KEY": SECRET})
    settings.inbound.port = 0
    tokens = Tokens(SECRET)
    with Store.open(settings.database_url) as store:
        addresses = add_readers(store, readers)
        sent = sent_issue(store, "2025-W24", addresses)
        with store.read() as session:
            from sqlalchemy import text

            uids: dict[str, str] = dict(
                session.connection().execute(text("SELECT email, uid FROM subscribers")).all()
            )
    templates = {name: (REPORTS / name).read_bytes() for name in KINDS}
    messages = []
    for i, address in enumerate(addresses):
        name = KINDS[i % len(KINDS)]
        delivery_id, message_id = sent[address]
        data = templates[name]
        for old in (b"reader000001", b"reader000002", b"reader000004"):
            data = data.replace(old, address.split("@")[0].encode())
        data = (
            data.replace(b"{VERP1}", tokens.bounce_token(delivery_id).encode())
            .replace(b"{VERP2}", tokens.bounce_token(delivery_id).encode())
            .replace(b"{VERP4}", tokens.bounce_token(delivery_id).encode())
            .replace(b"{MSGID1}", message_id.encode())
            .replace(b"{TOKEN}", tokens.unsubscribe_token(uids[address]).encode())
            .replace(b"{UNSUB4}", tokens.unsubscribe_token(uids[address]).encode())
            .replace(b"{FORGED}", b"7-aaaaaaaaaaaaa")
        )
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        rcpt = f"bounces+{tokens.bounce_token(delivery_id)}@example.org"
        if name == "mailto-unsubscribe.eml":
            rcpt = "unsubscribe@example.org"
        elif name == "forged-dsn.eml":
            rcpt = "bounces+7-aaaaaaaaaaaaa@example.org"
        messages.append((rcpt, data))
    return settings, messages


def blast(port: int, messages: list[tuple[str, bytes]], connections: int) -> float:
    """Seconds to send every message over ``connections`` LMTP connections at once."""
    chunks = [messages[i::connections] for i in range(connections)]
    errors: list[BaseException] = []

    def one(chunk: list[tuple[str, bytes]]) -> None:
        try:
            with smtplib.LMTP("127.0.0.1", port) as client:
                for rcpt, data in chunk:
                    client.sendmail("", [rcpt], data)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(c,)) for c in chunks]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - start


def run(count: int, connections: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings, messages = project(Path(tmp) / "a", count)
        with SinkServer(Sink()) as sink:
            base = blast(sink.port, messages, connections)
        with Store.open(settings.database_url) as store, inbound_server(settings, store) as server:
            full = blast(server.port, messages, connections)
            with store.read() as session:
                from sqlalchemy import text

                recorded = session.connection().execute(
                    text("SELECT outcome, count(*) FROM inbound_messages GROUP BY outcome")
                )
                outcomes: dict[str, int] = dict(recorded.all())
    with tempfile.TemporaryDirectory() as tmp:
        settings, messages = project(Path(tmp) / "b", count)
        with Store.open(settings.database_url) as store:
            inbound = inbound_processor(settings, store)
            start = time.perf_counter()
            for rcpt, data in messages:
                inbound.process(data, source="lmtp", recipients=[rcpt])
            direct = time.perf_counter() - start
    return {"base": base, "full": full, "direct": direct, "outcomes": outcomes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--connections", default="1,4")
    args = parser.parse_args()
    print(f"{args.messages} messages, one per reader, {len(KINDS)} kinds in turn; SQLite file")
    for n in (int(c) for c in args.connections.split(",")):
        r = run(args.messages, n)
        rate = args.messages / r["full"]
        print(
            f"connections {n}: slice inbound {rate:7.0f} msg/s "
            f"({r['full'] * 1000 / args.messages:.2f} ms each) | bare LMTP sink "
            f"{args.messages / r['base']:7.0f} msg/s (slice inbound at "
            f"{r['base'] / r['full']:.1%} of it) | Inbound.process direct "
            f"{args.messages / r['direct']:7.0f} msg/s"
        )
        print(f"  outcomes: {dict(sorted(r['outcomes'].items()))}")


if __name__ == "__main__":
    main()
