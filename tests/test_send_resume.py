"""A send killed with SIGKILL at several points, then resumed: nobody lost, duplicates only in flight
(or in the last group of outcomes not yet committed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from sqlmodel import select

from newsletter.core.config import load_settings
from newsletter.core.models import Delivery, Issue, Subscriber
from newsletter.core.store import Store
from tests.send_support import ISSUE, add_readers, parse, write_issue
from tests.support.smtpd import RecordingSMTPServer

CONCURRENCY = 3
COMMIT_ROWS = 3


def start_send(project: Path, env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLICE_")}
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from newsletter.cli import app; app()",
            "--config",
            str(project / "slice.toml"),
            "send",
            ISSUE,
            "--rate",
            "0",
            "--concurrency",
            str(CONCURRENCY),
            *extra,
        ],
        env={**clean, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_when(proc: subprocess.Popen[str], server: RecordingSMTPServer, received: int) -> None:
    """SIGKILL the send once the server has received ``received`` messages in all."""
    deadline = time.monotonic() + 60
    while len(server.messages) < received and proc.poll() is None:
        assert time.monotonic() < deadline, "the send made no progress"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


@pytest.mark.slow
def test_killed_sends_resume_without_losing_or_repeating_readers(
    project: Path, smtp_environ: dict[str, str], smtp_server: RecordingSMTPServer
) -> None:
    # outcomes are committed in groups of at most COMMIT_ROWS: a kill may lose one group
    config = project / "slice.toml"
    config.write_text(
        config.read_text().replace("[send]\n", f"[send]\ncommit_rows = {COMMIT_ROWS}\n")
    )
    settings = load_settings(config=config, environ=smtp_environ)
    with Store.open(settings.database_url) as store:
        write_issue(settings, store, papers=3)
        addresses = add_readers(store, 90)
    # DATA takes a moment, so kills land mid-transaction, and a send never outruns a test
    # thread that a busy machine schedules late
    smtp_server.delay = 0.05

    kills = [0, 9, 31, 58]  # right at the start (snapshot), and three points mid-send
    for point in kills:
        proc = start_send(project, smtp_environ)
        if point == 0:
            time.sleep(0.3)  # killed while starting: maybe before, maybe after the snapshot
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        else:
            kill_when(proc, smtp_server, point)
        assert proc.returncode == -signal.SIGKILL

    final = start_send(project, smtp_environ)
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    assert "Issue finished." in out

    by_reader: dict[str, list[str]] = defaultdict(list)
    for received in smtp_server.messages:
        by_reader[received.rcpt_tos[0]].append(str(parse(received.data)["Message-ID"]))
    # nobody lost
    assert set(by_reader) == set(addresses)
    # a reader got it twice only if it was in flight at a kill or its outcome was in the
    # group not yet committed (plus what finished while that group was being written),
    # and always with the same Message-ID
    copies = Counter({a: len(ids) for a, ids in by_reader.items()})
    extra = sum(n - 1 for n in copies.values())
    per_kill = CONCURRENCY + 2 * COMMIT_ROWS
    assert extra <= per_kill * (len(kills) - 1), copies.most_common(5)
    for ids in by_reader.values():
        assert len(set(ids)) == 1

    with Store.open(settings.database_url) as store, store.read() as session:
        rows = session.exec(select(Delivery, Subscriber).join(Subscriber)).all()
        issue = session.get(Issue, ISSUE)
    assert issue is not None and issue.status == "sent"
    assert {d.status for d, _ in rows} == {"sent"}
    assert {s.email: d.message_id for d, s in rows} == {a: ids[0] for a, ids in by_reader.items()}
    # a reader sent twice has the extra try counted
    for d, s in rows:
        assert d.attempts >= copies[s.email]
    # the resumed run said what it did with the messages in flight
    if extra:
        assert "in flight when the last run stopped" in err


def test_a_second_send_of_the_same_issue_waits_its_turn(
    project: Path, smtp_environ: dict[str, str], smtp_server: RecordingSMTPServer
) -> None:
    settings = load_settings(config=project / "slice.toml", environ=smtp_environ)
    with Store.open(settings.database_url) as store:
        write_issue(settings, store, papers=1)
        add_readers(store, 300)
    smtp_server.delay = 0.05  # about 5 s in all: the second send starts well before the end
    first = start_send(project, smtp_environ)
    try:
        kill_when_started = time.monotonic() + 30
        while not smtp_server.messages and time.monotonic() < kill_when_started:
            time.sleep(0.01)
        second = start_send(project, smtp_environ)
        _out, err = second.communicate(timeout=30)
        assert second.returncode == 1
        assert err.startswith(
            f"Error: another `slice send {ISSUE}` is running (process {first.pid})"
        )
    finally:
        first.kill()
        first.wait()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_cleanly_and_the_next_run_finishes(
    project: Path, smtp_environ: dict[str, str], smtp_server: RecordingSMTPServer, stop: int
) -> None:
    settings = load_settings(config=project / "slice.toml", environ=smtp_environ)
    with Store.open(settings.database_url) as store:
        write_issue(settings, store, papers=1)
        addresses = add_readers(store, 200)
    # slow enough that the send is still going when the signal lands, even on a busy machine
    # (200 x 0.1 s over the connections: several seconds of margin after the 20th message)
    smtp_server.delay = 0.1
    proc = start_send(project, smtp_environ)
    deadline = time.monotonic() + 30
    while len(smtp_server.messages) < 20 and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(stop)
    _out, err = proc.communicate(timeout=30)
    smtp_server.delay = 0.0
    assert proc.returncode == 130, err
    assert "Interrupted: " in err and f"Run `slice send {ISSUE}` again to continue." in err
    assert "Traceback" not in err
    with Store.open(settings.database_url) as store, store.read() as session:
        states = Counter(d.status for d in session.exec(select(Delivery)).all())
    # rows waiting for a connection went back to pending; only those on the wire stay 'sending'
    assert states["sending"] <= CONCURRENCY
    assert states["sent"] >= 20 and states["sent"] + states["sending"] + states["pending"] == 200

    final = start_send(project, smtp_environ)
    _out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    assert {m.rcpt_tos[0] for m in smtp_server.messages} == set(addresses)
