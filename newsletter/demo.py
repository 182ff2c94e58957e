"""`slice demo`: the whole loop on this machine, with nothing configured and no network.

It makes a demo project (in a temporary folder unless one is given), ingests the
sample papers shipped in ``newsletter/data/demo/``, composes the last complete
week's issue, starts a local SMTP sink that keeps what it receives under
``outbox/mailbox/``, subscribes three sample readers through the real double
opt-in (the signup form, the confirmation email, the link in it), and sends
the issue with the real sender. Every step is the library's own public function;
the demo only strings them together.

What the demo used stays in the demo folder, so that `slice serve` afterwards
is the same newsletter: the settings in its slice.toml (sender, footer, profile,
the local SMTP server of `slice dev-smtp`), and the signing key in ``.env``
(readable by its owner only, never in slice.toml), which the printed command
sources; the links in the demo's emails (unsubscribe) verify with it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shlex
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import tomli_w

from newsletter.core.config import load_settings
from newsletter.core.errors import NewsletterError, ProjectExistsError
from newsletter.core.project import init_project
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.core.timezone import machine_zone
from newsletter.issue.compose import ComposeResult, compose_issue, window_from_options
from newsletter.papers.ingest import IngestResult, ingest_files
from newsletter.send.devsmtp import MailSink, Received, SmtpServerThread
from newsletter.send.service import SendReport, send_issue
from newsletter.web import create_app

DEMO_NAME = "Radiology AI Weekly (demo)"
# The shipped papers are dated in this ISO week; the demo moves them, whole weeks at a
# time, so that this week becomes the last complete week before today.
REFERENCE_MONDAY = date(2025, 6, 9)
READERS = (
    ("ada.reader@example.org", "Ada Lovelace"),
    ("wilhelm.roentgen@example.org", "Wilhelm Röntgen"),
    ("marie@example.org", "Marie"),
)
MAIL_WAIT_SECONDS = 15.0
ENV_FILE = ".env"


class DemoError(NewsletterError):
    """A step of the demo did not go as the loop promises."""


@dataclass
class ReaderResult:
    email: str
    subscribed_page: int = 0  # HTTP status of POST /subscribe
    confirm_url: str = ""
    confirmed_page: int = 0  # HTTP status of POST /confirm/<token> (the page's button)


@dataclass
class DemoReport:
    """What the demo did, and where to look."""

    project: Path
    papers_file: Path
    ingest: IngestResult
    compose: ComposeResult
    readers: list[ReaderResult]
    send: SendReport
    mailbox: Path
    received: list[Received] = field(default_factory=list)

    @property
    def issue_id(self) -> str:
        return self.compose.issue_id

    def issue_messages(self) -> list[Received]:
        """The received copies of the issue (not the confirmation and welcome emails)."""
        subject = self.compose.rendered.message.subject
        return [r for r in self.received if _subject(r) == subject]

    @property
    def env_file(self) -> Path:
        return self.project / ENV_FILE

    def serve_command(self, program: str = "slice") -> str:
        """The command that shows this project's archive with the demo's key (a subshell:
        the key does not stay in the reader's shell)."""
        config = shlex.quote(str(self.project / "slice.toml"))
        return f"(set -a; . {shlex.quote(str(self.env_file))}; {program} --config {config} serve)"


def sample_papers() -> list[dict[str, Any]]:
    """The shipped sample paper records (Slice JSONL), as dictionaries."""
    text = resources.files("newsletter").joinpath("data/demo/papers.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def dated_for(today: date) -> list[dict[str, Any]]:
    """The sample papers with their dates moved into the last complete ISO week before ``today``."""
    target = window_from_options(week=None, since=None, until=None, today=today).start
    shift = timedelta(days=(target - REFERENCE_MONDAY).days // 7 * 7)
    papers = sample_papers()
    for paper in papers:
        paper["published"] = (date.fromisoformat(paper["published"]) + shift).isoformat()
    return papers


# Written into the demo's slice.toml: `slice serve` and `slice compose` afterwards are the same
# newsletter. The SMTP port is where `slice dev-smtp` listens; the demo itself runs its sink on a
# free port for the length of the run (`demo_settings`).
DEMO_SETTINGS: dict[str, dict[str, Any]] = {
    "newsletter": {
        "from_address": f"{DEMO_NAME} <weekly@example.org>",
        "postal_address": "Slice demo, 1 Example Street, Exampletown",
        "editor_address": "editor@example.org",
    },
    "smtp": {"host": "127.0.0.1", "port": 1025, "tls": "none"},
    "profile": {
        "terms": {
            "deep learning": 2.0,
            "radiology": 1.5,
            "radiologist": 1.5,
            "ct": 1.0,
            "mri": 1.0,
            "mammogra*": 1.0,
            "prospective": 1.0,
            "multicentre": 1.0,
        }
    },
}


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):  # an inline table: the line stays in its [section]
        return "{ " + ", ".join(tomli_w.dumps({k: v}).strip() for k, v in value.items()) + " }"
    return tomli_w.dumps({"v": value}).strip().removeprefix("v = ")


def with_settings(config_text: str, values: dict[str, dict[str, Any]]) -> str:
    """slice.toml text (as `slice init` writes it) with ``values`` set in their sections.

    Each setting replaces its commented-out default line, so the file keeps its
    layout and descriptions.
    """
    lines = config_text.splitlines()
    for section, settings in values.items():
        start = lines.index(f"[{section}]")
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines)
        )
        for key, value in settings.items():
            line = f"{key} = {_toml_value(value)}"
            pattern = re.compile(rf"^(# )?{re.escape(key)} = ")
            at = next((i for i in range(start + 1, end) if pattern.match(lines[i])), None)
            if at is None:
                lines.insert(start + 1, line)
                end += 1
            else:
                lines[at] = line
    return "\n".join(lines) + "\n"


def write_env(project: Path, secret_key: str) -> Path:
    """``.env`` with the demo's signing key, readable by its owner only, kept out of git."""
    path = project / ENV_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(
            "# The demo's signing key: `slice serve` needs it to accept the links in the\n"
            "# demo's emails. Source this file before running slice (see the demo's output).\n"
            f"SLICE_SECRET_KEY={secret_key}\n"
        )
    ignore = project / ".gitignore"
    if not ignore.exists():
        ignore.write_text(f"{ENV_FILE}\n", encoding="utf-8")
    return path


def demo_settings(project: Path, *, secret_key: str, smtp_port: int) -> Settings:
    """The demo project's settings: its slice.toml, this run's key and the local SMTP sink."""
    return load_settings(
        config=project / "slice.toml",
        environ={"SLICE_SECRET_KEY": secret_key},
        overrides={"smtp": {"port": smtp_port}},
    )


class _Inbox:
    """Waits for messages that the SMTP sink receives."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.items: list[Received] = []

    def __call__(self, item: Received) -> None:
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[Received], bool], what: str) -> Received:
        with self._cond:
            found = self._cond.wait_for(
                lambda: next((i for i in self.items if predicate(i)), None),
                timeout=MAIL_WAIT_SECONDS,
            )
        if found is None:
            raise DemoError(f"{what} did not arrive at the local SMTP server.")
        return found


def _parsed(item: Received) -> EmailMessage:
    message = message_from_bytes(item.data, policy=default_policy)
    assert isinstance(message, EmailMessage)
    return message


def _subject(item: Received) -> str:
    return str(_parsed(item).get("Subject", ""))


def _confirmation_to(email: str) -> Callable[[Received], bool]:
    return lambda item: email in item.rcpt_tos and b"/confirm/" in item.data


def _issue_to(email: str, subject: str) -> Callable[[Received], bool]:
    return lambda item: email in item.rcpt_tos and _subject(item) == subject


def confirm_link(item: Received) -> str:
    """The confirmation link in a confirmation email's plain-text part."""
    body = _parsed(item).get_body(preferencelist=("plain",))
    text = body.get_content() if body is not None else ""
    found = re.search(r"https?://\S+/confirm/[A-Za-z0-9_.~-]+", str(text))
    if not found:
        raise DemoError("the confirmation email has no /confirm/ link in its text part.")
    return found.group(0)


async def subscribe_readers(
    settings: Settings, store: Store, inbox: _Inbox, readers: tuple[tuple[str, str], ...]
) -> list[ReaderResult]:
    """Each reader fills in the signup form, gets the email and follows its link (over ASGI)."""
    app = create_app(settings, store=store)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 49152))
    results = []
    async with httpx.AsyncClient(transport=transport, base_url=settings.web.base_url) as browser:
        for email, name in readers:
            result = ReaderResult(email=email)
            page = await browser.get("/")
            token = re.search(r'name="form_token" value="([^"]+)"', page.text)
            if page.status_code != 200 or token is None:
                raise DemoError("the archive page has no signup form.")
            answer = await browser.post(
                "/subscribe", data={"email": email, "name": name, "form_token": token.group(1)}
            )
            result.subscribed_page = answer.status_code
            mail = inbox.wait_for(_confirmation_to(email), f"the confirmation email for {email}")
            result.confirm_url = confirm_link(mail)
            link = urlsplit(result.confirm_url).path
            shown = await browser.get(link)  # a page with one button, which the reader presses
            confirmed = await browser.post(link) if shown.status_code == 200 else shown
            result.confirmed_page = confirmed.status_code
            if confirmed.status_code != 200:
                raise DemoError(
                    f"the confirmation link for {email} answered {confirmed.status_code}."
                )
            results.append(result)
    return results


def run_demo(
    folder: Path | None = None,
    *,
    today: date | None = None,
    progress: Callable[[str], None] = lambda _step: None,
) -> DemoReport:
    """Run the whole loop in a new demo project; returns what happened. Leaves nothing running."""
    # the editor's today (the new project's timezone: the machine's), as `slice compose` reads it
    today = today or datetime.now(UTC).astimezone(machine_zone()).date()
    if folder is not None and (folder / "slice.toml").exists():
        raise ProjectExistsError(
            f"{folder} already holds a Slice project; give `slice demo` a new folder, "
            "or none for a temporary one."
        )
    project = folder if folder is not None else Path(tempfile.mkdtemp(prefix="slice-demo-"))
    progress(f"creating the demo project in {project}")
    init_project(project, name=DEMO_NAME)
    config = project / "slice.toml"
    config.write_text(with_settings(config.read_text("utf-8"), DEMO_SETTINGS), encoding="utf-8")
    secret_key = secrets.token_urlsafe(32)
    write_env(project, secret_key)
    papers_file = project / "demo-papers.jsonl"
    papers_file.write_text(
        "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in dated_for(today)),
        encoding="utf-8",
    )
    inbox = _Inbox()
    mailbox = project / "outbox" / "mailbox"
    smtp = SmtpServerThread(MailSink(folder=mailbox, on_message=inbox), host="127.0.0.1", port=0)
    smtp.start()
    try:
        settings = demo_settings(project, secret_key=secret_key, smtp_port=smtp.port)
        with Store.open(settings.database_url) as store:
            progress(f"ingesting {papers_file.name}")
            [ingested] = ingest_files(store, [papers_file])
            if ingested.error:
                raise DemoError(f"the sample papers could not be ingested: {ingested.error}")
            window = window_from_options(week=None, since=None, until=None, today=today)
            progress(f"composing {window.issue_id}")
            composed = compose_issue(settings, store, window=window)
            progress("subscribing three readers through the signup form and their emails")
            readers = asyncio.run(subscribe_readers(settings, store, inbox, READERS))
            progress(f"sending {composed.issue_id} through the local SMTP server")
            sent = asyncio.run(send_issue(settings, store, composed.issue_id))
            subject = composed.rendered.message.subject
            for email, _name in READERS:
                inbox.wait_for(_issue_to(email, subject), f"the issue for {email}")
    finally:
        smtp.stop()
    return DemoReport(
        project=project,
        papers_file=papers_file,
        ingest=ingested,
        compose=composed,
        readers=readers,
        send=sent,
        mailbox=mailbox,
        received=list(inbox.items),
    )
