"""`slice bounces import`: DSNs and ARF complaints from mbox, maildir and .eml files."""

from __future__ import annotations

import mailbox
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlmodel import select
from typer.testing import Result

from newsletter.core.errors import BounceFileError
from newsletter.core.models import Subscriber
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.readers.bounces import import_bounces
from newsletter.readers.tokens import Tokens
from tests.conftest import FIXTURES, TEST_SECRET
from tests.send_support import add_readers

REPORTS = FIXTURES / "send"
COMPLAINER_UID = "complainer-uid-0001"


@pytest.fixture
def readers(store: Store) -> list[str]:
    addresses = add_readers(store, 8)
    with store.write() as session:
        sub = session.exec(select(Subscriber).where(Subscriber.email == addresses[6])).one()
        sub.uid = COMPLAINER_UID
        gone = session.exec(select(Subscriber).where(Subscriber.email == addresses[7])).one()
        gone.status = "unsubscribed"
    return addresses


def report_files(folder: Path) -> list[Path]:
    """The fixture reports, with the complaint's token made for the test key."""
    token = Tokens(TEST_SECRET).unsubscribe_token(COMPLAINER_UID)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for src in sorted(REPORTS.glob("*.eml")):
        dest = folder / src.name
        dest.write_bytes(src.read_bytes().replace(b"{TOKEN}", token.encode()))
        out.append(dest)
    return out


def statuses(store: Store) -> dict[str, str]:
    with store.read() as session:
        return {s.email: s.status for s in session.exec(select(Subscriber)).all()}


EXPECTED_SUMMARY = (
    "Read 7 messages: 2 bounced, 2 complaints, 0 already suppressed, 1 unknown addresses, "
    "1 temporary failures (left alone), 1 not bounce reports."
)


def check_outcome(store: Store, addresses: list[str]) -> None:
    after = statuses(store)
    assert after[addresses[1]] == "bounced"  # Postfix DSN, 550 5.1.1
    assert after[addresses[3]] == "bounced"  # qmail's own format, mixed-case address
    assert after[addresses[2]] == "confirmed"  # "delayed" is temporary
    assert after[addresses[4]] == "confirmed"  # an out-of-office reply is no bounce
    assert after[addresses[5]] == "complained"  # ARF naming the address
    assert after[addresses[6]] == "complained"  # ARF with the address hidden: found by token
    assert after[addresses[0]] == "confirmed"


def test_folder_of_eml_files(store: Store, readers: list[str], tmp_path: Path) -> None:
    report_files(tmp_path / "reports")
    report = import_bounces(store, tmp_path / "reports", secret_key=TEST_SECRET)
    check_outcome(store, readers)
    assert sorted(report.bounced) == [readers[1], readers[3]]
    assert sorted(report.complained) == [readers[5], readers[6]]
    assert report.unknown == ["stranger@example.net"]
    assert report.lines()[-1] == EXPECTED_SUMMARY
    with store.read() as session:
        sub = session.exec(select(Subscriber).where(Subscriber.email == readers[1])).one()
    assert sub.status_reason == "bounce report dsn-permanent.eml"

    # importing the same reports again changes nothing
    again = import_bounces(store, tmp_path / "reports", secret_key=TEST_SECRET)
    assert again.bounced == [] and again.complained == [] and again.already == 4


def test_mbox(store: Store, readers: list[str], tmp_path: Path) -> None:
    box = mailbox.mbox(tmp_path / "bounces.mbox")
    for path in report_files(tmp_path / "src"):
        box.add(path.read_bytes())
    box.close()
    report = import_bounces(store, tmp_path / "bounces.mbox", secret_key=TEST_SECRET)
    check_outcome(store, readers)
    assert report.lines()[-1] == EXPECTED_SUMMARY


def test_maildir(store: Store, readers: list[str], tmp_path: Path) -> None:
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    for path in report_files(tmp_path / "src"):
        box.add(path.read_bytes())
    report = import_bounces(store, tmp_path / "Maildir", secret_key=TEST_SECRET)
    check_outcome(store, readers)
    assert report.lines()[-1] == EXPECTED_SUMMARY


def test_one_eml_file(store: Store, readers: list[str], tmp_path: Path) -> None:
    (path,) = [p for p in report_files(tmp_path / "src") if p.name == "dsn-permanent.eml"]
    report = import_bounces(store, path)
    assert report.bounced == [readers[1]]
    assert statuses(store)[readers[1]] == "bounced"


def test_unsubscribed_reader_who_bounces_stays_unsubscribed(
    store: Store, readers: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "b.eml"
    path.write_bytes(
        (REPORTS / "dsn-permanent.eml").read_bytes().replace(b"reader000001", b"reader000007")
    )
    report = import_bounces(store, path)
    assert report.already == 1 and statuses(store)[readers[7]] == "unsubscribed"


def test_cli_prints_a_line_per_change_and_a_summary(
    run_cli: Callable[..., Result], settings: Settings, readers: list[str], tmp_path: Path
) -> None:
    report_files(tmp_path / "reports")
    result = run_cli("bounces", "import", str(tmp_path / "reports"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert f"bounced {readers[1]}" in lines and f"complained {readers[6]}" in lines
    assert "unknown stranger@example.net (not a subscriber)" in lines
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
        import_bounces(store, path)
    result = run_cli("bounces", "import", str(path))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and expected in result.stderr
    assert result.stderr.count("\n") == 1
