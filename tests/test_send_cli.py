"""`slice send`, `slice send --dry-run / --to / --status` and `slice dev-smtp`, as a person runs them."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiosmtplib
import pytest
from sqlmodel import select
from typer.testing import Result

from newsletter.core.config import load_settings
from newsletter.core.models import Delivery, Issue
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from tests.send_support import (
    ISSUE,
    add_reader,
    add_readers,
    dkim_verify,
    make_dkim_key,
    parse,
    write_issue,
)
from tests.support.smtpd import RecordingSMTPServer

Run = Callable[..., Result]


@pytest.fixture
def smtp_settings(project: Path, smtp_environ: dict[str, str]) -> Settings:
    return load_settings(config=project / "slice.toml", environ=smtp_environ)


@pytest.fixture
def db(smtp_settings: Settings) -> Iterator[Store]:
    with Store.open(smtp_settings.database_url) as store:
        yield store


def test_send_prints_a_summary_and_a_line_per_failure(
    run_cli: Run,
    smtp_environ: dict[str, str],
    smtp_settings: Settings,
    db: Store,
    smtp_server: RecordingSMTPServer,
) -> None:
    write_issue(smtp_settings, db)
    addresses = add_readers(db, 5)
    smtp_server.rcpt_replies[addresses[2]] = "550 5.1.1 <reader000002@example.com>: no such user"
    result = run_cli("send", ISSUE, "--rate", "0", "--concurrency", "2", env=smtp_environ)
    assert result.exit_code == 0, result.output
    assert (
        "failed reader000002@example.com: 550 5.1.1 <reader000002@example.com>: no such user "
        "(address suppressed as bounced)"
    ) in result.stderr
    assert (
        "Issue 2025-W24: sent 4, deferred 0, failed 1 (1 suppressed), skipped 0 in" in result.stdout
    )
    assert (
        "Ledger: 4 sent, 1 failed, 0 skipped, 0 deferred, 0 waiting of 5. Issue finished."
        in result.stdout
    )

    again = run_cli("send", ISSUE, env=smtp_environ)
    assert again.exit_code == 0
    assert again.stdout.startswith("Issue 2025-W24 was already sent on ")
    assert (
        "(sent 4, failed 1, skipped 0); nothing to do; `--retry-failed` tries the 1 failed again."
        in again.stdout
    )
    assert len(smtp_server.messages) == 4

    status = run_cli("send", ISSUE, "--status", env=smtp_environ)
    assert status.exit_code == 0
    assert "Issue 2025-W24: sent" in status.stdout
    assert "failed reader000002@example.com: 550 5.1.1" in status.stdout
    assert re.search(r"│ sent +│ +4 │", status.stdout)
    assert re.search(r"│ failed +│ +1 │", status.stdout)
    assert re.search(r"│ total +│ +5 │", status.stdout)
    # with no issue named, --status shows the last one sent: the same page
    assert run_cli("send", "--status", env=smtp_environ).stdout == status.stdout


def test_relay_refusing_everything_is_one_error_line_and_exit_1(
    run_cli: Run,
    smtp_environ: dict[str, str],
    smtp_settings: Settings,
    db: Store,
    smtp_server: RecordingSMTPServer,
) -> None:
    write_issue(smtp_settings, db)
    add_readers(db, 40)
    smtp_server.refuse_all = "421 4.7.0 Try again later"
    result = run_cli("send", ISSUE, "--rate", "0", "--concurrency", "1", env=smtp_environ)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1
    assert "refuses every message (421 4.7.0 Try again later, 5 times in a row)" in errors[0]
    assert "nothing was lost" in errors[0]
    assert "Traceback" not in result.output


def test_login_refused_stops_at_once(
    run_cli: Run,
    project: Path,
    environ: dict[str, str],
) -> None:
    from aiosmtpd.smtp import AuthResult

    def refuse(*_args: object) -> AuthResult:
        return AuthResult(success=False, handled=False)

    server = RecordingSMTPServer(
        smtp_kwargs={"authenticator": refuse, "auth_require_tls": False}
    ).start()
    try:
        env = {
            **environ,
            "SLICE_SMTP_HOST": "127.0.0.1",
            "SLICE_SMTP_PORT": str(server.port),
            "SLICE_SMTP_USERNAME": "editor",
            "SLICE_SMTP_PASSWORD": "wrong",
        }
        settings = load_settings(config=project / "slice.toml", environ=env)
        with Store.open(settings.database_url) as store:
            write_issue(settings, store)
            add_readers(store, 10)
        result = run_cli("send", ISSUE, "--rate", "0", env=env)
        assert result.exit_code == 1
        assert "refused the login: 535" in result.stderr
        assert "check SLICE_SMTP_USERNAME and SLICE_SMTP_PASSWORD" in result.stderr
        assert server.messages == []
        with Store.open(settings.database_url) as store, store.read() as session:
            assert {d.status for d in session.exec(select(Delivery)).all()} == {"pending"}
    finally:
        server.stop()


def test_dry_run_writes_the_wire_bytes_and_touches_no_ledger(
    run_cli: Run,
    project: Path,
    smtp_environ: dict[str, str],
    tmp_path: Path,
    smtp_server: RecordingSMTPServer,
) -> None:
    key, record = make_dkim_key(tmp_path)
    env = {
        **smtp_environ,
        "SLICE_DKIM_KEY": str(key),
        "SLICE_DKIM_SELECTOR": "s1",
        "SLICE_DKIM_DOMAIN": "example.org",
    }
    settings = load_settings(config=project / "slice.toml", environ=env)
    with Store.open(settings.database_url) as store:
        folder = write_issue(settings, store)
        add_reader(store, "ada@example.com", "Ada Lovelace")
        add_reader(store, "bob@example.com", "Bob")
        add_reader(store, "pat@example.com", "Pat", status="pending")
    (folder.dry_run).mkdir()
    (folder.dry_run / "000009-stale@example.com.eml").write_text("old")

    result = run_cli("send", ISSUE, "--dry-run", env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"Wrote 2 messages to {folder.dry_run} (DKIM-signed)."
    files = sorted(folder.dry_run.glob("*.eml"))
    assert [f.name for f in files] == ["000001-ada@example.com.eml", "000002-bob@example.com.eml"]
    with Store.open(settings.database_url) as store, store.read() as session:
        assert session.exec(select(Delivery)).all() == []
        assert session.get(Issue, ISSUE).status == "draft"  # type: ignore[union-attr]
    assert smtp_server.messages == []
    dry = files[0].read_bytes()
    assert dkim_verify(dry, record)

    # the same reader's real message differs only in Date, DKIM t=/b= (time-dependent)
    sent = run_cli("send", ISSUE, "--rate", "0", env=env)
    assert sent.exit_code == 0, sent.output
    wire = next(m.data for m in smtp_server.messages if m.rcpt_tos == ["ada@example.com"])

    def stable(data: bytes) -> bytes:
        _head, body = data.split(b"\r\n\r\n", 1)
        keep = [h for h in parse(data) if h not in ("Date", "DKIM-Signature")]
        msg = parse(data)
        return b"".join(f"{k}: {msg[k]}".encode() for k in keep) + body

    assert stable(dry) == stable(wire)
    assert dry.split(b"\r\n\r\n", 1)[1] == wire.split(b"\r\n\r\n", 1)[1]


def test_proof_goes_to_one_address_and_touches_no_ledger(
    run_cli: Run,
    smtp_environ: dict[str, str],
    smtp_settings: Settings,
    db: Store,
    smtp_server: RecordingSMTPServer,
) -> None:
    write_issue(smtp_settings, db)
    add_readers(db, 3)
    result = run_cli("send", ISSUE, "--to", "Editor <editor@example.org>", env=smtp_environ)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Sent a proof of {ISSUE} to Editor <editor@example.org>")
    (received,) = smtp_server.messages
    assert received.rcpt_tos == ["editor@example.org"]
    msg = parse(received.data)
    assert msg.get_body(("plain",)).get_content().startswith("Hi Editor,")  # type: ignore[union-attr]
    with db.read() as session:
        assert session.exec(select(Delivery)).all() == []
        assert session.get(Issue, ISSUE).status == "draft"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["send", "2025-W99"], "issue 2025-W99 is not composed"),
        (["send", "2025-W99", "--status"], "issue 2025-W99 is not composed"),
        (["send", "../etc"], "is not an issue id"),
        (
            ["send", "--status"],
            "No issue has been sent yet: `slice issues` lists the composed ones.",
        ),
        (["send"], "name the issue to send, e.g. `slice send 2025-W24`."),
        (["send", ISSUE, "--to", "not an address"], "is not one address"),
        (
            ["send", ISSUE, "--status"],
            "issue 2025-W24 has not been sent yet (0 confirmed subscribers",
        ),
    ],
)
def test_bad_input_gets_one_line(
    run_cli: Run,
    smtp_environ: dict[str, str],
    smtp_settings: Settings,
    db: Store,
    args: list[str],
    expected: str,
) -> None:
    write_issue(smtp_settings, None)
    result = run_cli(*args, env=smtp_environ)
    assert result.exit_code == 1, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ")
    assert expected in result.stderr


def test_conflicting_flags_are_one_line(run_cli: Run) -> None:
    for flags in (["--dry-run", "--to", "a@example.org"], ["--dry-run", "--status"]):
        result = run_cli("send", ISSUE, *flags)
        assert result.exit_code == 1
        assert result.stderr == "Error: use only one of --dry-run, --to/--proof and --status.\n"


def test_dkim_key_problems_are_one_line(
    run_cli: Run,
    project: Path,
    smtp_environ: dict[str, str],
    tmp_path: Path,
    db: Store,
    smtp_settings: Settings,
) -> None:
    write_issue(smtp_settings, db)
    add_readers(db, 1)
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    cases = [
        (
            {
                "SLICE_DKIM_KEY": str(tmp_path / "missing.pem"),
                "SLICE_DKIM_SELECTOR": "s",
                "SLICE_DKIM_DOMAIN": "example.org",
            },
            "does not exist",
        ),
        (
            {
                "SLICE_DKIM_KEY": str(bad),
                "SLICE_DKIM_SELECTOR": "s",
                "SLICE_DKIM_DOMAIN": "example.org",
            },
            "is not a PEM private key",
        ),
        ({"SLICE_DKIM_KEY": str(bad)}, "SLICE_DKIM_SELECTOR and SLICE_DKIM_DOMAIN"),
    ]
    for extra, expected in cases:
        result = run_cli("send", ISSUE, env={**smtp_environ, **extra})
        assert result.exit_code == 1
        assert expected in result.stderr and result.stderr.startswith("Error: ")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_dev_smtp_keeps_messages_as_eml_and_prints_a_line_each(project: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLICE_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from newsletter.cli import app; app()",
            "--config",
            str(project / "slice.toml"),
            "dev-smtp",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith(
            f"Listening on 127.0.0.1:{port}; messages go to {project / 'outbox' / 'mailbox'}"
        )
        message = (
            b"From: a@example.org\r\nTo: b@example.com\r\nSubject: Hello there\r\n\r\nBody\r\n"
        )
        import asyncio

        asyncio.run(
            aiosmtplib.send(
                message,
                sender="a@example.org",
                recipients=["b@example.com"],
                hostname="127.0.0.1",
                port=port,
            )
        )
        line = proc.stdout.readline()
        assert "a@example.org → b@example.com 'Hello there'" in line
        assert "outbox/mailbox/" in line
        files = list((project / "outbox" / "mailbox").glob("*.eml"))
        assert len(files) == 1 and files[0].read_bytes().endswith(b"Body\r\n")
        proc.send_signal(signal.SIGTERM)  # as `kill` or `systemctl stop` would; Ctrl-C the same
        assert proc.wait(30) == 0  # ~1 s normally; the margin is for a loaded CI machine
        assert "Stopped." in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_dev_smtp_on_a_busy_port_is_one_line(run_cli: Run) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = run_cli("dev-smtp", "--port", str(port))
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "--port" in result.stderr
    time.sleep(0)


@pytest.mark.parametrize(
    ("base_url", "relay", "refused"),
    [
        ("http://127.0.0.1:8000", "smtp.example.org", True),  # real relay, links to localhost
        ("http://localhost:8000", "smtp.example.org", True),
        ("https://weekly.example.org", "smtp.example.org", False),
        ("http://127.0.0.1:8000", "127.0.0.1", False),  # dev-smtp or the demo: fine
    ],
)
def test_real_relay_with_local_links_is_refused_before_anything_happens(
    run_cli: Run,
    smtp_environ: dict[str, str],
    smtp_settings: Settings,
    db: Store,
    base_url: str,
    relay: str,
    refused: bool,
) -> None:
    from newsletter.send.preflight import check_public_links

    write_issue(smtp_settings, db)
    add_readers(db, 2)
    env = {**smtp_environ, "SLICE_BASE_URL": base_url, "SLICE_SMTP_HOST": relay}
    settings = load_settings(config=smtp_settings.config_file, environ=env)
    if not refused:
        check_public_links(settings)
        return
    result = run_cli("send", ISSUE, env=env)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: web.base_url is ")
    assert "set SLICE_BASE_URL" in result.stderr and result.stderr.count("\n") == 1
    with db.read() as session:
        assert session.exec(select(Delivery)).all() == []  # no ledger, no connection tried
        assert session.get(Issue, ISSUE).status == "draft"  # type: ignore[union-attr]


def test_status_of_a_composed_issue_not_yet_sent_says_who_would_get_it(
    run_cli: Run, smtp_environ: dict[str, str], smtp_settings: Settings, db: Store
) -> None:
    write_issue(smtp_settings, db)
    add_readers(db, 3)
    result = run_cli("send", ISSUE, "--status", env=smtp_environ)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"Issue {ISSUE}: draft, not sent yet; 3 confirmed subscribers would get it: "
        f"run `slice send {ISSUE}` to send it.\n"
    )
