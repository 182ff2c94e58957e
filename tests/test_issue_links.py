"""Links follow the base URL at send time; a send to real readers refuses local links;
proofs go to the editor by default and say so in the subject; counts read right."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from newsletter.core.config import load_settings
from newsletter.core.errors import SendError
from newsletter.core.store import Store
from newsletter.issue.compose import compose_issue
from newsletter.issue.linkcheck import is_local_host, links_in
from newsletter.issue.outbox import IssueFolder
from newsletter.issue.window import week_window
from newsletter.send.preflight import check_public_links
from newsletter.send.setup import issue_message
from newsletter.web import create_app
from tests.composedata import NOW, WEEK, add_papers, project_settings
from tests.send_support import add_reader, parse
from tests.support.liveserver import LiveServer
from tests.support.smtpd import RecordingSMTPServer

Run = Callable[..., Result]
PUBLIC = "https://news.example.org"


def _compose_with_local_base(project: Path, environ: dict[str, str]) -> None:
    """Compose as an editor does before SLICE_BASE_URL is set: with the local default."""
    settings = project_settings(project, environ)
    toml = (project / "slice.toml").read_text(encoding="utf-8")
    toml = toml.replace('base_url = "https://weekly.example.org"', "")
    (project / "slice.toml").write_text(toml, encoding="utf-8")
    settings = load_settings(config=project / "slice.toml", environ=environ)
    assert settings.web.base_url.startswith("http://127.0.0.1")
    with Store.open(settings.database_url) as store:
        add_papers(store)
        add_reader(store, "ada@example.com", "Ada")
        compose_issue(settings, store, window=week_window(WEEK), now=NOW)


def _links(data: bytes) -> list[str]:
    msg = parse(data)
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    return links_in(html, text)


def test_links_follow_the_base_url_of_the_send_not_of_the_compose(
    project: Path,
    smtp_environ: dict[str, str],
    smtp_server: RecordingSMTPServer,
    run_cli: Run,
) -> None:
    _compose_with_local_base(project, smtp_environ)
    result = run_cli("send", WEEK, env={**smtp_environ, "SLICE_BASE_URL": PUBLIC})
    assert result.exit_code == 0, result.output
    (received,) = smtp_server.messages
    found = _links(received.data)
    site = [u for u in found if u.startswith(PUBLIC)]
    assert f"{PUBLIC}/issues/{WEEK}" in site  # View in browser
    assert f"{PUBLIC}/issues" in site and f"{PUBLIC}/" in site  # Past issues, Subscribe
    assert any(u.startswith(f"{PUBLIC}/unsubscribe/") for u in site)
    assert not [u for u in found if "127.0.0.1" in u or "__SLICE" in u]
    # the archive serves the same issue with the base URL it runs with
    settings = load_settings(
        config=project / "slice.toml", environ={**smtp_environ, "SLICE_BASE_URL": PUBLIC}
    )
    with Store.open(settings.database_url) as store:
        server = LiveServer(create_app(settings, store=store)).start()
        try:
            with urllib.request.urlopen(f"{server.url}/issues/{WEEK}") as page:
                web = page.read().decode()
        finally:
            server.stop()
    assert f'href="{PUBLIC}/issues"' in web and "__SLICE" not in web and "127.0.0.1:8000" not in web


def test_a_send_to_real_readers_refuses_local_and_private_links(
    project: Path, smtp_environ: dict[str, str], run_cli: Run
) -> None:
    _compose_with_local_base(project, smtp_environ)
    folder = project / "outbox" / WEEK
    issue = json.loads((folder / "issue.json").read_text(encoding="utf-8"))
    issue["items"] = [{"kind": "dataset", "title": "Our intranet copy", "url": "http://10.1.2.3/d"}]
    (folder / "issue.json").write_text(json.dumps(issue), encoding="utf-8")
    assert run_cli("compose", "--week", WEEK, env=smtp_environ).exit_code == 0
    real = {**smtp_environ, "SLICE_SMTP_HOST": "smtp.example.net", "SLICE_BASE_URL": PUBLIC}
    # what each bad setup gets: one line, exit 1, nothing sent, no connection tried
    result = run_cli("send", WEEK, env=real)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: the issue links to http://10.1.2.3/d")
    assert result.stderr.count("\n") == 1
    plain_http = run_cli("send", WEEK, env={**real, "SLICE_BASE_URL": "http://news.example.org"})
    assert plain_http.exit_code == 1 and "must be https (RFC 8058)" in plain_http.stderr
    # through this machine's relay (dev-smtp, the demo) the same issue is fine
    settings = load_settings(config=project / "slice.toml", environ=smtp_environ)
    message = issue_message(settings, IssueFolder.of(settings.outbox_dir, WEEK))
    check_public_links(settings, message.links)
    real_settings = load_settings(config=project / "slice.toml", environ=real)
    message = issue_message(real_settings, IssueFolder.of(settings.outbox_dir, WEEK))
    assert [u for u in message.links if "10.1.2.3" in u or "127.0.0.1" in u] == [
        "http://10.1.2.3/d"
    ]
    with pytest.raises(SendError, match=r"links to http://10\.1\.2\.3/d,"):
        check_public_links(real_settings, message.links)


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("app.localhost", True),
        ("10.0.0.7", True),
        ("192.168.1.20", True),
        ("[::1]", True),
        ("fe80::1", True),
        ("printer.local", True),
        ("intranet", True),
        ("news.example.org", False),
        ("93.184.216.34", False),
    ],
)
def test_local_hosts(host: str, local: bool) -> None:
    assert is_local_host(host) is local


def test_proof_goes_to_the_editor_by_default_marked_as_a_proof(
    project: Path,
    smtp_environ: dict[str, str],
    smtp_server: RecordingSMTPServer,
    run_cli: Run,
) -> None:
    _compose_with_local_base(project, smtp_environ)
    missing = run_cli("send", WEEK, "--proof", env=smtp_environ)
    assert missing.exit_code == 1 and "newsletter.editor_address" in missing.stderr
    toml = (project / "slice.toml").read_text(encoding="utf-8")
    toml = toml.replace("[newsletter]\n", '[newsletter]\neditor_address = "Ed <ed@example.org>"\n')
    (project / "slice.toml").write_text(toml, encoding="utf-8")
    result = run_cli("send", WEEK, "--proof", env=smtp_environ)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Sent a proof of {WEEK} to Ed <ed@example.org>")
    (received,) = smtp_server.messages
    assert received.rcpt_tos == ["ed@example.org"]
    subject = str(parse(received.data)["Subject"])
    assert subject.startswith("[Proof] ") and len(subject) > len("[Proof] ") + 10
    # the real send's subject has no mark
    settings = load_settings(config=project / "slice.toml", environ=smtp_environ)
    assert not issue_message(
        settings, IssueFolder.of(settings.outbox_dir, WEEK)
    ).subject.startswith("[Proof]")


def test_send_never_reads_the_preview(
    project: Path, smtp_environ: dict[str, str], run_cli: Run
) -> None:
    _compose_with_local_base(project, smtp_environ)
    folder = project / "outbox" / WEEK
    assert "Good morning, Sam," in (folder / "preview.html").read_text(encoding="utf-8")
    (folder / "preview.html").write_text("edited by hand: not for readers", encoding="utf-8")
    result = run_cli("send", WEEK, "--dry-run", env=smtp_environ)
    assert result.exit_code == 0, result.output
    (eml,) = (folder / "dry-run").glob("*.eml")
    html = parse(eml.read_bytes()).get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Good morning, Ada," in html and "Sam" not in html
    assert "not for readers" not in html


def test_counts_read_right_for_one(
    project: Path, smtp_environ: dict[str, str], run_cli: Run
) -> None:
    _compose_with_local_base(project, smtp_environ)
    result = run_cli("send", WEEK, "--dry-run", env=smtp_environ)
    assert result.exit_code == 0, result.output
    assert re.match(r"Wrote 1 message to ", result.stdout)
    toml = (project / "slice.toml").read_text(encoding="utf-8")
    (project / "slice.toml").write_text(toml.replace("max_papers = 6", "max_papers = 1"), "utf-8")
    composed = run_cli("compose", "--week", WEEK, "--reselect", env=smtp_environ)
    assert composed.exit_code == 0, composed.output
    assert "Issue #1: 1 paper, " in composed.stderr
