"""SIGTERM stops `slice send`, `slice dev-smtp` and `slice serve`, even with SIGINT ignored.

A shell script's background job, or a systemd unit, runs with SIGINT ignored and
is stopped with SIGTERM. These tests start the real commands that way, as
subprocesses, and stop them with SIGTERM. For the send (stopped by SIGTERM or by
Ctrl-C), every message the relay has answered by then is in the ledger as sent:
only the messages still on the wire stay 'sending' (and go again, with the same
Message-ID, on the next run). `send --workers 2` stops its workers with it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from sqlmodel import select

from newsletter.core.config import load_settings
from newsletter.core.models import Delivery, Subscriber
from newsletter.core.store import Store
from tests.send_support import ISSUE, add_readers, parse, write_issue
from tests.support import workershare
from tests.support.smtpd import RecordingSMTPServer

CONCURRENCY = 3


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def slice_proc(
    project: Path,
    env: dict[str, str],
    *args: str,
    stdout: IO[str] | int = subprocess.PIPE,
    sigint: bool = False,
) -> subprocess.Popen[str]:
    """`slice ARGS` in a process of its own that ignores SIGINT, as a background job does.

    With ``sigint`` it takes Ctrl-C, as in a terminal.
    """
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLICE_")}
    config = str(project / "slice.toml")
    return subprocess.Popen(
        [sys.executable, "-c", "from newsletter.cli import app; app()", "--config", config, *args],
        env={**clean, **env},
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=None if sigint else ignore_sigint,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; killed at the end if a signal failed to stop them."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_listening(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120  # a busy machine takes a while to import the web app
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_stopped_send_keeps_every_answer_the_relay_gave(
    project: Path,
    smtp_environ: dict[str, str],
    smtp_server: RecordingSMTPServer,
    db_url: str,
    started: list[subprocess.Popen[str]],
    stop: signal.Signals,
) -> None:
    """SIGTERM with SIGINT ignored (a background job), and Ctrl-C in a terminal."""
    env = {**smtp_environ, "SLICE_DATABASE_URL": db_url}
    settings = load_settings(config=project / "slice.toml", environ=env)
    with Store.open(settings.database_url) as store:
        write_issue(settings, store, papers=1)
        addresses = add_readers(store, 60)
    send_args = ["send", ISSUE, "--rate", "0", "--concurrency", str(CONCURRENCY)]
    proc = slice_proc(project, env, *send_args, sigint=stop == signal.SIGINT)
    started.append(proc)
    deadline = time.monotonic() + 60
    while len(smtp_server.messages) < 12 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.002)
    # the relay now stalls every next message at RCPT: each connection has had its last
    # message answered (250) a moment ago and holds one more on the wire when SIGTERM lands
    smtp_server.rcpt_delay = 30.0
    # wait until every connection holds its next message at RCPT: by then the relay
    # has answered all it will answer (a fixed pause could end before a busy machine
    # got there, and a message answered after it would look sent without a reply)
    deadline = time.monotonic() + 60
    while smtp_server.rcpt_waiting < CONCURRENCY:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{smtp_server.rcpt_waiting} RCPTs held"
        time.sleep(0.01)
    received = {m.rcpt_tos[0] for m in smtp_server.messages}
    proc.send_signal(stop)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Interrupted: " in err and f"Run `slice send {ISSUE}` again to continue." in err
    assert "Traceback" not in err

    with Store.open(settings.database_url) as store, store.read() as session:
        rows = session.exec(select(Delivery, Subscriber).join(Subscriber)).all()
    state = {s.email: d.status for d, s in rows}
    # every message the relay answered is recorded as sent; nothing else is
    assert {a for a, st in state.items() if st == "sent"} == received
    # only the messages stalled at RCPT are still 'sending'; the rest went back to pending
    counts = Counter(state.values())
    assert counts["sending"] <= CONCURRENCY
    assert counts["sent"] + counts["sending"] + counts["pending"] == len(addresses)

    smtp_server.rcpt_delay = 0.0
    final = slice_proc(project, env, *send_args)
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    assert "Issue finished." in out
    copies = Counter(m.rcpt_tos[0] for m in smtp_server.messages)
    assert set(copies) == set(addresses)
    assert max(copies.values()) == 1  # nobody the relay had answered got it twice
    ids = {m.rcpt_tos[0]: str(parse(m.data)["Message-ID"]) for m in smtp_server.messages}
    assert len(set(ids.values())) == len(addresses)


def test_sigterm_stops_dev_smtp_with_sigint_ignored(
    project: Path, environ: dict[str, str], tmp_path: Path, started: list[subprocess.Popen[str]]
) -> None:
    port = free_port()
    out_file = tmp_path / "dev-smtp.out"
    with out_file.open("w") as stdout:
        proc = slice_proc(project, environ, "dev-smtp", "--port", str(port), stdout=stdout)
    started.append(proc)
    # its own word that it listens, not a connection to the port: on a busy machine
    # another program may take that free port first, and a probe would then succeed
    # while this process is still importing, before its SIGTERM handler is in place
    deadline = time.monotonic() + 120
    while "Listening on" not in out_file.read_text():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "dev-smtp never said it was listening"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Stopped." in out_file.read_text()
    assert "Traceback" not in err


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_serve_with_sigint_ignored(
    project: Path, environ: dict[str, str], started: list[subprocess.Popen[str]], workers: int
) -> None:
    port = free_port()
    where = ["--host", "127.0.0.1", "--port", str(port)]
    proc = slice_proc(project, environ, "serve", *where, "--workers", str(workers))
    started.append(proc)
    wait_listening(port, proc)
    serving = workershare.workers(proc.pid)  # the process itself, or its two workers
    assert len(serving) == workers
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=40)
    # uvicorn shuts down, then ends the process with the signal it was given
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err
    assert not [pid for pid in serving if Path(f"/proc/{pid}").exists()]  # no worker left
    with pytest.raises(OSError):  # no worker process is left listening
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()


def test_sigterm_stops_a_send_with_two_workers_and_both_workers_with_it(
    project: Path,
    smtp_environ: dict[str, str],
    smtp_server: RecordingSMTPServer,
    pg_url: str,
    started: list[subprocess.Popen[str]],
) -> None:
    env = {**smtp_environ, "SLICE_DATABASE_URL": pg_url}
    settings = load_settings(config=project / "slice.toml", environ=env)
    with Store.open(settings.database_url) as store:
        write_issue(settings, store, papers=1)
        addresses = add_readers(store, 200)
    smtp_server.delay = 0.05
    send_args = ["send", ISSUE, "--workers", "2", "--rate", "0", "--concurrency", "2"]
    proc = slice_proc(project, env, *send_args)
    started.append(proc)
    deadline = time.monotonic() + 120
    while len(smtp_server.messages) < 20:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the send made no progress"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, err
    assert f"Run `slice send {ISSUE}` again to continue." in err and "Traceback" not in err
    # no worker goes on sending on its own
    stopped_at = len(smtp_server.messages)
    time.sleep(1.0)
    assert len(smtp_server.messages) == stopped_at < len(addresses)
    status = slice_proc(project, env, "send", ISSUE, "--status")
    shown, _ = status.communicate(timeout=60)
    assert "No worker is sending it now." in shown

    smtp_server.delay = 0.0
    final = slice_proc(project, env, *send_args)
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    assert "Issue finished." in out
    copies = Counter(m.rcpt_tos[0] for m in smtp_server.messages)
    assert set(copies) == set(addresses)
    assert sum(copies.values()) - len(addresses) <= 2 * 2  # only what was on the wire
