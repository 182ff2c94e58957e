"""`slice subscribers import` streams big files: chunk by chunk, each committed, then mailed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

from newsletter.core.store import Store
from newsletter.readers.subscribers import IMPORT_CHUNK, Subscribers
from tests.signup_support import rows
from tests.support.smtpd import RecordingSMTPServer

Run = Callable[..., Result]
CHUNK = 50


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 50 rows instead of the default: a list longer than one chunk is the point,
    and each row of it is a confirmation email to send."""
    assert CHUNK < IMPORT_CHUNK
    defaults = Subscribers.import_stream.__kwdefaults__
    assert defaults is not None and defaults["chunk"] == IMPORT_CHUNK
    monkeypatch.setitem(defaults, "chunk", CHUNK)


def test_a_list_longer_than_a_chunk_is_imported_merged_and_mailed_whole(
    run_cli: Run,
    smtp_environ: dict[str, str],
    store: Store,
    tmp_path: Path,
    smtp_server: RecordingSMTPServer,
) -> None:
    count = CHUNK + 200
    path = tmp_path / "list.csv"
    lines = ["email,name", "first@example.org,"]  # its name comes in a later chunk
    lines += [f"person{n}@example.com,Person {n}" for n in range(count)]
    lines += ["FIRST@example.org,Found Later", "person5@example.com,Person Five Again"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run_cli("subscribers", "import", str(path), env=smtp_environ)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"{path}: {count + 1} added as pending, {count + 1} confirmation emails sent, "
        "0 already on the list, 2 duplicate rows merged, 0 unsubscribed or bounced kept off, "
        "0 bad rows skipped.\n"
    )
    stored = {s.email: s.name for s in rows(store)}
    assert len(stored) == count + 1
    assert stored["first@example.org"] == "Found Later"
    assert stored["person5@example.com"] == "Person 5"  # a name is never replaced
    assert len(smtp_server.messages) == count + 1


def test_a_file_that_breaks_after_the_first_chunk_imports_nothing(
    run_cli: Run,
    smtp_environ: dict[str, str],
    store: Store,
    tmp_path: Path,
    smtp_server: RecordingSMTPServer,
) -> None:
    path = tmp_path / "list.csv"
    good = "".join(f"person{n}@example.com,Person {n}\n" for n in range(CHUNK + 10))
    path.write_bytes(
        b"email,name\n" + good.encode() + "björn@example.org,Björn\n".encode("latin-1")
    )
    result = run_cli("subscribers", "import", str(path), env=smtp_environ)
    assert result.exit_code == 1
    line = CHUNK + 12
    assert f"is not UTF-8 text (byte 0xf6 on line {line})" in result.stderr
    assert rows(store) == [] and smtp_server.messages == []
