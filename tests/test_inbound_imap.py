"""`slice inbound --imap`: drain a hosted bounce mailbox, against a real dovecot on 127.0.0.1.

Each message is deleted from the mailbox only after its outcome is committed; a
drain that cannot write the database leaves the mailbox as it was.
"""

from __future__ import annotations

import imaplib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import select
from typer.testing import Result

from newsletter.core.errors import ConfigError, StoreBusyError
from newsletter.core.models import Subscriber
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.readers.bounces import Result as Outcome
from newsletter.send.imapdrain import drain
from tests.inbound_support import REPORTS, fill, nested_bomb, outcomes, sent_issue
from tests.send_support import add_readers
from tests.support.dovecot import Dovecot, available

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))

Sent = dict[str, tuple[int, str]]
NAMES = ["dsn-permanent.eml", "arf-complaint.eml", "out-of-office.eml", "forged-dsn.eml"]


@pytest.fixture
def dovecot(tmp_path: Path) -> Iterator[Dovecot]:
    with Dovecot(tmp_path / "dovecot") as server:
        yield server


@pytest.fixture
def imap_env(environ: dict[str, str], dovecot: Dovecot) -> dict[str, str]:
    return {
        **environ,
        "SLICE_IMAP_HOST": "127.0.0.1",
        "SLICE_IMAP_USER": dovecot.user,
        "SLICE_IMAP_PASSWORD": dovecot.password,
    }


@pytest.fixture
def imap_settings(settings: Settings, dovecot: Dovecot) -> Settings:
    settings.inbound.imap_host = "127.0.0.1"
    settings.inbound.imap_port = dovecot.port
    settings.inbound.imap_user = dovecot.user
    settings.inbound.imap_tls = "none"
    settings.secrets = settings.secrets.model_copy(update={"imap_password": dovecot.password})
    return settings


@pytest.fixture
def readers(store: Store) -> list[str]:
    return add_readers(store, 8)


@pytest.fixture
def sent(store: Store, readers: list[str]) -> Sent:
    return sent_issue(store, "2025-W24", readers)


def deliver(server: Dovecot, messages: list[bytes]) -> None:
    """Put messages in the mailbox as the mail host would (IMAP APPEND)."""
    client = imaplib.IMAP4("127.0.0.1", server.port)
    client.login(server.user, server.password)
    for data in messages:
        crlf = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        assert client.append("INBOX", None, None, crlf)[0] == "OK"
    client.logout()


def left_in_mailbox(server: Dovecot) -> int:
    client = imaplib.IMAP4("127.0.0.1", server.port)
    client.login(server.user, server.password)
    count = int(client.select("INBOX")[1][0] or 0)
    client.logout()
    return count


def status(store: Store, address: str) -> str:
    with store.read() as session:
        return session.exec(select(Subscriber.status).where(Subscriber.email == address)).one()


def reports(store: Store, readers: list[str], sent: Sent) -> list[bytes]:
    return [fill((REPORTS / n).read_bytes(), store, readers, sent) for n in NAMES]


def test_drain_processes_each_message_and_empties_the_mailbox(
    imap_settings: Settings, dovecot: Dovecot, store: Store, readers: list[str], sent: Sent
) -> None:
    deliver(dovecot, [*reports(store, readers, sent), nested_bomb()])
    report = drain(imap_settings, store)
    assert [r.outcome.value for r in report.results] == [
        "bounced",
        "complained",
        "auto_reply",
        "unattributed",
        "unreadable",
    ]
    assert status(store, readers[1]) == "bounced"
    assert status(store, readers[6]) == "complained"
    assert status(store, readers[0]) == "confirmed"  # the forged report changed nothing
    assert left_in_mailbox(dovecot) == 0
    assert drain(imap_settings, store).results == []  # nothing left to do


def test_a_database_that_cannot_be_written_leaves_the_mailbox_as_it_was(
    imap_settings: Settings, dovecot: Dovecot, store: Store, readers: list[str], sent: Sent
) -> None:
    deliver(dovecot, reports(store, readers, sent))
    with store.write() as session:
        session.connection().execute(text("DROP TABLE inbound_messages"))
    with pytest.raises(Exception, match="inbound_messages"):
        drain(imap_settings, store)
    assert left_in_mailbox(dovecot) == len(NAMES)
    assert status(store, readers[1]) == "confirmed"


def test_the_command_drains_with_the_password_from_the_environment(
    run_cli: Callable[..., Result],
    project: Path,
    imap_env: dict[str, str],
    dovecot: Dovecot,
    store: Store,
    readers: list[str],
    sent: Sent,
) -> None:
    config = project / "slice.toml"
    extra = f'[inbound]\nimap_port = {dovecot.port}\nimap_tls = "none"\n'
    config.write_text(config.read_text().replace("[inbound]\n", extra, 1))
    deliver(dovecot, reports(store, readers, sent)[:2])
    result = run_cli("inbound", "--imap", env=imap_env)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"bounced {readers[1]}: bounce report"
    assert lines[-1] == "Drained 2 messages from INBOX at 127.0.0.1: 1 bounced, 1 complained."

    wrong = run_cli("inbound", "--imap", env={**imap_env, "SLICE_IMAP_PASSWORD": "wrong"})
    assert wrong.exit_code == 1
    assert (
        wrong.stderr.startswith("Error: the IMAP server at 127.0.0.1:")
        and "refused the login" in wrong.stderr
    )


def test_a_password_in_clear_to_another_machine_is_refused(
    imap_settings: Settings, store: Store
) -> None:
    imap_settings.inbound.imap_host = "imap.example.net"
    with pytest.raises(ConfigError, match="password would cross the network in clear"):
        drain(imap_settings, store)


def test_a_drain_stopped_by_a_busy_database_keeps_only_what_it_did_not_record(
    imap_settings: Settings, dovecot: Dovecot, store: Store, readers: list[str], sent: Sent
) -> None:
    """The first report is committed, then another program locks the database: the first
    leaves the mailbox, the rest stay, and the next drain records each of them once."""
    deliver(dovecot, reports(store, readers, sent))
    other = sqlite3.connect(store.engine.url.database or "", isolation_level=None)

    def lock_after_the_first(result: Outcome) -> None:
        other.execute("BEGIN IMMEDIATE")

    with Store.open(imap_settings.database_url, busy_timeout_ms=50, busy_seconds=0.3) as quick:
        with pytest.raises(StoreBusyError):
            drain(imap_settings, quick, on_result=lock_after_the_first)
        other.execute("COMMIT")
        other.close()
        assert left_in_mailbox(dovecot) == len(NAMES) - 1
        again = drain(imap_settings, quick)
    assert [r.outcome.value for r in again.results] == ["complained", "auto_reply", "unattributed"]
    assert outcomes(store) == ["bounced", "complained", "auto_reply", "unattributed"]
    assert left_in_mailbox(dovecot) == 0
