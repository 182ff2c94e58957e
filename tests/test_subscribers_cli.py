"""`slice subscribers ...`: what an editor types and sees, with the recording SMTP server as the relay."""

from __future__ import annotations

import csv
import io
import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

from newsletter.core.config import load_settings
from newsletter.core.store import Store
from tests.conftest import FIXTURES
from tests.signup_support import links, rows
from tests.support.smtpd import RecordingSMTPServer

MIXED = FIXTURES / "subscribers" / "mixed.csv"
Run = Callable[..., Result]


@pytest.fixture
def cli(run_cli: Run, smtp_environ: dict[str, str]) -> Run:
    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        return run_cli("subscribers", *args, env=env or smtp_environ)

    return run


@pytest.fixture
def store(project: Path, smtp_environ: dict[str, str]) -> Store:
    settings = load_settings(config=project / "slice.toml", environ=smtp_environ)
    return Store.open(settings.database_url)


def emails(store: Store, status: str | None = None) -> list[str]:
    return sorted(s.email for s in rows(store) if status is None or s.status == status)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- add --------------------------------------------------------------------------------


def test_add_sends_the_confirmation_email(
    cli: Run, smtp_server: RecordingSMTPServer, store: Store
) -> None:
    result = cli("add", "Ann@Example.org", "--name", "Ann")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        "Sent a confirmation email to Ann@example.org; they are pending"
    )
    [message] = smtp_server.parsed()
    assert links(message, "confirm")
    [sub] = rows(store)
    assert (sub.status, sub.consent_source, sub.name) == ("pending", "cli", "Ann")

    again = cli("add", "ann@example.org")
    assert again.exit_code == 0
    assert "was sent a confirmation email recently; no new one before" in again.stdout
    assert len(smtp_server.messages) == 1


def test_add_confirmed_records_the_consent_and_sends_nothing(
    cli: Run, smtp_server: RecordingSMTPServer, store: Store, tmp_path: Path
) -> None:
    result = cli("add", "bob@example.org", "--confirmed")
    assert result.exit_code == 0
    assert result.stdout == "Added bob@example.org as confirmed (consent held by the editor).\n"
    assert smtp_server.messages == []
    assert [(s.status, s.consent_source) for s in rows(store)] == [
        ("confirmed", "cli-consent-held")
    ]
    assert "already confirmed" in cli("add", "bob@example.org").stdout
    # the export's count is in words: "1 subscriber", never "1 subscribers"
    wrote = cli("export", "--output", str(tmp_path / "one.csv"))
    assert wrote.exit_code == 0 and wrote.stderr.startswith("Wrote 1 subscriber to ")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["nope"],
            "Error: 'nope' is not a valid email address: An email address must have an @-sign.",
        ),
        (["a@b.org", "--name", "A\nB"], "Error: the name holds a line break or control character"),
        (["x@localhost"], "Error: 'x@localhost' is not a valid email address"),
    ],
)
def test_add_refuses_bad_input_in_one_line(
    cli: Run, store: Store, args: list[str], says: str
) -> None:
    result = cli("add", *args)
    assert result.exit_code == 1
    assert result.stderr.startswith(says)
    assert len(result.stderr.strip().splitlines()) == 1
    assert rows(store) == []


def test_add_with_the_relay_down_keeps_the_address_and_retries_at_once(
    cli: Run, smtp_environ: dict[str, str], smtp_server: RecordingSMTPServer, store: Store
) -> None:
    down = {**smtp_environ, "SLICE_SMTP_PORT": str(free_port())}
    result = cli("add", "ann@example.org", env=down)
    assert result.exit_code == 1
    assert (
        "Error: ann@example.org is pending, but its confirmation email was not sent: cannot reach the relay"
        in result.stderr
    )
    assert "Run the same command again" in result.stderr
    assert emails(store, "pending") == ["ann@example.org"]
    assert cli("add", "ann@example.org").exit_code == 0
    assert len(smtp_server.messages) == 1


def test_add_confirmed_refuses_someone_who_left(cli: Run, store: Store) -> None:
    cli("add", "ann@example.org", "--confirmed")
    assert cli("remove", "ann@example.org").exit_code == 0
    result = cli("add", "ann@example.org", "--confirmed")
    assert result.exit_code == 1
    assert "stays off the list: only the person can come back" in result.stderr
    assert emails(store, "unsubscribed") == ["ann@example.org"]


# --- import -------------------------------------------------------------------------------


def test_import_reports_bad_rows_and_imports_the_good(
    cli: Run, smtp_server: RecordingSMTPServer, store: Store
) -> None:
    result = cli("import", str(MIXED))
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"{MIXED}: 5 added as pending, 5 confirmation emails sent, 0 already on the list, "
        "1 duplicate row merged, 0 unsubscribed or bounced kept off, 4 bad rows skipped.\n"
    )
    warnings = result.stderr.splitlines()
    assert (
        f"{MIXED}: line 3: 'not-an-address' is not a valid email address: An email address must have an @-sign."
        in warnings
    )
    assert f"{MIXED}: line 9: no email address" in warnings
    assert (
        f"{MIXED}: line 10: the name holds a line break or control character; use one line."
        in warnings
    )
    assert any(w.startswith(f"{MIXED}: line 12: ") for w in warnings)
    assert "ignored columns: Joined" in warnings
    assert emails(store, "pending") == [
        "BOB@example.org",
        "ann@example.org",
        "carl@xn--bcher-kva.de",
        "dora@example.org",
        "o'brien@example.ie",
    ]
    names = {s.email: s.name for s in rows(store)}
    assert names["BOB@example.org"] == "Bob Duplicate"  # the duplicate row filled the name in
    assert names["o'brien@example.ie"] == '=HYPERLINK("http://evil.example")'
    assert {s.consent_source for s in rows(store)} == {"import"}
    assert len(smtp_server.messages) == 5
    assert smtp_server.connections == 1  # one connection for the whole batch


def test_import_confirmed_records_consent_and_keeps_suppressed_off(
    cli: Run, smtp_server: RecordingSMTPServer, store: Store
) -> None:
    cli("add", "ann@example.org", "--confirmed")
    cli("remove", "ann@example.org")
    result = cli("import", str(MIXED), "--confirmed")
    assert result.exit_code == 0
    assert (
        "4 added as confirmed" in result.stdout
        and "1 unsubscribed or bounced kept off" in result.stdout
    )
    assert f"{MIXED}: line 2: ann@example.org is unsubscribed; kept off the list." in result.stderr
    assert smtp_server.messages == []
    assert emails(store, "unsubscribed") == ["ann@example.org"]
    assert {s.consent_source for s in rows(store) if s.status == "confirmed"} == {
        "import-consent-held"
    }


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (
            "email,name\nbjörn@example.org,Björn Müller\n".encode("latin-1"),
            "is not UTF-8 text (byte 0xf6 on line 2); save it as UTF-8",
        ),
        ("email,name\nann@example.org,Ann\n".encode("utf-16"), "is UTF-16 text; save it as UTF-8"),
        (
            b"ann@example.org,Ann\nbob@example.org,Bob\n",
            "line 1 looks like a subscriber, not a header",
        ),
        (
            b"address;who\nann@example.org;Ann\n",
            "has no 'email' column in its header (found: 'address', 'who')",
        ),
        (b"", "is empty; its first line must be a header"),
        (b'email,name\n"ann@example.org,Ann\n', "not valid CSV"),
    ],
)
def test_import_refuses_a_file_it_cannot_read_and_changes_nothing(
    cli: Run, store: Store, tmp_path: Path, content: bytes, says: str
) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes(content)
    result = cli("import", str(path))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {path}") and says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert rows(store) == []


def test_import_reads_semicolons_a_bom_and_other_header_spellings(
    cli: Run, store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffE-mail Address;Full Name\nann@example.org;Ann\n".encode())
    assert cli("import", str(path), "--confirmed").exit_code == 0
    assert [(s.email, s.name) for s in rows(store)] == [("ann@example.org", "Ann")]


def test_import_of_a_missing_file(cli: Run, tmp_path: Path) -> None:
    result = cli("import", str(tmp_path / "nope.csv"))
    assert result.exit_code == 1 and "cannot read it" in result.stderr


# --- export, list, count, remove, prune ------------------------------------------------------------


def test_export_round_trips_and_guards_formulas(cli: Run, store: Store, tmp_path: Path) -> None:
    cli("import", str(MIXED), "--confirmed")
    exported = cli("export")
    assert exported.exit_code == 0
    table = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [r["email"] for r in table] == [
        "ann@example.org",
        "BOB@example.org",
        "carl@xn--bcher-kva.de",
        "dora@example.org",
        "o'brien@example.ie",
    ]
    assert table[-1]["name"] == '\'=HYPERLINK("http://evil.example")'
    assert table[0]["consent_source"] == "import-consent-held" and table[0]["confirmed_at"]

    out = tmp_path / "out.csv"
    wrote = cli("export", "--status", "confirmed", "--output", str(out))
    assert wrote.exit_code == 0 and wrote.stderr.startswith("Wrote 5 subscribers to ")
    assert out.read_text(encoding="utf-8") == exported.stdout
    wrote = cli("export", "--status", "unsubscribed", "--output", str(tmp_path / "none.csv"))
    assert wrote.stderr.startswith("Wrote 0 subscribers to ")

    # into a fresh list: the same people and names come back
    before = {(s.email, s.name) for s in rows(store)}
    for sub in rows(store):
        assert cli("remove", sub.email, "--forget").exit_code == 0
    assert rows(store) == []
    assert cli("import", str(out), "--confirmed").exit_code == 0
    assert {(s.email, s.name) for s in rows(store)} == before


def test_list_count_remove_and_forget(cli: Run, store: Store) -> None:
    cli("add", "ann@example.org", "--name", "Ann", "--confirmed")
    cli("add", "bob@example.org")
    listed = json.loads(cli("list", "--json").stdout)
    assert [(r["email"], r["status"], r["name"]) for r in listed] == [
        ("ann@example.org", "confirmed", "Ann"),
        ("bob@example.org", "pending", ""),
    ]
    day = f"{rows(store)[0].created_at:%Y-%m-%d}"
    assert cli("list").stdout.splitlines() == [
        "email            name  status     consent           since",
        f"ann@example.org  Ann   confirmed  cli-consent-held  {day}",
        f"bob@example.org        pending    cli               {day}",
    ]
    table = cli("list", "--status", "pending").stdout
    assert "bob@example.org" in table and "ann@example.org" not in table
    assert cli("list", "--status", "bounced").stdout == "No subscribers with status bounced.\n"
    bad = cli("list", "--status", "gone")
    assert bad.exit_code == 1 and "use one of: pending, confirmed" in bad.stderr

    assert cli("count", "--status", "confirmed").stdout == "1\n"
    assert cli("count").stdout.splitlines()[-1].split() == ["total", "2"]

    assert (
        cli("remove", "ANN@example.org").stdout
        == "Unsubscribed ann@example.org; they will get no more emails.\n"
    )
    assert "already unsubscribed; nothing changed" in cli("remove", "ann@example.org").stdout
    forgot = cli("remove", "bob@example.org", "--forget")
    assert forgot.stdout.startswith("Deleted every record of bob@example.org.")
    missing = cli("remove", "bob@example.org")
    assert (
        missing.exit_code == 1
        and "no subscriber has the address 'bob@example.org'" in missing.stderr
    )
    assert emails(store) == ["ann@example.org"]


def test_prune_command(cli: Run, store: Store) -> None:
    cli("add", "stale@example.org")
    with store.write() as session:
        [sub] = rows(store)
        assert sub.confirm_sent_at is not None
        sub.confirm_sent_at = sub.confirm_sent_at.replace(year=sub.confirm_sent_at.year - 1)
        sub.created_at = sub.confirm_sent_at
        session.add(sub)
    dry = cli("prune", "--dry-run")
    assert (
        dry.stdout.startswith("Would remove 1 unconfirmed subscriber whose")
        and "stale@example.org" in dry.stdout
    )
    assert len(rows(store)) == 1
    assert cli("prune").stdout.startswith("Removed 1 unconfirmed subscriber whose")
    assert rows(store) == []


def test_every_subscribers_command_has_help(run_cli: Run) -> None:
    for command in ("add", "import", "export", "list", "remove", "count", "prune"):
        result = run_cli("subscribers", command, "--help")
        assert result.exit_code == 0 and "Usage:" in result.stdout
    assert "--port" in run_cli("serve", "--help").stdout


def test_serve_needs_the_secret_key(run_cli: Run) -> None:
    result = run_cli("serve", env={})
    assert result.exit_code == 1 and "SLICE_SECRET_KEY is not set" in result.stderr


def test_listing_needs_no_secret_key_but_adding_does(
    cli: Run, smtp_environ: dict[str, str], store: Store
) -> None:
    cli("add", "ann@example.org", "--confirmed")
    keyless = {k: v for k, v in smtp_environ.items() if k != "SLICE_SECRET_KEY"}
    assert cli("list", env=keyless).exit_code == 0
    assert cli("count", "--status", "confirmed", env=keyless).stdout == "1\n"
    assert cli("export", env=keyless).stdout.startswith("email,name,status")
    refused = cli("add", "bob@example.org", env=keyless)
    assert refused.exit_code == 1 and "SLICE_SECRET_KEY is not set" in refused.stderr
    assert emails(store) == ["ann@example.org"]
