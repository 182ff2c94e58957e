"""One-click unsubscribe with 1 and 2 `slice serve` workers, on SQLite or PostgreSQL.

Every request unsubscribes a reader no other request touched, so each is a real write; the
run fails unless every answer 200 is a reader recorded as unsubscribed. The load client and
the servers are `web_bench.py`'s; the ratio printed is 2 workers over 1 worker, measured in
alternating runs so the machine's load falls on both alike, next to the same ratio for
`web_bench.py`'s trivial endpoint measured back to back (what a second worker can give at
all on the machine at that moment). Each run also prints how the workers shared it: the
connections each held and its CPU ms per request, and the load client's.

    .venv/bin/python bench/oneclick_bench.py [--pg postgresql://postgres@127.0.0.1:5432/test]
        [--client wrk]

``--client wrk`` drives both servers with wrk (Debian package ``wrk``, the script
bench/oneclick.lua) instead of the Python client: on a 2-core machine the Python
client's own CPU (0.06-0.07 ms a request, a fifth of a core at 3,000/s) is taken
from the second worker. wrk does not wait for the requests in flight when its time
is up, so there the check is that every answer 200 was recorded and at most
``--clients`` more per run were.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import web_bench  # bench/ is on the path: the script's own folder
from ingest_bench import fresh_postgres

from newsletter.core.config import load_settings
from newsletter.core.models import Subscriber, SubscriberStatus
from newsletter.core.project import init_project
from newsletter.core.store import Store
from newsletter.readers.subscribers import ConsentSource, Subscribers
from tests.support import workershare


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pg", help="a PostgreSQL server URL (a new database is made on it)")
    parser.add_argument("--readers", type=int, default=40_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--client", choices=("python", "wrk"), default="python")
    args = parser.parse_args()
    start_load = os.getloadavg()

    web_bench.LOGS = Path(tempfile.mkdtemp(prefix="slice-oneclick-"))
    root = web_bench.LOGS / "project"
    init_project(root, name="Bench Weekly")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLICE_")}
    env.update(SLICE_CONFIG=str(root / "slice.toml"), SLICE_SECRET_KEY=web_bench.SECRET)
    if args.pg:
        env["SLICE_DATABASE_URL"] = fresh_postgres(args.pg, "slice_oneclick_bench")
    settings = load_settings(config=root / "slice.toml", environ=env)
    store = Store.open(settings.database_url)
    with store.write() as session:
        session.add_all(
            Subscriber(
                email=f"reader{i}@example.org",
                email_key=f"reader{i}@example.org",
                status=SubscriberStatus.CONFIRMED.value,
                consent_source=ConsentSource.IMPORT_HELD.value,
            )
            for i in range(args.readers)
        )
    subscribers = Subscribers(settings, store)
    tokens = [subscribers.tokens.unsubscribe_token(s.uid) for s in subscribers.all()]
    store.dispose()
    backend = "PostgreSQL" if args.pg else "SQLite"
    print(
        f"{backend}, {args.readers:,} readers, {args.clients} clients, {args.seconds:g} s x {args.rounds}"
    )

    # the baseline, run back to back with the one-click runs: what a second worker gives a
    # trivial endpoint on this machine at this moment (uvicorn's own --workers, one socket)
    servers = {("trivial", n): web_bench.start_trivial(n) for n in (1, 2)} | {
        ("one-click", n): web_bench.start_slice(root, n, env) for n in (1, 2)
    }
    rates: dict[tuple[str, int], list[float]] = {key: [] for key in servers}
    answered = used = slack = 0
    tail = "p99" if args.client == "wrk" else "p95"  # the percentile each client reports
    try:
        for _ in range(args.rounds):
            for (kind, workers), (proc, port) in servers.items():
                batch = tokens[used:] if kind == "one-click" else []
                rate, p50, p95, codes, shares = measured(
                    proc.pid,
                    port,
                    batch,
                    clients=args.clients,
                    seconds=args.seconds,
                    client=args.client,
                )
                if kind == "one-click":
                    # wrk leaves up to one request per connection unanswered when time is up
                    unanswered = args.clients if args.client == "wrk" else 0
                    used += sum(codes.values()) + unanswered
                    slack += unanswered
                    answered += codes.get(200, 0)
                rates[(kind, workers)].append(rate)
                print(
                    f"  {kind:9} {workers}w {rate:7.0f}/s  p50 {p50:6.1f} ms  "
                    f"{tail} {p95:6.1f} ms  {codes}  (load {os.getloadavg()[0]:.1f})"
                )
                print(f"     {shares}")
    finally:
        for proc, _ in servers.values():
            web_bench.stop(proc)
    store = Store.open(settings.database_url)
    recorded = Subscribers(settings, store).count().get("unsubscribed", 0)
    store.dispose()
    print(f"{answered:,} answered 200, {recorded:,} recorded as unsubscribed")
    if used > len(tokens):
        raise SystemExit("ran out of readers: ask for more with --readers")
    for kind in ("trivial", "one-click"):
        one, two = (statistics.median(rates[(kind, n)]) for n in (1, 2))
        print(
            f"median {kind}: 1 worker {one:.0f}/s, 2 workers {two:.0f}/s, 2w / 1w {two / one:.2f}x"
        )
    print(f"load average at the start {start_load[0]:.1f}, at the end {os.getloadavg()[0]:.1f}")
    if not answered <= recorded <= answered + slack:
        raise SystemExit("an answered unsubscribe was not recorded")


def measured(
    server: int, port: int, tokens: list[str], *, clients: int, seconds: float, client: str
) -> tuple[float, float, float, dict[int, int], str]:
    """One run of the load, with how the server's workers shared it.

    The share line gives, per worker, the connections it held (sampled during the
    run) and its CPU ms per request of the whole run, then the load client's.
    """
    pids = workershare.workers(server)
    before = {pid: workershare.cpu_seconds(pid) for pid in pids}
    database = {pid: workershare.cpu_seconds(pid) for pid in workershare.named("postgres")}
    found: list[tuple[float, float, float, dict[int, int], float]] = []
    kind, arg = ("oneclick", "") if tokens else ("get", "/")  # no tokens: the trivial baseline

    def run() -> tuple[float, float, float, dict[int, int], float]:
        if client == "wrk":
            return run_wrk(port, tokens, clients=clients, seconds=seconds)
        return web_bench.drive(port, kind, arg, tokens, clients=clients, seconds=seconds)

    load = threading.Thread(target=lambda: found.append(run()))
    load.start()
    held: dict[int, int] = {}
    while load.is_alive():
        now = workershare.connections(pids, port)
        if sum(now.values()) > sum(held.values()):
            held = now
        load.join(0.25)
    rate, p50, p95, codes, client_cores = found[0]
    done = sum(codes.values()) or 1
    parts = [
        f"pid {pid}: {held.get(pid, 0)} conn, "
        f"{(workershare.cpu_seconds(pid) - before[pid]) * 1000 / done:.2f} ms/req"
        for pid in pids
    ]
    if database:  # every PostgreSQL process on the machine, other programs' backends too
        after = {pid: workershare.cpu_seconds(pid) for pid in database}
        spent = sum(after[pid] - began for pid, began in database.items() if after[pid])
        parts.append(f"all postgres {spent * 1000 / done:.2f} ms/req")
    parts.append(f"client {client_cores / rate * 1000 if rate else 0:.2f} ms/req")
    return rate, p50, p95, codes, "; ".join(parts)


def run_wrk(
    port: int, tokens: list[str], *, clients: int, seconds: float
) -> tuple[float, float, float, dict[int, int], float]:
    """`web_bench.drive` with wrk: requests/s, p50 and p99 ms, status counts, wrk's cores."""
    tool = shutil.which("wrk")
    if tool is None:
        raise SystemExit("--client wrk needs wrk (Debian package wrk)")
    command = [tool, "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--latency"]
    if tokens:
        listed = web_bench.LOGS / "tokens.txt"
        # a generous share: wrk reads the file before it starts the clock
        listed.write_text("\n".join(tokens[: int(seconds * 20_000)]) + "\n")
        command += ["-s", str(Path(__file__).with_name("oneclick.lua"))]
    command.append(f"http://127.0.0.1:{port}/")
    if tokens:
        command += ["--", str(listed), "1"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    done = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    bad = int(failed[1]) if failed else 0
    took = float(re.search(r"requests in ([\d.]+)s", out)[1])  # type: ignore[index]

    def percentile(label: str) -> float:
        found = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if found is None:
            return float("nan")
        return float(found[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[found[2]]

    codes = {200: done - bad} | ({0: bad} if bad else {})
    return done / took, percentile("50"), percentile("99"), codes, cpu / took


if __name__ == "__main__":
    main()
