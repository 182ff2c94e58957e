"""`slice send` against Postfix's own C tools: 1, 2 and 4 workers, DKIM off and on, SQLite and PG.

    .venv/bin/python bench/send_workers_bench.py [--readers 20000] [--concurrency 8]
        [--pg postgresql://postgres@127.0.0.1:5432/test]

In one run, against `smtp-sink` (Debian's postfix package) as the relay:

- `smtp-source`: the ceiling of this machine, the same message size over the
  same number of reused connections;
- plain aiosmtplib: the same bytes, `SMTP.sendmail` over reused connections,
  no ledger, no per-reader fill-in, no signing;
- `slice send ISSUE --rate 0 --workers N` as a user runs it (a fresh process
  each time, the audience frozen from scratch), N = 1 on SQLite (which allows
  one writer) and N = 1, 2, 4 on PostgreSQL, DKIM off and on.

Each line gives messages/s, the ratio to `smtp-source`, the peak RSS of the
largest process (a worker), and CPU time per message: of the send's own
processes, of PostgreSQL's backends for the bench database (read from /proc:
PostgreSQL on this machine) and of the relay. A last run with a tenth of the
audience shows whether the peak RSS grows with it.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import SECRET, aiosmtplib_send, one_message  # noqa: E402
from sqlalchemy import create_engine, delete, text, update  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from newsletter.core.config import load_settings  # noqa: E402
from newsletter.core.models import (  # noqa: E402
    Delivery,
    Issue,
    IssueStatus,
    SendPace,
    SendWorker,
    table,
)
from newsletter.core.project import init_project  # noqa: E402
from newsletter.core.settings import Settings  # noqa: E402
from newsletter.core.store import Store  # noqa: E402
from tests.send_support import ISSUE, add_readers, make_dkim_key, write_issue  # noqa: E402

SINK = "/usr/sbin/smtp-sink"
SOURCE = "/usr/sbin/smtp-source"
# runs `slice ...`, then prints the peak RSS (KB) of the largest process among it and its
# children, and their CPU seconds: the children are waited for, so their usage is counted
MEASURE = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "sys.stderr.write(code.stdout + code.stderr)\n"
    "print(u.ru_maxrss, u.ru_utime + u.ru_stime, code.returncode)\n"
)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process of this machine (0 when it is gone or elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class ServerCpu:
    """CPU used during a run by the relay and by PostgreSQL's backends for one database.

    PostgreSQL must run on this machine (its backends are read from /proc); the backends
    are found in pg_stat_activity every 0.2 s and the last reading of each is kept, so a
    backend that ends between two readings loses at most 0.2 s of its time.
    """

    def __init__(self, sink_pid: int, admin_url: str, database: str) -> None:
        self.sink_pid = sink_pid
        self.database = database
        self._engine = create_engine(
            make_url(admin_url).set(drivername="postgresql+psycopg"), pool_size=1
        )
        self._stop = threading.Event()
        self._seen: dict[int, float] = {}
        self._thread: threading.Thread | None = None
        self._sink0 = 0.0
        self.sink = self.pg = 0.0

    def _watch(self) -> None:
        query = text("SELECT pid FROM pg_stat_activity WHERE datname = :d")
        with self._engine.connect() as conn:
            while not self._stop.is_set():
                pids = [int(p) for (p,) in conn.execute(query, {"d": self.database})]
                conn.commit()
                for pid in pids:
                    self._seen[pid] = max(self._seen.get(pid, 0.0), cpu_seconds(pid))
                self._stop.wait(0.2)

    def __enter__(self) -> ServerCpu:
        self._sink0 = cpu_seconds(self.sink_pid)
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self._engine.dispose()
        self.sink = cpu_seconds(self.sink_pid) - self._sink0
        self.pg = sum(self._seen.values())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_sink() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    proc = subprocess.Popen([SINK, *user, f"127.0.0.1:{port}", "512"])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("smtp-sink did not start")


def env_for(port: int, url: str, key: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLICE_")}
    env |= {
        "SLICE_SECRET_KEY": SECRET,
        "SLICE_SMTP_HOST": "127.0.0.1",
        "SLICE_SMTP_PORT": str(port),
        "SLICE_BASE_URL": "https://weekly.example.org",
        "SLICE_DATABASE_URL": url,
    }
    if key is not None:
        env |= {
            "SLICE_DKIM_KEY": str(key),
            "SLICE_DKIM_SELECTOR": "s1",
            "SLICE_DKIM_DOMAIN": "example.org",
        }
    return env


def make_project(folder: Path, env: dict[str, str], readers: int) -> Settings:
    init_project(folder, name="Bench Weekly")
    settings = load_settings(config=folder / "slice.toml", environ=env)
    with Store.open(settings.database_url) as store:
        write_issue(settings, store, papers=10)
        add_readers(store, readers)
    return settings


def reset(url: str) -> None:
    """The issue back to composed, its ledger empty: the next run freezes the audience anew."""
    with Store.open(url) as store, store.engine.begin() as conn:
        for model in (Delivery, SendWorker, SendPace):
            conn.execute(delete(table(model)))
        conn.execute(
            update(table(Issue)).values(
                status=IssueStatus.DRAFT.value, sent_at=None, send_started_at=None
            )
        )


def smtp_source(port: int, size: int, count: int, sessions: int) -> float:
    started = time.perf_counter()
    envelope = ["-f", "newsletter@example.org", "-t", "reader@example.com"]
    port_arg = f"127.0.0.1:{port}"
    subprocess.run(
        [SOURCE, "-d", "-s", str(sessions), "-l", str(size), "-m", str(count), *envelope, port_arg],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return count / (time.perf_counter() - started)


def slice_send(
    config: Path, env: dict[str, str], readers: int, workers: int, concurrency: int
) -> tuple[float, float, float]:
    """(messages/s, peak RSS in MB, CPU ms per message) of one `slice send`."""
    program = [sys.executable, "-c", "from newsletter.cli import app; app()"]
    args = ["--config", str(config), "send", ISSUE, "--rate", "0"]
    args += ["--concurrency", str(concurrency), "--workers", str(workers)]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *program, *args], env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    rss_kb, cpu, code = done.stdout.split()
    if code != "0" or "Issue finished." not in done.stderr:
        raise SystemExit(f"slice send failed:\n{done.stderr[-2000:]}")
    sent = int(re.findall(r"sent (\d+)", done.stderr)[0])
    assert sent == readers, done.stderr
    return readers / elapsed, int(rss_kb) / 1024, float(cpu) * 1000 / readers


def fresh_pg(admin: str) -> tuple[str, str]:
    url = make_url(admin).set(drivername="postgresql+psycopg")
    name = f"slice_bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return url.set(database=name).render_as_string(hide_password=False), name


def drop_pg(admin: str, name: str) -> None:
    engine = create_engine(
        make_url(admin).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--pg",
        default=os.environ.get(
            "SLICE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()
    if not (shutil.which(SINK) and shutil.which(SOURCE)):
        raise SystemExit("needs smtp-sink and smtp-source: apt-get install postfix")
    n, conc = args.readers, args.concurrency
    sink, port = start_sink()
    pg_url, pg_name = fresh_pg(args.pg)
    print(f"{n} readers, {conc} connections per worker, load average {os.getloadavg()[0]:.1f}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            key, _record = make_dkim_key(Path(tmp))
            projects = {}
            for backend, url in (("sqlite", f"sqlite:///{tmp}/sq/slice.db"), ("pg", pg_url)):
                folder = Path(tmp) / backend
                settings = make_project(folder, env_for(port, url, None), n)
                projects[backend] = (folder / "slice.toml", url)
            data = one_message(settings)
            sink0, source0 = cpu_seconds(sink.pid), children_cpu()
            ceiling = smtp_source(port, len(data), n, conc)
            sink_ms = (cpu_seconds(sink.pid) - sink0) * 1000 / n
            source_ms = (children_cpu() - source0) * 1000 / n
            print(f"message {len(data) / 1024:.1f} KB")
            print(
                f"{'smtp-source (ceiling)':34} {ceiling:8.0f} msg/s  1.00x  "
                f"CPU ms/msg: smtp-source {source_ms:.2f} relay {sink_ms:.2f}"
            )
            plain = n / aiosmtplib_send(port, data, n, conc)
            print(f"{'plain aiosmtplib':34} {plain:8.0f} msg/s  {plain / ceiling:.2f}x")
            runs = [("sqlite", 1)] + [("pg", w) for w in (1, 2, 4)]
            for dkim in (False, True):
                for backend, workers in runs:
                    config, url = projects[backend]
                    reset(url)
                    env = env_for(port, url, key if dkim else None)
                    with ServerCpu(sink.pid, args.pg, pg_name) as servers:
                        rate, rss, cpu = slice_send(config, env, n, workers, conc)
                    name = f"slice send {backend} {workers}w DKIM {'on' if dkim else 'off'}"
                    pg = f"PG {servers.pg * 1000 / n:.2f}" if backend == "pg" else "PG    -"
                    print(
                        f"{name:34} {rate:8.0f} msg/s  {rate / ceiling:.2f}x  "
                        f"peak RSS {rss:5.0f} MB  CPU ms/msg: slice {cpu:.2f} {pg} "
                        f"relay {servers.sink * 1000 / n:.2f}  (load {os.getloadavg()[0]:.1f})",
                        flush=True,
                    )
            # the same send with a tenth of the audience: is the peak RSS flat in its size?
            config, url = projects["pg"]
            reset(url)
            with Store.open(url) as store, store.engine.begin() as conn:
                conn.execute(text("DELETE FROM subscribers WHERE id % 10 <> 0"))
            small = n // 10
            rate, rss, cpu = slice_send(config, env_for(port, url, None), small, 1, conc)
            print(
                f"{f'slice send pg 1w, {small} readers':34} {rate:8.0f} msg/s  peak RSS {rss:5.0f} MB"
            )
    finally:
        sink.terminate()
        sink.wait()
        drop_pg(args.pg, pg_name)


if __name__ == "__main__":
    main()
