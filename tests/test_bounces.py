"""`slice bounces import`: DSNs, ARF complaints and emailed unsubscribes from mbox, maildir, .eml.

A report changes a reader only with signed evidence: the bounce (VERP) token in
the address it was sent back to, an unsubscribe token, or the Message-ID of a
message the list sent to the address it names. Forged reports change nothing.
"""

from __future__ import annotations

import mailbox
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlmodel import select
from typer.testing import Result

from newsletter.core.errors import BounceFileError
from newsletter.core.models import InboundMessage, Subscriber
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.readers.bounces import import_bounces
from tests.conftest import TEST_SECRET
from tests.inbound_support import REPORTS, fill, nested_bomb, report_files, sent_issue
from tests.send_support import add_readers

Sent = dict[str, tuple[int, str]]


@pytest.fixture
def readers(store: Store) -> list[str]:
    addresses = add_readers(store, 8)
    with store.write() as session:
        gone = session.exec(select(Subscriber).where(Subscriber.email == addresses[7])).one()
        gone.status = "unsubscribed"
    return addresses


@pytest.fixture
def sent(store: Store, readers: list[str]) -> Sent:
    return sent_issue(store, "2025-W24", readers)


def statuses(store: Store) -> dict[str, str]:
    with store.read() as session:
        return {s.email: s.status for s in session.exec(select(Subscriber)).all()}


EXPECTED_SUMMARY = (
    "Read 11 messages: 2 bounced, 2 complaints, 1 unsubscribed, 0 already suppressed, "
    "1 soft bounce (counted), 4 ignored (no valid token), 1 automatic reply, "
    "0 not bounce reports, 0 unreadable."
)


def check_outcome(store: Store, addresses: list[str]) -> None:
    after = statuses(store)
    assert after[addresses[1]] == "bounced"  # Postfix DSN sent back to its VERP address
    assert after[addresses[3]] == "bounced"  # qmail's format, tied by the quoted Message-ID
    assert after[addresses[2]] == "confirmed"  # "delayed" is a soft bounce: counted
    assert after[addresses[4]] == "unsubscribed"  # mailto: unsubscribe with its token
    assert after[addresses[5]] == "complained"  # ARF quoting a Message-ID we sent to it
    assert after[addresses[6]] == "complained"  # ARF with the address hidden: by token
    # named by a complaint without token, a forged DSN and an unsigned unsubscribe request
    assert after[addresses[0]] == "confirmed"


def test_folder_of_eml_files(store: Store, readers: list[str], sent: Sent, tmp_path: Path) -> None:
    report_files(tmp_path / "reports", store, readers, sent)
    report = import_bounces(store, tmp_path / "reports", secret_key=TEST_SECRET)
    check_outcome(store, readers)
    assert sorted(report.bounced) == [readers[1], readers[3]]
    assert sorted(report.complained) == [readers[5], readers[6]]
    assert report.unsubscribed == [readers[4]]
    assert report.soft == 1 and report.auto_replies == 1
    ignored = "\n".join(report.ignored)
    assert "arf-by-address.eml: a complaint naming reader000000@example.com without" in ignored
    assert "forged-dsn.eml: a bounce naming reader000000@example.com" in ignored
    assert "1 token(s) with a bad signature" in ignored
    assert "unknown-bounce.eml: a bounce naming stranger@example.net" in ignored
    assert "unsubscribe-no-token.eml: an unsubscribe request from someone@example.net" in ignored
    assert report.lines()[-1] == EXPECTED_SUMMARY
    with store.read() as session:
        sub = session.exec(select(Subscriber).where(Subscriber.email == readers[1])).one()
        logged = session.exec(select(InboundMessage)).all()
    assert sub.status_reason == "bounce report"
    assert len(logged) == 11 and {m.source for m in logged} == {"file"}
    assert sorted(m.outcome for m in logged).count("unattributed") == 3

    # importing the same reports again changes nothing
    again = import_bounces(store, tmp_path / "reports", secret_key=TEST_SECRET)
    assert again.bounced == [] and again.complained == [] and again.unsubscribed == []
    assert again.already == 5
    check_outcome(store, readers)


def test_mbox(store: Store, readers: list[str], sent: Sent, tmp_path: Path) -> None:
    box = mailbox.mbox(tmp_path / "bounces.mbox")
    for path in report_files(tmp_path / "src", store, readers, sent):
        box.add(path.read_bytes())
    box.close()
    report = import_bounces(store, tmp_path / "bounces.mbox", secret_key=TEST_SECRET)
    check_outcome(store, readers)
    assert report.lines()[-1] == EXPECTED_SUMMARY


def test_maildir(store: Store, readers: list[str], sent: Sent, tmp_path: Path) -> None:
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    for path in report_files(tmp_path / "src", store, readers, sent):
        box.add(path.read_bytes())
    report = import_bounces(store, tmp_path / "Maildir", secret_key=TEST_SECRET)
    check_outcome(store, readers)
    assert report.lines()[-1] == EXPECTED_SUMMARY


def test_maildir_with_cur_but_no_new(
    store: Store, readers: list[str], sent: Sent, tmp_path: Path
) -> None:
    """A maildir a mail client has read: every message in cur/, no new/ folder at all."""
    (tmp_path / "Maildir" / "cur").mkdir(parents=True)
    for i, path in enumerate(report_files(tmp_path / "src", store, readers, sent)):
        (tmp_path / "Maildir" / "cur" / f"17500{i:02d}.M1P1.host:2,S").write_bytes(
            path.read_bytes()
        )
    report = import_bounces(store, tmp_path / "Maildir", secret_key=TEST_SECRET)
    check_outcome(store, readers)
    assert report.lines()[-1] == EXPECTED_SUMMARY


def test_one_eml_file(store: Store, readers: list[str], sent: Sent, tmp_path: Path) -> None:
    (path,) = [
        p
        for p in report_files(tmp_path / "src", store, readers, sent)
        if p.name == "dsn-permanent.eml"
    ]
    report = import_bounces(store, path, secret_key=TEST_SECRET)
    assert report.bounced == [readers[1]]
    assert statuses(store)[readers[1]] == "bounced"
    assert report.lines()[-1].startswith("Read 1 message: 1 bounced, 0 complaints, ")


def test_unsubscribed_reader_who_bounces_stays_unsubscribed(
    store: Store, readers: list[str], sent: Sent, tmp_path: Path
) -> None:
    path = tmp_path / "b.eml"
    data = (REPORTS / "dsn-permanent.eml").read_bytes().replace(b"VERP1", b"VERP7")
    path.write_bytes(fill(data.replace(b"reader000001", b"reader000007"), store, readers, sent))
    report = import_bounces(store, path, secret_key=TEST_SECRET)
    assert report.already == 1 and statuses(store)[readers[7]] == "unsubscribed"


def test_a_mime_bomb_is_one_unreadable_line_and_the_rest_go_on(
    store: Store, readers: list[str], sent: Sent, tmp_path: Path
) -> None:
    """Parts nested thousands deep: that message is reported unreadable; the others are read."""
    folder = tmp_path / "reports"
    report_files(folder, store, readers, sent)
    (folder / "0-bomb.eml").write_bytes(nested_bomb())
    report = import_bounces(store, folder, secret_key=TEST_SECRET)
    assert len(report.unreadable) == 1 and report.unreadable[0].startswith("0-bomb.eml: ")
    assert "nested" in report.unreadable[0]
    check_outcome(store, readers)


def test_cli_prints_a_line_per_change_and_a_summary(
    run_cli: Callable[..., Result],
    settings: Settings,
    store: Store,
    readers: list[str],
    sent: Sent,
    tmp_path: Path,
) -> None:
    report_files(tmp_path / "reports", store, readers, sent)
    result = run_cli("bounces", "import", str(tmp_path / "reports"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert f"bounced {readers[1]}" in lines and f"complained {readers[6]}" in lines
    assert f"unsubscribed {readers[4]}" in lines
    assert any(
        line.startswith("ignored unknown-bounce.eml: a bounce naming stranger@") for line in lines
    )
    assert lines[-1] == EXPECTED_SUMMARY


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing.mbox", None, "does not exist; give an mbox file, a maildir or a .eml file"),
        ("empty-folder", "", "holds no .eml files and is not a maildir"),
        ("photo.eml", b"\x89PNG\r\n\x1a\n\x00\x00binary", "is not an email message or mbox file"),
    ],
)
def test_bad_paths_are_one_line(
    run_cli: Callable[..., Result],
    store: Store,
    tmp_path: Path,
    name: str,
    content: object,
    expected: str,
) -> None:
    path = tmp_path / name
    if content == "":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(BounceFileError, match=expected):
        import_bounces(store, path, secret_key=TEST_SECRET)
    result = run_cli("bounces", "import", str(path))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and expected in result.stderr
    assert result.stderr.count("\n") == 1


def test_bounce_tokens_are_short_signed_and_survive_lower_casing() -> None:
    from newsletter.core.errors import TokenError
    from newsletter.readers.tokens import Tokens

    tokens = Tokens(TEST_SECRET)
    token = tokens.bounce_token(123456789)
    assert len(f"bounces+{token}") <= 64  # fits an address's local part
    assert tokens.read_bounce(token.upper()) == 123456789  # an MTA may change its case
    for bad in (token[:-1] + ("a" if token[-1] != "a" else "b"), "123456780" + token[9:], "12-x"):
        with pytest.raises(TokenError):
            tokens.read_bounce(bad)
    with pytest.raises(TokenError):  # another list's key
        Tokens("another-secret-key-0123456789").read_bounce(token)


def test_every_kind_acts_the_same_on_both_backends(any_store: Store, tmp_path: Path) -> None:
    """The reports against SQLite and PostgreSQL: the same outcomes, the same readers changed."""
    addresses = add_readers(any_store, 8)
    sent = sent_issue(any_store, "2025-W24", addresses)
    report_files(tmp_path / "reports", any_store, addresses, sent)
    report = import_bounces(any_store, tmp_path / "reports", secret_key=TEST_SECRET)
    assert report.lines()[-1] == EXPECTED_SUMMARY
    check_outcome(any_store, addresses)
