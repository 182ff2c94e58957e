"""Send benchmarks: throughput against plain aiosmtplib, memory against audience size, rate accuracy.

    .venv/bin/python bench/send_bench.py                 # all three
    .venv/bin/python bench/send_bench.py throughput [--readers 5000] [--concurrency 8]
    .venv/bin/python bench/send_bench.py memory [--sizes 10000,200000]
    .venv/bin/python bench/send_bench.py rate [--rate 50] [--seconds 20]

Throughput: `send_issue` (ledger, per-reader fill-in, DKIM on/off, global limiter
off) to a local sink in another process, against a baseline measured in the
same run: plain aiosmtplib sending the same bytes over the same number of
reused connections, no ledger, no signing.

Memory: peak RSS of a process that only runs the send (the audience is
inserted by another process first), for each audience size.

Rate: a 50/s send over 20 s into an in-process sink; the measured rate and
the largest count in any 1-second window of arrival times.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiosmtplib  # noqa: E402
from aiosmtpd.smtp import SMTP, Envelope, Session  # noqa: E402
from common import SECRET, aiosmtplib_send, one_message, status_kib  # noqa: E402

from newsletter.core.config import load_settings  # noqa: E402
from newsletter.core.project import init_project  # noqa: E402
from newsletter.core.settings import Settings  # noqa: E402
from newsletter.core.store import Store  # noqa: E402
from newsletter.send.devsmtp import SmtpServerThread  # noqa: E402
from newsletter.send.service import SendOptions, send_issue  # noqa: E402
from tests.send_support import ISSUE, add_readers, make_dkim_key, write_issue  # noqa: E402


class CountingSink:
    """Accepts everything, keeps nothing but a count and arrival times."""

    def __init__(self) -> None:
        self.count = 0
        self.bytes = 0
        self.times: list[float] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.count += 1
        self.bytes += len(envelope.original_content or b"")
        self.times.append(time.monotonic())
        return "250 OK"


class FastSink(asyncio.Protocol):
    """A minimal SMTP sink that reads DATA in bulk (aiosmtpd reads it line by line, and
    would be the bottleneck); replies 250 to everything, keeps only a count."""

    count = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buffer = b""
        self.in_data = False
        self.transport.write(b"220 sink ESMTP\r\n")  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.in_data:
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    return
                self.buffer = self.buffer[end + 5 :]
                self.in_data = False
                FastSink.count += 1
                self.transport.write(b"250 OK\r\n")  # type: ignore[attr-defined]
                continue
            line, sep, rest = self.buffer.partition(b"\r\n")
            if not sep:
                return
            self.buffer = rest
            verb = line[:4].upper()
            if verb == b"EHLO":
                reply = b"250-sink\r\n250-SIZE 100000000\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
            elif verb == b"DATA":
                self.in_data = True
                self.buffer = b"\r\n" + self.buffer  # so an empty body still ends at CRLF.CRLF
                reply = b"354 go ahead\r\n"
            elif verb == b"QUIT":
                self.transport.write(b"221 bye\r\n")  # type: ignore[attr-defined]
                self.transport.close()
                return
            else:
                reply = b"250 OK\r\n"
            self.transport.write(reply)  # type: ignore[attr-defined]


def run_sink(port: int) -> None:
    """The sink as its own process (so client and server do not share one core)."""

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(FastSink, "127.0.0.1", port)
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


def start_sink_process() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, __file__, "sink"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, port


def make_project(
    folder: Path, *, port: int, readers: int, papers: int, dkim: bool
) -> tuple[Settings, Store]:
    init_project(folder, name="Bench Weekly")
    env = {
        "SLICE_SECRET_KEY": SECRET,
        "SLICE_SMTP_HOST": "127.0.0.1",
        "SLICE_SMTP_PORT": str(port),
        "SLICE_BASE_URL": "https://weekly.example.org",
    }
    if dkim:
        key, _record = make_dkim_key(folder)
        env |= {
            "SLICE_DKIM_KEY": str(key),
            "SLICE_DKIM_SELECTOR": "s1",
            "SLICE_DKIM_DOMAIN": "example.org",
        }
    settings = load_settings(config=folder / "slice.toml", environ=env)
    store = Store.open(settings.database_url)
    write_issue(settings, store, papers=papers)
    for start in range(0, readers, 50_000):
        add_readers(store, min(50_000, readers - start), start=start)
    return settings, store


def throughput(readers: int, concurrency: int, papers: int, rounds: int) -> list[dict[str, Any]]:
    """Baseline and `slice send` back to back, ``rounds`` times; the median ratio of the rounds."""
    sink, port = start_sink_process()
    results = []
    try:
        for dkim in (False, True):
            ratios, base_rates, our_rates = [], [], []
            size = 0
            for _ in range(rounds):
                with tempfile.TemporaryDirectory() as tmp:
                    settings, store = make_project(
                        Path(tmp) / "p", port=port, readers=readers, papers=papers, dkim=dkim
                    )
                    data = one_message(settings)
                    size = len(data)
                    base = aiosmtplib_send(port, data, readers, concurrency)
                    options = SendOptions(rate=0, concurrency=concurrency)
                    started = time.perf_counter()
                    report = asyncio.run(
                        send_issue(settings, store, ISSUE, options=options, rng=random.Random(0))
                    )
                    ours = time.perf_counter() - started
                    store.dispose()
                assert report.tally.sent == readers, report.tally
                ratios.append(base / ours)
                base_rates.append(readers / base)
                our_rates.append(readers / ours)
            row = {
                "dkim": dkim,
                "readers": readers,
                "message_bytes": size,
                "baseline_per_s": statistics.median(base_rates),
                "slice_per_s": statistics.median(our_rates),
                "ratio": statistics.median(ratios),
                "ratios": ratios,
            }
            results.append(row)
            print(
                f"throughput dkim={'on ' if dkim else 'off'} {readers} readers x {size / 1024:.1f} KB "
                f"over {concurrency} connections (median of {rounds}): baseline {row['baseline_per_s']:.0f}/s, "
                f"slice send {row['slice_per_s']:.0f}/s, ratio {row['ratio']:.2f} "
                f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})",
                flush=True,
            )
    finally:
        sink.kill()
        sink.wait()
    return results


def memory_child(folder: Path, port: int) -> None:
    """Runs only the send, then prints its peak RSS (KiB) and the count."""
    settings = load_settings(
        config=folder / "slice.toml",
        environ={
            "SLICE_SECRET_KEY": SECRET,
            "SLICE_SMTP_HOST": "127.0.0.1",
            "SLICE_SMTP_PORT": str(port),
        },
    )
    store = Store.open(settings.database_url)
    before = status_kib("VmRSS")
    started = time.perf_counter()
    report = asyncio.run(
        send_issue(settings, store, ISSUE, options=SendOptions(rate=0, concurrency=8))
    )
    elapsed = time.perf_counter() - started
    # VmHWM, not ru_maxrss: Linux carries a parent's ru_maxrss over into a forked child,
    # and the parent here grew while it inserted the audience
    peak = status_kib("VmHWM")
    print(
        json.dumps(
            {"sent": report.tally.sent, "before_kib": before, "peak_kib": peak, "seconds": elapsed}
        )
    )


def memory(sizes: list[int]) -> list[dict[str, Any]]:
    sink, port = start_sink_process()
    results = []
    try:
        for size in sizes:
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp) / "p"
                _settings, store = make_project(
                    folder, port=port, readers=size, papers=1, dkim=False
                )
                store.dispose()
                out = subprocess.run(
                    [sys.executable, __file__, "memory-child", str(folder), str(port)],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                row = json.loads(out.strip().splitlines()[-1]) | {"readers": size}
                results.append(row)
                print(
                    f"memory {size} readers: sent {row['sent']} in {row['seconds']:.0f}s, "
                    f"peak RSS {row['peak_kib'] / 1024:.1f} MiB (RSS when the send began: {row['before_kib'] / 1024:.1f} MiB)",
                    flush=True,
                )
    finally:
        sink.kill()
        sink.wait()
    return results


def max_in_window(times: list[float], span: float) -> int:
    best, start = 0, 0
    for end in range(len(times)):
        while times[end] - times[start] >= span:
            start += 1
        best = max(best, end - start + 1)
    return best


def rate_accuracy(rate: float, seconds: float) -> dict[str, Any]:
    sink = CountingSink()
    server = SmtpServerThread(sink).start()
    count = int(rate * seconds) + 1
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings, store = make_project(
                Path(tmp) / "p", port=server.port, readers=count, papers=10, dkim=True
            )
            options = SendOptions(rate=rate, concurrency=4)
            asyncio.run(send_issue(settings, store, ISSUE, options=options))
            store.dispose()
    finally:
        server.stop()
    times = sorted(sink.times)
    measured = (len(times) - 1) / (times[-1] - times[0])
    row = {
        "configured": rate,
        "messages": len(times),
        "span_s": times[-1] - times[0],
        "measured_per_s": measured,
        "max_in_1s": max_in_window(times, 1.0),
    }
    print(
        f"rate {rate:g}/s configured over 4 connections: {len(times)} messages in {row['span_s']:.2f}s "
        f"= {measured:.2f}/s; most in any 1-second window: {row['max_in_1s']}",
        flush=True,
    )
    return row


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "sink":
        run_sink(0)
        return
    if len(sys.argv) > 1 and sys.argv[1] == "memory-child":
        memory_child(Path(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "what", nargs="?", default="all", choices=["all", "throughput", "memory", "rate"]
    )
    parser.add_argument("--readers", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--papers", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--normalizing-data",
        action="store_true",
        help="send through aiosmtplib's SMTP.data (re-normalizes each message) instead of the "
        "wire-form path, to see what that path is worth",
    )
    parser.add_argument("--sizes", default="10000,200000")
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs", flush=True)
    if args.normalizing_data:
        from newsletter.send import deliver

        async def normalizing(client: aiosmtplib.SMTP, data: bytes) -> aiosmtplib.SMTPResponse:
            return await client.data(deliver._unstuff(data))

        deliver._data_as_is = normalizing  # type: ignore[assignment]
        print("(slice send through aiosmtplib's SMTP.data, as the baseline)", flush=True)
    if args.what in ("all", "throughput"):
        throughput(args.readers, args.concurrency, args.papers, args.rounds)
    if args.what in ("all", "memory"):
        memory([int(s) for s in args.sizes.split(",")])
    if args.what in ("all", "rate"):
        rate_accuracy(args.rate, args.seconds)


if __name__ == "__main__":
    main()
