"""After `slice demo`: the printed `slice serve` command is the same newsletter as the demo.

The command runs as printed (bash, the demo's .env, the real `slice` script), and a
reader follows the unsubscribe link of an issue the demo sent.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from newsletter.core.config import load_settings
from newsletter.core.store import Store
from newsletter.demo import DEMO_NAME, DEMO_SETTINGS, run_demo
from newsletter.papers.search import SearchParams, search_papers
from tests.test_demo import TODAY


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(url: str, proc: subprocess.Popen[bytes]) -> None:
    end = time.monotonic() + 30
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"slice serve exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("slice serve did not answer within 30 s")


def test_demo_folder_keeps_its_settings_and_key(tmp_path: Path) -> None:
    report = run_demo(tmp_path / "demo", today=TODAY)
    settings = load_settings(config=report.project / "slice.toml", environ={})
    # what the demo used, so `slice serve` and `slice compose` afterwards are the same newsletter
    assert settings.newsletter.name == DEMO_NAME
    assert settings.newsletter.from_address == f"{DEMO_NAME} <weekly@example.org>"
    assert settings.newsletter.postal_address == "Slice demo, 1 Example Street, Exampletown"
    assert settings.newsletter.editor_address == "editor@example.org"
    assert settings.profile.terms["deep learning"] == 2.0 and len(settings.profile.terms) == 8
    # every value the demo sets is read back from the file, whatever is added to DEMO_SETTINGS
    for section, values in DEMO_SETTINGS.items():
        for key, value in values.items():
            assert getattr(getattr(settings, section), key) == value, (section, key)
    # where `slice dev-smtp` listens (the demo's own sink lived only while it ran)
    assert (settings.smtp.host, settings.smtp.port, settings.smtp.tls) == (
        "127.0.0.1",
        1025,
        "none",
    )
    # the file still describes every setting
    text = (report.project / "slice.toml").read_text(encoding="utf-8")
    assert "# The sender's postal address" in text and "# confirm_ttl_hours = 72" in text
    # the key: only in .env, readable by its owner, kept out of git
    env = report.env_file.read_text(encoding="utf-8")
    assert re.search(r"^SLICE_SECRET_KEY=[A-Za-z0-9_-]{40,}$", env, re.M)
    assert report.env_file.stat().st_mode & 0o777 == 0o600
    assert (report.project / ".gitignore").read_text(encoding="utf-8") == ".env\n"
    assert "SLICE_SECRET_KEY" not in text.replace("SLICE_SECRET_KEY,", "").replace(
        "SLICE_SECRET_KEY\n", ""
    )


@pytest.mark.skipif(not shutil.which("bash"), reason="the printed command is for a POSIX shell")
def test_unsubscribe_link_from_a_demo_email_works_with_the_printed_serve(tmp_path: Path) -> None:
    report = run_demo(tmp_path / "demo", today=TODAY)
    issue = report.issue_messages()[0]
    assert issue.path is not None
    message = message_from_bytes(issue.path.read_bytes(), policy=default_policy)
    assert isinstance(message, EmailMessage)
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    link = re.search(r"https?://\S+/unsubscribe/\S+", str(body.get_content()))
    assert link is not None, "the issue's text part has an unsubscribe link"
    path = urlsplit(link.group(0)).path

    port = _free_port()
    program = str(Path(sys.executable).parent / "slice")
    command = report.serve_command(program)
    assert command.endswith(" serve)")  # as printed; the test picks a free port
    command = command.removesuffix(")") + f" --port {port})"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SLICE_")}
    proc = subprocess.Popen(
        ["bash", "-c", command],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for(f"{base}/healthz", proc)
        page = httpx.get(base + path)
        assert page.status_code == 200, page.text
        assert f"Unsubscribe from {DEMO_NAME}?" in page.text
        done = httpx.post(base + path, data={"List-Unsubscribe": "One-Click"})
        assert done.status_code == 200
        assert "You&#39;re unsubscribed" in done.text or "You're unsubscribed" in done.text
        assert "isn't valid" not in done.text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def test_the_search_help_example_finds_the_demos_mammography_papers(tmp_path: Path) -> None:
    """The archive's help line offers `mammo*`: in the demo it finds the screening papers."""
    report = run_demo(tmp_path / "demo", today=TODAY)
    settings = load_settings(config=report.project / "slice.toml", environ={})
    with Store.open(settings.database_url) as store, store.read() as session:
        page = search_papers(session, SearchParams(q="mammo*"), on_topic_only=True)
    assert sorted(p.title.split(":")[0] for p in page.papers) == [
        "Patient attitudes towards AI reading their screening mammograms",
        "Self-supervised pretraining on 1.2 million unlabeled mammograms improves breast "
        "cancer screening at low label budgets",
    ]
