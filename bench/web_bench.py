"""Requests per second of `slice serve` with 1 and 2 workers, against a trivial endpoint.

    .venv/bin/python bench/web_bench.py [--papers 20000] [--seconds 5] [--clients 20] [--rounds 3]

Fills a fresh SQLite project with invented papers (as archive_bench.py does) and
confirmed subscribers, runs the real `slice serve --workers N` (uvloop,
httptools) with a local aiosmtpd sink as its relay, and drives it from another
process with ``--clients`` keep-alive connections for ``--seconds`` per run, the
runs alternating between 1 and 2 workers (all four servers stay up), ``--rounds``
times; the figures are the medians of the rounds:

- ``GET /`` (the archive's first page) and ``GET /?q=segmentation``
- ``POST /subscribe`` (a new address each time, the form limits off for the run)
- ``POST /unsubscribe/<token>`` (RFC 8058 one-click, a different reader each time)

The baseline, measured in the same run with the same server options, is a
trivial FastAPI endpoint (``GET /`` returning a short text) on uvicorn with the
same number of workers. Prints requests/s, p50/p95 latency, the ratio of each
path to the trivial endpoint, and each path's 2-worker/1-worker ratio. With
``wrk`` installed (Debian package ``wrk``) it also prints wrk's figure for the
two GET paths.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from archive_bench import fill  # bench/ is on the path: the script's own folder

from newsletter.core.config import load_settings
from newsletter.core.project import init_project
from newsletter.core.store import Store
from newsletter.readers.subscribers import ConsentSource, Subscribers
from tests.support.smtpd import RecordingSMTPServer

SECRET = "web-bench-secret-0123456789abcdef"
READERS = 60_000  # one-click unsubscribes each reader once


def trivial() -> FastAPI:
    """The baseline: the least a FastAPI app on uvicorn can answer."""
    app = FastAPI()

    @app.get("/", response_class=PlainTextResponse)
    def hello() -> str:
        return "ok"

    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- the load: raw HTTP/1.1 keep-alive from another process --------------------------------


def _request_maker(kind: str, arg: str, tokens: list[str]) -> Callable[[int], bytes]:
    host = b"Host: 127.0.0.1\r\n"
    if kind == "get":
        line = f"GET {arg} HTTP/1.1\r\n".encode()
        fixed = line + host + b"\r\n"
        return lambda _n: fixed
    if kind == "signup":
        pid = os.getpid()

        def signup(n: int) -> bytes:
            body = f"email=bench{pid}x{n}%40example.org&name=&form_token={arg}".encode()
            return (
                b"POST /subscribe HTTP/1.1\r\n" + host + b"Sec-Fetch-Site: same-origin\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )

        return signup

    def one_click(n: int) -> bytes:
        body = b"List-Unsubscribe=One-Click"
        return (
            f"POST /unsubscribe/{tokens[n % len(tokens)]} HTTP/1.1\r\n".encode()
            + host
            + b"Content-Type: application/x-www-form-urlencoded\r\n"
            + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )

    return one_click


async def _client(
    port: int, make: Callable[[int], bytes], start: int, step: int, until: float
) -> tuple[list[float], dict[int, int]]:
    latencies: list[float] = []
    codes: dict[int, int] = {}
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = start
    while time.monotonic() < until:
        began = time.perf_counter()
        writer.write(make(n))
        n += step
        head = await reader.readuntil(b"\r\n\r\n")
        lower = head.lower()
        at = lower.find(b"content-length:")
        length = int(lower[at + 15 : lower.find(b"\r\n", at)]) if at >= 0 else 0
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - began)
        code = int(head[9:12])
        codes[code] = codes.get(code, 0) + 1
        if b"connection: close" in lower:
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
    return latencies, codes


def _load(
    port: int, kind: str, arg: str, tokens: list[str], clients: int, seconds: float, out: object
) -> None:
    async def run() -> tuple[list[float], dict[int, int], float, float]:
        make = _request_maker(kind, arg, tokens)
        cpu = time.process_time()
        began = time.monotonic()
        until = began + seconds
        results = await asyncio.gather(
            *(_client(port, make, i, clients, until) for i in range(clients))
        )
        took = time.monotonic() - began
        latencies = [x for lat, _ in results for x in lat]
        codes: dict[int, int] = {}
        for _, found in results:
            for code, count in found.items():
                codes[code] = codes.get(code, 0) + count
        return latencies, codes, took, (time.process_time() - cpu) / took

    out.put(asyncio.run(run()))  # type: ignore[attr-defined]


def drive(
    port: int, kind: str, arg: str, tokens: list[str], *, clients: int, seconds: float
) -> tuple[float, float, float, dict[int, int], float]:
    """requests/s, p50 ms, p95 ms, status counts, the client's CPU (cores busy)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_load, args=(port, kind, arg, tokens, clients, seconds, queue))
    proc.start()
    latencies, codes, took, client_cpu = queue.get(timeout=seconds + 120)
    proc.join(30)
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p95 = latencies[int(len(latencies) * 0.95)] * 1000
    return len(latencies) / took, p50, p95, codes, client_cpu


def wrk(url: str, *, clients: int, seconds: float) -> float | None:
    tool = shutil.which("wrk")
    if tool is None:
        return None
    found = subprocess.run(
        [tool, "-t2", f"-c{clients}", f"-d{max(1, int(seconds))}s", url],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    for line in found.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    return None


# --- the servers ----------------------------------------------------------------------------


LOGS = Path(tempfile.gettempdir())


def server_log(name: str) -> Any:
    """A file for a server's stderr (a pipe nobody reads would stop the server when full)."""
    return (LOGS / name).open("w", encoding="utf-8")


def wait_up(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"server exited; see the logs in {LOGS}")
        time.sleep(0.2)
    raise SystemExit(f"server did not start at {url}")


def start_slice(root: Path, workers: int, env: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    script = Path(sys.executable).parent / "slice"
    proc = subprocess.Popen(
        [str(script), "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stderr=server_log(f"slice-{workers}w.log"),
        text=True,
    )
    wait_up(f"http://127.0.0.1:{port}/healthz", proc)
    return proc, port


def start_trivial(workers: int) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "--app-dir",
            str(Path(__file__).resolve().parent),
            "web_bench:trivial",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-proxy-headers",
            "--no-server-header",
            "--log-level",
            "warning",
        ],
        cwd=Path(__file__).resolve().parents[1],
        stderr=server_log(f"trivial-{workers}w.log"),
        text=True,
    )
    wait_up(f"http://127.0.0.1:{port}/", proc)
    return proc, port


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--papers", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    loads = [os.getloadavg()]

    global LOGS
    LOGS = Path(tempfile.mkdtemp(prefix="slice-webbench-"))
    root = LOGS / "project"
    init_project(root, name="Bench Weekly")
    config = root / "slice.toml"
    text = config.read_text(encoding="utf-8")
    limits_off = "signups_per_ip_per_hour = 0\nsignups_per_address_per_hour = 0\n"
    config.write_text(text.replace("[web]\n", "[web]\n" + limits_off, 1), encoding="utf-8")
    smtp = RecordingSMTPServer()
    smtp.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLICE_")}
    env.update(
        SLICE_CONFIG=str(config),
        SLICE_SECRET_KEY=SECRET,
        SLICE_SMTP_HOST="127.0.0.1",
        SLICE_SMTP_PORT=str(smtp.port),
    )
    settings = load_settings(config=config, environ=env)
    store = Store.open(settings.database_url)
    db = Path(settings.database_url.removeprefix("sqlite:///"))
    took = fill(db, args.papers)
    print(f"{args.papers:,} papers in {db} ({took:.1f} s)", flush=True)
    subscribers = Subscribers(settings, store)
    rows = [(f"reader{i}@example.org", "") for i in range(READERS)]
    with store.write() as session:
        from newsletter.core.models import Subscriber, SubscriberStatus

        session.add_all(
            Subscriber(
                email=email,
                email_key=email,
                status=SubscriberStatus.CONFIRMED.value,
                consent_source=ConsentSource.IMPORT_HELD.value,
            )
            for email, _ in rows
        )
    tokens = [subscribers.tokens.unsubscribe_token(s.uid) for s in subscribers.all()]
    form = subscribers.tokens.form_token()
    store.dispose()

    paths = [
        ("GET /", "get", "/"),
        ("GET /?q=segmentation", "get", "/?q=segmentation"),
        ("POST /subscribe", "signup", form),
        ("POST /unsubscribe (one-click)", "oneclick", ""),
    ]
    # every server runs all along, and the runs alternate 1 and 2 workers, path by path and
    # round by round, so that the load of a shared machine falls on both alike
    servers = {
        ("trivial", 1): start_trivial(1),
        ("trivial", 2): start_trivial(2),
        ("slice", 1): start_slice(root, 1, env),
        ("slice", 2): start_slice(root, 2, env),
    }
    runs: dict[tuple[str, int], list[tuple[float, float, float, float]]] = {}
    codes_seen: dict[tuple[str, int], dict[int, int]] = {}
    used = 0  # one-click: every run unsubscribes readers no run has seen
    print(
        f"{args.clients} clients, {args.seconds:g} s per run, {args.rounds} rounds",
        flush=True,
    )
    try:
        for (kind, _workers), (_, port) in servers.items():  # warm up every worker
            arg = "/" if kind == "trivial" else "/?q=segmentation"
            drive(port, "get", arg, [], clients=args.clients, seconds=1)
            if kind == "slice":
                drive(port, "get", "/", [], clients=args.clients, seconds=1)
        for _ in range(args.rounds):
            for label, kind, arg in [("trivial", "get", "/"), *paths]:
                for workers in (1, 2):
                    server = "trivial" if label == "trivial" else "slice"
                    port = servers[(server, workers)][1]
                    batch = tokens[used:] if kind == "oneclick" else tokens
                    rate, p50, p95, codes, client_cpu = drive(
                        port, kind, arg, batch, clients=args.clients, seconds=args.seconds
                    )
                    if kind == "oneclick":
                        used += sum(codes.values()) + args.clients
                    runs.setdefault((label, workers), []).append((rate, p50, p95, client_cpu))
                    seen = codes_seen.setdefault((label, workers), {})
                    for code, count in codes.items():
                        seen[code] = seen.get(code, 0) + count
        wrk_figures = {}
        for (kind, workers), (_, port) in servers.items():
            for arg in ["/"] if kind == "trivial" else ["/", "/?q=segmentation"]:
                found = wrk(
                    f"http://127.0.0.1:{port}{arg}", clients=args.clients, seconds=args.seconds
                )
                if found:
                    wrk_figures[(kind, arg, workers)] = found
    finally:
        for proc, _ in servers.values():
            stop(proc)
        smtp.stop()
    answered = sum(codes_seen[("POST /unsubscribe (one-click)", w)].get(200, 0) for w in (1, 2))
    store = Store.open(settings.database_url)
    recorded = Subscribers(settings, store).count().get("unsubscribed", 0)
    store.dispose()
    print(f"one-click: {answered:,} answered 200, {recorded:,} recorded as unsubscribed")

    def median(label: str, workers: int) -> tuple[float, ...]:
        found = runs[(label, workers)]
        return tuple(statistics.median(r[i] for r in found) for i in range(4))

    print(
        "median of the rounds: requests/s, p50 ms, p95 ms, ratio to trivial (same workers), "
        "the load generator's CPU (cores), status counts"
    )
    for workers in (1, 2):
        trivial_rate = median("trivial", workers)[0]
        for label in ["trivial", *[p[0] for p in paths]]:
            rate, p50, p95, client_cpu = median(label, workers)
            print(
                f"  {workers}w {label:30} {rate:8.0f}/s {p50:7.1f} {p95:7.1f}  "
                f"{rate / trivial_rate:5.3f}x  {client_cpu:4.2f}  {codes_seen[(label, workers)]}"
            )
    print("2 workers / 1 worker:")
    for label in ["trivial", *[p[0] for p in paths]]:
        print(f"  {label:30} {median(label, 2)[0] / median(label, 1)[0]:.2f}x")
    if wrk_figures:
        print(f"wrk -t2 -c{args.clients}:")
        for (kind, arg, workers), rate in sorted(wrk_figures.items()):
            print(f"  {workers}w {kind} GET {arg:20} {rate:8.0f}/s")
    print(f"confirmation emails received by the sink: {len(smtp.messages):,}")
    print(f"load average at the start: {loads[0]}, at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
