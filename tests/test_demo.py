"""`slice demo`: the whole loop on real parts (SMTP sink, ASGI app, SQLite), nothing left running."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from datetime import date
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select
from typer.testing import Result

from newsletter.core.models import Issue, IssueStatus, Subscriber, SubscriberStatus
from newsletter.core.store import Store
from newsletter.demo import READERS, dated_for, run_demo, sample_papers
from newsletter.issue.window import last_complete_week

TODAY = date(2026, 11, 28)  # a Saturday: the last complete week is 2026-W47 (16-22 Nov)


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Refuse any connection that is not to 127.0.0.1; record the ones made."""
    made: list[Any] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def check(address: Any) -> None:
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"the demo tried to reach {address}")
        made.append(address)

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return made


def test_sample_papers_are_slice_records_from_three_sources() -> None:
    papers = sample_papers()
    assert 20 <= len(papers) <= 30
    assert {p["source"] for p in papers} == {"pubmed", "arxiv", "medrxiv"}
    for paper in papers:
        assert paper["title"] and paper["authors"] and paper["abstract"]
        assert paper["kind"] == ("paper" if paper["source"] == "pubmed" else "preprint")
        assert paper["url"].startswith(
            "https://example.org/demo/"
        )  # invented: no real paper's link


def test_papers_move_into_the_last_complete_week() -> None:
    week = last_complete_week(TODAY)
    days = [date.fromisoformat(p["published"]) for p in dated_for(TODAY)]
    inside = [d for d in days if week.start <= d <= week.end]
    assert len(inside) == 18
    assert all(d < week.start for d in days if d not in inside)
    # run on the Monday after the reference week, nothing moves
    assert [p["published"] for p in dated_for(date(2025, 6, 16))] == [
        p["published"] for p in sample_papers()
    ]


def test_demo_runs_the_whole_loop(tmp_path: Path, loopback_only: list[Any]) -> None:
    threads_before = {t.name for t in threading.enumerate()}
    progress: list[str] = []
    report = run_demo(tmp_path / "demo", today=TODAY, progress=progress.append)

    assert report.ingest.new == 24 and not report.ingest.rejected
    assert report.issue_id == "2026-W47"
    assert report.compose.folder.web_html.is_file() and report.compose.folder.email_html.is_file()
    assert [r.email for r in report.readers] == [email for email, _ in READERS]
    assert all(r.subscribed_page == 200 and r.confirmed_page == 200 for r in report.readers)
    assert all("/confirm/" in r.confirm_url for r in report.readers)
    assert report.send.counts.get("sent") == 3 and report.send.finished

    db = f"sqlite:///{tmp_path / 'demo' / 'subscribers' / 'slice.db'}"
    with Store.open(db) as store, store.read() as session:
        statuses = {s.email: s.status for s in session.exec(select(Subscriber))}
        issue = session.get(Issue, "2026-W47")
    assert statuses == {email: SubscriberStatus.CONFIRMED.value for email, _ in READERS}
    assert issue is not None and issue.status == IssueStatus.SENT.value

    # what the readers got, as files in outbox/mailbox/
    issues = report.issue_messages()
    assert sorted(m.rcpt_tos[0] for m in issues) == sorted(email for email, _ in READERS)
    for item in issues:
        assert (
            item.path is not None and item.path.parent == tmp_path / "demo" / "outbox" / "mailbox"
        )
        message = message_from_bytes(item.path.read_bytes(), policy=default_policy)
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "/unsubscribe/" in str(message["List-Unsubscribe"])
        assert "__SLICE_" not in item.path.read_text(encoding="utf-8", errors="replace")
    assert len(report.received) == len(list(report.mailbox.glob("*.eml")))

    # no network beyond loopback, nothing left running, no key written down
    assert loopback_only and all(a[0] == "127.0.0.1" for a in loopback_only)
    assert {t.name for t in threading.enumerate()} - threads_before == set()
    for path in (tmp_path / "demo").rglob("*"):
        if path.is_file() and path.suffix in (".toml", ".json", ".jsonl", ".txt"):
            assert "SLICE_SECRET_KEY=" not in path.read_text(encoding="utf-8")
    assert progress[0].startswith("creating the demo project")


def test_slice_demo_command(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    target = tmp_path / "try-slice"
    result = run_cli("demo", str(target))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"Demo newsletter in {target}" in out
    assert "sent 2026-W" in out or "sent 20" in out
    assert f"{target}/outbox/" in out and "email.html" in out and "issue.html" in out
    # the outbox files keep their placeholders; the output says where the filled-in copies are
    assert "(a template: each reader's copy fills in the __SLICE_…__ marks)" in out
    assert "(as readers see it: http://127.0.0.1:8000/issues/2026-W" in out
    assert f"slice --config {target / 'slice.toml'} serve" in out
    assert "3 sent" in out

    again = run_cli("demo", str(target))
    assert again.exit_code == 1
    assert again.output == (
        f"Error: {target} already holds a Slice project; give `slice demo` a new folder, "
        "or none for a temporary one.\n"
    )
