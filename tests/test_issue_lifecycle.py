"""An issue's life: drafts overlap, `slice issues` lists them, `slice discard` drops one,
numbers count sent issues, and a compose racing a send never turns a sent issue back."""

from __future__ import annotations

import asyncio
import random
import re
import threading
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest
from click.testing import Result
from sqlmodel import col, select

from newsletter.core.errors import ComposeError
from newsletter.core.models import Delivery, Issue, IssueStatus
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.issue.compose import compose_issue
from newsletter.issue.window import Window, week_window
from newsletter.send.service import SendOptions, send_issue
from tests.composedata import NOW, WEEK, add_papers, project_settings
from tests.send_support import add_readers
from tests.support.smtpd import RecordingSMTPServer

FAST = SendOptions(rate=0.0, concurrency=2, retry_base_seconds=0.02)


def _status(store: Store, issue_id: str) -> str:
    with store.read() as session:
        row = session.get(Issue, issue_id)
        assert row is not None
        return row.status


def test_issues_lists_drafts_and_discard_frees_them(
    project: Path, environ: dict[str, str], run_cli: Callable[..., Result]
) -> None:
    settings = project_settings(project, environ)
    with Store.open(settings.database_url) as store:
        add_papers(store)
    env = {**environ, "COLUMNS": "200"}
    assert run_cli("compose", "--since", "2026-05-20", "--until", "2026-05-31").exit_code == 0
    assert run_cli("compose", "--week", "2026-w22").exit_code == 0
    listed = run_cli("issues", env=env)
    assert listed.exit_code == 0, listed.output
    lines = [line for line in listed.stdout.splitlines() if "draft" in line]
    assert len(lines) == 2
    # both drafts would be #1: a draft uses no number
    assert all("(1)" in line for line in lines)
    assert any("2026-W22" in line and "2026-05-25 to 2026-05-31" in line for line in lines)
    assert "2 drafts" in listed.stderr

    gone = run_cli("discard", "2026-05-20_2026-05-31")
    assert gone.exit_code == 0, gone.output
    assert "Discarded draft 2026-05-20_2026-05-31" in gone.stderr
    assert not (settings.outbox_dir / "2026-05-20_2026-05-31").exists()
    assert list((settings.outbox_dir / ".discarded").iterdir())  # kept aside, not deleted
    listed = run_cli("issues", env=env)
    assert "2026-05-20_2026-05-31" not in listed.stdout
    assert "2026-05-20_2026-05-31" in run_cli("issues", "--all", env=env).stdout
    # what a bad discard gets: a one-line error, exit 1
    again = run_cli("discard", "2026-05-20_2026-05-31")
    assert again.exit_code == 1 and "is discarded already" in again.stderr
    missing = run_cli("discard", "2026-W01")
    assert missing.exit_code == 1 and "no issue 2026-W01" in missing.stderr
    # a discarded window can be composed again, as a draft
    assert run_cli("compose", "--since", "2026-05-20", "--until", "2026-05-31").exit_code == 0
    with Store.open(settings.database_url) as store:
        assert _status(store, "2026-05-20_2026-05-31") == IssueStatus.DRAFT


def test_a_sent_issue_cannot_be_discarded_and_numbers_have_no_gaps(
    any_store: Store,
    project: Path,
    smtp_environ: dict[str, str],
    smtp_server: RecordingSMTPServer,
) -> None:
    settings = project_settings(project, smtp_environ)
    add_papers(any_store)
    add_readers(any_store, 2)
    experiment = Window(date(2026, 5, 26), date(2026, 5, 28))
    compose_issue(settings, any_store, window=experiment, now=NOW)
    assert compose_issue(settings, any_store, window=week_window(WEEK), now=NOW).issue.number == 1
    from newsletter.issue.lifecycle import discard

    discard(settings, any_store, experiment.issue_id, now=NOW)
    asyncio.run(send_issue(settings, any_store, WEEK, options=FAST, rng=random.Random(1)))
    assert _status(any_store, WEEK) == IssueStatus.SENT
    with pytest.raises(ComposeError, match="is sent: only a draft can be discarded"):
        discard(settings, any_store, WEEK, now=NOW)
    assert (settings.outbox_dir / WEEK / "issue.html").is_file()
    add_papers(any_store, [{"title": "MRI segmentation in June", "authors": [], "source": "pubmed",
                            "kind": "paper", "published": date(2026, 6, 2)}])  # fmt: skip
    nxt = compose_issue(settings, any_store, window=week_window("2026-W23"), now=NOW)
    assert nxt.issue.number == 2  # the discarded draft left no gap


def _race(settings: Settings, store: Store, window: Window) -> list[str]:
    """Send the issue while composing it again and again; what the composes were told."""
    start = threading.Barrier(2)
    sent = threading.Event()
    refused: list[str] = []

    def send() -> None:
        start.wait()
        try:
            asyncio.run(send_issue(settings, store, window.issue_id, options=FAST))
        finally:
            sent.set()

    def compose() -> None:
        start.wait()
        while True:
            done = sent.is_set()
            try:
                compose_issue(settings, store, window=window, now=NOW)
            except ComposeError as exc:
                refused.append(str(exc))
                return
            if done:
                return

    threads = [threading.Thread(target=send), threading.Thread(target=compose)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return refused


def test_compose_racing_a_send_never_turns_a_sent_issue_back_into_a_draft(
    any_store: Store,
    project: Path,
    smtp_environ: dict[str, str],
    smtp_server: RecordingSMTPServer,
) -> None:
    """`slice compose` keeps running while `slice send` of the same issue finishes."""
    settings = project_settings(project, smtp_environ)
    readers = add_readers(any_store, 5)
    for week in range(4):
        window = week_window(WEEK) if week == 0 else week_window(f"2026-W{22 + week}")
        add_papers(any_store, [{"title": f"Deep learning CT segmentation, part {week}", "authors": [],
                                "source": "pubmed", "kind": "paper",
                                "published": window.start + timedelta(days=2)}])  # fmt: skip
        compose_issue(settings, any_store, window=window, now=NOW)
        refused = _race(settings, any_store, window)
        assert _status(any_store, window.issue_id) == IssueStatus.SENT
        # the compose that came after the send was told so, and changed nothing
        assert refused and re.search(r"is (sending|sent); a sent issue is not composed", refused[0])
        with any_store.read() as session:
            rows = session.exec(select(Delivery).where(Delivery.issue_id == window.issue_id))
            assert sorted(d.status for d in rows) == ["sent"] * len(readers)
    with any_store.read() as session:
        numbers = [i.number for i in session.exec(select(Issue).order_by(col(Issue.window_start)))]
    assert numbers == [1, 2, 3, 4]
