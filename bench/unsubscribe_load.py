"""Load check: one-click unsubscribe POSTs against `slice serve` on loopback.

Starts the real `slice serve` in its own process on a free port, with a fresh
SQLite project holding N confirmed subscribers, then:

1. baseline: N ``GET /healthz`` from C concurrent clients (the cheapest route:
   the server, the network stack and the client, nothing else);
2. N ``POST /unsubscribe/<token>`` from C concurrent clients, one per subscriber,
   with RFC 8058 bodies (half urlencoded, half multipart/form-data).

Checks that every POST answered 200 and that every subscriber is recorded as
unsubscribed, and prints requests/s and p50/p95 latency for both, with ratios.

    .venv/bin/python bench/unsubscribe_load.py [--requests 2000] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from newsletter.core.config import load_settings
from newsletter.core.models import SubscriberStatus
from newsletter.core.project import init_project
from newsletter.core.store import open_store
from newsletter.readers.subscribers import EmailAddress, ImportRow, Subscribers

SECRET = "bench-secret-key-0123456789abcdef"


@dataclass
class Run:
    name: str
    seconds: float
    latencies: list[float]
    errors: list[str]

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000

    def line(self) -> str:
        return (
            f"{self.name:<26} {len(self.latencies):>6} ok {len(self.errors):>4} errors "
            f"{self.rate:>9.0f} req/s   p50 {self.pct(50):6.1f} ms   p95 {self.pct(95):6.1f} ms   "
            f"mean {statistics.mean(self.latencies) * 1000:6.1f} ms"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def load(
    name: str,
    requests: list[Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]],
    concurrency: int,
) -> Run:
    queue: asyncio.Queue[Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]] = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)
    latencies: list[float] = []
    errors: list[str] = []

    async def client_loop() -> None:
        # each simulated client has its own connection, as 50 mail providers would
        async with httpx.AsyncClient(timeout=30, follow_redirects=False) as client:
            while not queue.empty():
                request = queue.get_nowait()
                started = time.perf_counter()
                try:
                    response = await request(client)
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    errors.append(f"HTTP {response.status_code}")

    started = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    return Run(name, time.perf_counter() - started, latencies, errors)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="slice-bench-") as tmp:
        root = Path(tmp) / "project"
        init_project(root, name="Bench Weekly")
        environ = {"SLICE_SECRET_KEY": SECRET}
        settings = load_settings(config=root / "slice.toml", environ=environ)
        store = open_store(settings)
        subscribers = Subscribers(settings, store)
        rows = [
            ImportRow(i, EmailAddress(f"reader{i}@example.org", f"reader{i}@example.org", ""), "")
            for i in range(args.requests)
        ]
        subscribers.import_rows(rows, confirmed=True)
        tokens = [subscribers.tokens.unsubscribe_token(s.uid) for s in subscribers.all()]

        port = free_port()
        env = {**os.environ, "SLICE_SECRET_KEY": SECRET, "SLICE_CONFIG": str(root / "slice.toml")}
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "slice"), "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if httpx.get(base + "/healthz", timeout=1).text == "ok":
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(
                        f"`slice serve` did not start: {server.stderr.read().decode() if server.stderr else ''}"
                    )
                time.sleep(0.1)

            def healthz(client: httpx.AsyncClient) -> Awaitable[httpx.Response]:
                return client.get(base + "/healthz")

            def one_click(
                i: int, token: str
            ) -> Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]:
                url = f"{base}/unsubscribe/{token}"
                if i % 2:
                    return lambda client: client.post(
                        url, files={"List-Unsubscribe": (None, "One-Click")}
                    )
                return lambda client: client.post(
                    url,
                    content=b"List-Unsubscribe=One-Click",
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )

            baseline = asyncio.run(
                load("GET /healthz (baseline)", [healthz] * args.requests, args.concurrency)
            )
            posts = asyncio.run(
                load(
                    "POST /unsubscribe/<token>",
                    [one_click(i, t) for i, t in enumerate(tokens)],
                    args.concurrency,
                )
            )
        finally:
            server.terminate()
            server.wait(10)

        counts = subscribers.count()
        store.dispose()

    print(
        f"{args.requests} requests per run, {args.concurrency} concurrent clients, `slice serve` on loopback (SQLite)"
    )
    print(baseline.line())
    print(posts.line())
    print(
        f"unsubscribe vs baseline: {posts.rate / baseline.rate:.2f}x the throughput, "
        f"{posts.pct(95) / baseline.pct(95):.1f}x the p95 latency"
    )
    recorded = counts[SubscriberStatus.UNSUBSCRIBED.value]
    print(
        f"recorded unsubscribed: {recorded} of {args.requests}; still confirmed: {counts['confirmed']}"
    )
    for error in (baseline.errors + posts.errors)[:10]:
        print("error:", error)
    ok = recorded == args.requests and not posts.errors and not baseline.errors
    print("OK: every one-click POST answered 200 and was recorded" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
