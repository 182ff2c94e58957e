"""One-click unsubscribe with 1 and 2 `slice serve` workers, on SQLite or PostgreSQL.

Every request unsubscribes a reader no other request touched, so each is a real write; the
run fails unless every answer 200 is a reader recorded as unsubscribed. The load client and
the servers are `web_bench.py`'s; the ratio printed is 2 workers over 1 worker, measured in
alternating runs so the machine's load falls on both alike, next to the same ratio for
`web_bench.py`'s trivial endpoint measured back to back (what a second worker can give at
all on the machine at that moment). Each run also prints how the workers shared it: the
connections each held and its CPU ms per request, and the load client's.

    .venv/bin/python bench/oneclick_bench.py [--pg postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import os
import statistics
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
    answered = used = 0
    try:
        for _ in range(args.rounds):
            for (kind, workers), (proc, port) in servers.items():
                batch = tokens[used:] if kind == "one-click" else []
                rate, p50, p95, codes, shares = measured(
                    proc.pid, port, batch, clients=args.clients, seconds=args.seconds
                )
                if kind == "one-click":
                    used += sum(codes.values())
                    answered += codes.get(200, 0)
                rates[(kind, workers)].append(rate)
                print(
                    f"  {kind:9} {workers}w {rate:7.0f}/s  p50 {p50:6.1f} ms  "
                    f"p95 {p95:6.1f} ms  {codes}  (load {os.getloadavg()[0]:.1f})"
                )
                print(f"     {shares}")
    finally:
        for proc, _ in servers.values():
            web_bench.stop(proc)
    store = Store.open(settings.database_url)
    recorded = Subscribers(settings, store).count().get("unsubscribed", 0)
    store.dispose()
    print(f"{answered:,} answered 200, {recorded:,} recorded as unsubscribed")
    for kind in ("trivial", "one-click"):
        one, two = (statistics.median(rates[(kind, n)]) for n in (1, 2))
        print(
            f"median {kind}: 1 worker {one:.0f}/s, 2 workers {two:.0f}/s, 2w / 1w {two / one:.2f}x"
        )
    print(f"load average at the start {start_load[0]:.1f}, at the end {os.getloadavg()[0]:.1f}")
    if recorded != answered:
        raise SystemExit("an answered unsubscribe was not recorded")


def measured(
    server: int, port: int, tokens: list[str], *, clients: int, seconds: float
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
    load = threading.Thread(
        target=lambda: found.append(
            web_bench.drive(port, kind, arg, tokens, clients=clients, seconds=seconds)
        )
    )
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


if __name__ == "__main__":
    main()
