"""Every kind of email Slice sends, captured at a real SMTP server as a receiver gets it.

`capture_all` composes the fixed golden issue (tests/regen_golden.py), sends it
to a reader, sends a proof, and has a new reader sign up and confirm: the
issue, the proof, the confirmation and the welcome, each exactly as it reached
the relay. The deliverability tests score, verify and measure these bytes.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from newsletter.core.config import load_settings
from newsletter.core.project import init_project
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.issue.compose import compose_issue
from newsletter.issue.window import week_window
from newsletter.readers.mail import SubscriberMail
from newsletter.readers.mailqueue import MailQueue
from newsletter.readers.subscribers import ConsentSource, Subscribers
from newsletter.send.notices import SmtpMailer
from newsletter.send.review import send_proof
from newsletter.send.run import SendOptions
from newsletter.send.service import send_issue
from tests.composedata import NOW, PROFILE, WEEK, add_papers
from tests.regen_golden import EDITS
from tests.send_support import add_reader
from tests.support.smtpd import RecordingSMTPServer

KINDS = ("issue", "proof", "confirmation", "welcome")


def sample_settings(
    project: Path, environ: dict[str, str], server: RecordingSMTPServer, *, extra_toml: str = ""
) -> Settings:
    """The golden issue's project (https links), sending through ``server``."""
    init_project(project, name="Samples")
    toml = PROFILE.replace("[newsletter]\n", "[newsletter]\n" + extra_toml + "\n", 1)
    (project / "slice.toml").write_text(toml, encoding="utf-8")
    env = {**environ, "SLICE_SMTP_HOST": "127.0.0.1", "SLICE_SMTP_PORT": str(server.port)}
    return load_settings(config=project / "slice.toml", environ=env)


def compose_golden(settings: Settings, store: Store) -> str:
    add_papers(store)
    window = week_window(WEEK)
    first = compose_issue(settings, store, window=window, now=NOW)
    issue = json.loads(first.folder.selection.read_text(encoding="utf-8"))
    issue["intro"] = EDITS["intro"]
    issue["editor_note"] = EDITS["editor_note"]
    issue["papers"][0].update(EDITS["first"])
    issue["items"] = EDITS["items"]
    first.folder.selection.write_text(json.dumps(issue, indent=2), encoding="utf-8")
    return compose_issue(settings, store, window=window, now=NOW).folder.issue_id


def capture_all(settings: Settings, store: Store, server: RecordingSMTPServer) -> dict[str, bytes]:
    """{kind: message bytes as received} for every kind in `KINDS`."""
    issue_id = compose_golden(settings, store)
    add_reader(store, "ada@example.com", "Ada Lovelace")
    options = SendOptions(rate=0, retry_base_seconds=0)
    asyncio.run(send_issue(settings, store, issue_id, options=options))
    asyncio.run(send_proof(settings, issue_id, "Editor <editor@example.org>"))
    mail = SubscriberMail(Subscribers(settings, store), mailer=SmtpMailer(settings))
    queue = MailQueue(mail)
    result = mail.subscribers.subscribe("grace@example.com", source=ConsentSource.WEB)
    assert result.confirmation is not None
    assert asyncio.run(queue.drain()).sent == ["grace@example.com"]
    confirmed = mail.subscribers.confirm(result.confirmation.token)
    assert confirmed.welcome is not None
    assert asyncio.run(queue.drain()).sent == ["grace@example.com"]
    server.wait_for(4)
    return dict(zip(KINDS, (m.data for m in server.messages), strict=True))
