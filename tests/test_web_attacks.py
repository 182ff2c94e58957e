"""The public endpoints under abuse: every attack of issue 11, as a test.

In-process (httpx over ASGI, fake clock, the real aiosmtpd) where one process is
enough; against `slice serve` in a subprocess, with two workers, where the attack
is about concurrency, processes or the socket (limits, chunked bodies, a relay
that is down). SQLite always, PostgreSQL too when SLICE_TEST_DATABASE_URL is set.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from itsdangerous import Signer, TimestampSigner, URLSafeTimedSerializer

from newsletter.core.store import Store
from newsletter.readers.csvfile import ImportStream, write_export
from newsletter.readers.subscribers import ConsentSource
from tests.signup_support import (  # noqa: F401 - asyncio_backend, signup_site: fixtures
    BASE,
    Site,
    asyncio_backend,
    form_token,
    links,
    one,
    path_of,
    rows,
    signup_site,
    smtp_settings,
)
from tests.support.serve import SliceServe
from tests.support.smtpd import RecordingSMTPServer

pytestmark = pytest.mark.anyio


def _client(site: Site, ip: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(site.app, client=(ip, 4444)), base_url=BASE
    )


async def _signup(
    client: httpx.AsyncClient, email: str, name: str = "", **headers: str
) -> httpx.Response:
    token = form_token((await client.get("/subscribe")).text)
    return await client.post(
        "/subscribe",
        data={"email": email, "name": name, "form_token": token},
        headers=headers,
    )


# --- links: scanners, purposes -----------------------------------------------------------


async def test_a_link_scanner_opening_the_confirm_link_confirms_nothing(site: Site) -> None:
    await site.subscribe("ann@example.org", "Ann")
    link = path_of(links(site.mail()[0], "confirm")[0])
    for _ in range(3):  # a scanner, a preview, the reader's first look
        shown = await site.client.get(link)
        assert shown.status_code == 200 and "Yes, subscribe me" in shown.text
        assert f'<form method="post" action="{link}">' in shown.text
        assert "<script" not in shown.text  # the button works without JavaScript
    assert one(site.store).status == "pending" and len(site.mail()) == 1
    confirmed = await site.client.post(link, data={"confirm": "yes"})
    assert confirmed.status_code == 200 and "You're subscribed" in confirmed.text
    assert one(site.store).status == "confirmed"
    [_, welcome] = site.mail()
    assert welcome["Subject"].startswith("Welcome")
    again = await site.client.post(link)  # a second press: said, not done twice
    assert again.status_code == 200 and "already subscribed" in again.text
    assert len(site.mail()) == 2


async def test_a_confirmation_link_mailed_before_the_button_page_still_confirms(
    site: Site,
) -> None:
    """Links already in inboxes: made as the first release made them, they work the same way."""
    await site.subscribe("ann@example.org", "Ann")
    sub = one(site.store)
    assert sub.confirm_nonce is not None
    when = int(site.clock().timestamp())

    class Then(TimestampSigner):
        def get_timestamp(self) -> int:
            return when

    # the first release's link: /confirm/ + [uid, nonce] signed with the key, salt and
    # timestamp format of that release (itsdangerous's URL-safe timed serializer)
    key = site.settings.require_secret_key()
    old = URLSafeTimedSerializer(key, salt="slice.confirm.v1", signer=Then)
    link = f"/confirm/{old.dumps([sub.uid, sub.confirm_nonce])}"
    shown = await site.client.get(link)
    assert shown.status_code == 200 and "Yes, subscribe me" in shown.text
    assert one(site.store).status == "pending"
    pressed = await site.client.post(link)
    assert pressed.status_code == 200 and "You're subscribed" in pressed.text
    assert one(site.store).status == "confirmed"
    assert site.mail()[-1]["Subject"].startswith("Welcome")


@pytest.mark.parametrize("kind", ["unsubscribe", "confirm"])
async def test_a_token_signed_for_another_purpose_is_the_invalid_link_page(
    site: Site, kind: str
) -> None:
    await site.subscribe("ann@example.org")
    key = site.settings.require_secret_key()
    # right key and salt, but not a payload the site ever makes: itsdangerous's BadPayload
    salt = f"slice.{kind}.v1"
    for payload in (b"not-json", b".bm90LXpsaWI", b"[1, 2, 3]"):
        forged = Signer(key, salt=salt).sign(payload).decode()
        shown = await site.client.get(f"/{kind}/{forged}")
        pressed = await site.client.post(f"/{kind}/{forged}")
        assert shown.status_code == pressed.status_code == 400, payload
        assert "isn't valid" in shown.text and "isn't valid" in pressed.text
    assert one(site.store).status == "pending"


# --- the form -----------------------------------------------------------------------------


async def test_origin_null_without_fetch_metadata_is_refused(site: Site) -> None:
    refused = await _signup(site.client, "victim@example.org", origin="null")
    assert refused.status_code == 403 and "another website" in refused.text
    assert rows(site.store) == [] and site.mail() == []
    # the same browser saying it is our own page is believed
    same = await _signup(
        site.client, "victim@example.org", origin="null", **{"sec-fetch-site": "same-origin"}
    )
    assert same.status_code == 200 and len(rows(site.store)) == 1


async def test_a_later_signup_does_not_rename_a_pending_subscriber(site: Site) -> None:
    await site.subscribe("ann@example.org", "Ann Lee")
    site.clock.advance(hours=2)  # past the resend interval
    stranger = _client(site, "198.51.100.66")
    async with stranger:
        answer = await _signup(stranger, "ann@example.org", "Prize! visit evil.example")
    assert answer.status_code == 200
    assert one(site.store).name == "Ann Lee"
    newest = path_of(links(site.mail_to("ann@example.org")[-1], "confirm")[0])
    await site.confirm(newest)
    welcome = site.mail()[-1]
    assert welcome["To"].addresses[0].display_name == "Ann Lee"
    assert "evil.example" not in welcome.as_string()


@pytest.mark.parametrize(
    "name",
    ["=?utf-8?q?Prize!_visit_evil.example?=", "Zoë =?utf-8?b?UHJpemUh?=", "Eve, =?x?q?y?="],
)
async def test_a_name_that_looks_like_an_encoded_word_is_shown_as_typed(
    site: Site, name: str
) -> None:
    await site.subscribe("eve@example.org", name)
    await site.confirm(path_of(links(site.mail()[0], "confirm")[0]))
    raw = site.smtp.messages[-1].data
    unfolded = re.sub(rb"\r\n[ \t]", b" ", raw.partition(b"\r\n\r\n")[0])
    to_line = next(line for line in unfolded.split(b"\r\n") if line.startswith(b"To:"))
    # one encoded word holding the whole name: decoded once, it is the literal text
    assert re.fullmatch(rb"To: =\?utf-8\?b\?[A-Za-z0-9+/=]+\?= <eve@example\.org>", to_line)
    welcome = site.mail()[-1]
    assert welcome["To"].addresses[0].display_name == name


def test_export_guards_every_cell_a_spreadsheet_would_run(store: Store, settings: object) -> None:
    from newsletter.readers.subscribers import Subscribers

    subs = Subscribers(settings, store)  # type: ignore[arg-type]
    dangerous = ["=cmd|'/Ccalc'!A1@example.com", "+1@example.com", "-2@example.com"]
    for address in dangerous:
        subs.add(address, name="@SUM(1+1)", source=ConsentSource.CLI_HELD)
    subs.add("tab@example.com", name="\tTabbed", source=ConsentSource.CLI_HELD)
    out = io.StringIO()
    write_export(subs.all(), out)
    cells = [cell for row in list(csv.reader(io.StringIO(out.getvalue())))[1:] for cell in row]
    for cell in cells:
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    # names starting with a tab or a carriage return: stored names are trimmed one-liners,
    # but a row written by an older version or by hand may hold one
    last = subs.all()[-1]
    odd = [last.model_copy(update={"name": lead + "=HYPERLINK(1)"}) for lead in "\t\r"]
    two_rows = io.StringIO()
    write_export(odd, two_rows)
    names = [row[1] for row in list(csv.reader(io.StringIO(two_rows.getvalue())))[1:]]
    assert names == ["'\t=HYPERLINK(1)", "'\r=HYPERLINK(1)"]
    # a carriage return inside a cell is quoted, so it cannot start a row of its own
    inner = last.model_copy(update={"name": "Ann\r=HYPERLINK(1)"})
    one_row = io.StringIO()
    write_export([inner], one_row)
    assert '"Ann\r=HYPERLINK(1)"' in one_row.getvalue()
    lines = out.getvalue().splitlines()[1:]
    assert lines[0].startswith("'=cmd|'/Ccalc'!A1@example.com,'@SUM(1+1),confirmed")
    # and it imports back as it was
    back = ImportStream(io.BytesIO(out.getvalue().encode()), name="export.csv")
    back.check()
    again = list(back.rows())
    assert [r.address.email for r in again][:3] == dangerous
    assert again[0].name == "@SUM(1+1)" and back.problems == []


# --- the limits: shared, atomic, no oracle, the real client ---------------------------------


async def test_the_client_limit_counts_every_address_whatever_its_status(site: Site) -> None:
    """Fill the slots, submit a target, probe once: the probe's answer is the same either way."""
    site.subscribers.add("known@example.org", source=ConsentSource.CLI_HELD)
    answers = {}
    for target, ip in (("known@example.org", "198.51.100.1"), ("new@example.org", "198.51.100.2")):
        client = _client(site, ip)
        async with client:
            for i in range(9):
                assert (await _signup(client, f"filler{i}.{ip}@example.org")).status_code == 200
            assert (await _signup(client, target)).status_code == 200
            probe = await _signup(client, f"probe.{ip}@example.org")
        answers[target] = probe.status_code
    assert answers == {"known@example.org": 429, "new@example.org": 429}


@pytest.mark.parametrize("status", ["new", "confirmed"])
async def test_one_address_is_accepted_a_few_times_an_hour_from_anyone(
    site: Site, status: str
) -> None:
    """Whether the address is on the list or not, the sixth form of the hour is refused."""
    if status == "confirmed":
        site.subscribers.add("target@example.org", source=ConsentSource.CLI_HELD)
    codes = []
    for i in range(7):
        client = _client(site, f"198.51.100.{10 + i}")
        async with client:
            codes.append((await _signup(client, "target@example.org")).status_code)
    assert codes == [200] * 5 + [429] * 2
    # the resend interval holds too; a subscribed address is sent nothing
    assert len(site.mail_to("target@example.org")) == (1 if status == "new" else 0)
    site.clock.advance(hours=1, seconds=1)
    assert (await site.subscribe("target@example.org")).status_code == 200


async def test_forwarded_headers_count_only_from_a_trusted_proxy(
    site: Site, project: Path, smtp_environ: dict[str, str]
) -> None:
    proxy = _client(site, "127.0.0.1")
    async with proxy:
        # not trusted (the default): every spoofed value is the proxy's own address
        for i in range(12):
            answer = await _signup(
                proxy, f"s{i}@example.org", **{"x-forwarded-for": f"203.0.113.{i}"}
            )
        assert answer.status_code == 429
        assert len(site.mail()) == 10
    # behind nginx on this machine, as the setting's documentation says to configure it
    config = project / "slice.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("[web]", '[web]\ntrusted_proxies = ["127.0.0.1"]', 1))
    behind = Site(smtp_settings(project, smtp_environ), site.store, site.smtp)
    behind.clock.advance(hours=2)
    proxy = _client(behind, "127.0.0.1")
    async with proxy:
        # trusted: the client is the last address the proxy did not add itself; what the
        # client wrote before it (a spoofed chain) does not matter
        for i in range(11):
            answer = await _signup(
                proxy,
                f"t{i}@example.org",
                **{"x-forwarded-for": f"10.9.9.{i}, 192.0.2.50"},
            )
        assert answer.status_code == 429
        other = await _signup(proxy, "other@example.org", **{"x-forwarded-for": "192.0.2.51"})
        assert other.status_code == 200
    await behind.close()


# --- against `slice serve --workers 2` ------------------------------------------------------


@pytest.fixture
def serve_project(tmp_path: Path, db_url: str) -> Path:
    from newsletter.core.project import init_project

    root = tmp_path / "served"
    init_project(root, name="Attack Weekly")
    config = root / "slice.toml"
    text = config.read_text(encoding="utf-8")
    text = text.replace("[web]", "[web]\nmail_retry_first_seconds = 0.5", 1)
    config.write_text(text, encoding="utf-8")
    root.joinpath("db_url").write_text(db_url, encoding="utf-8")
    return root


@pytest.fixture
def served(serve_project: Path, smtp_server: RecordingSMTPServer) -> Iterator[SliceServe]:
    env = {
        "SLICE_SMTP_HOST": "127.0.0.1",
        "SLICE_SMTP_PORT": str(smtp_server.port),
        "SLICE_DATABASE_URL": (serve_project / "db_url").read_text(encoding="utf-8"),
    }
    server = SliceServe(serve_project, workers=2, env=env).start()
    try:
        yield server
    finally:
        server.stop()


async def _live_signup(client: httpx.AsyncClient, email: str, **headers: str) -> int:
    page = await client.get("/subscribe")
    answer = await client.post(
        "/subscribe",
        data={"email": email, "form_token": form_token(page.text)},
        headers=headers,
    )
    return answer.status_code


async def test_fifty_simultaneous_signups_from_one_client_send_at_most_the_limit(
    served: SliceServe, smtp_server: RecordingSMTPServer
) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=60) as client:
        codes = await asyncio.gather(
            *(_live_signup(client, f"stranger{i}@example.org") for i in range(50))
        )
        assert codes.count(200) == 10 and codes.count(429) == 40
        spoofed = await asyncio.gather(
            *(
                _live_signup(client, f"spoof{i}@example.org", **{"x-forwarded-for": f"10.0.0.{i}"})
                for i in range(30)
            )
        )
        assert set(spoofed) == {429}
    smtp_server.wait_for(10, timeout=30)
    time.sleep(1.5)  # the queue tasks of both workers would have sent any more by now
    assert len(smtp_server.messages) == 10


async def test_a_chunked_body_is_cut_off_at_the_limit(served: SliceServe) -> None:
    """30 MB sent chunked to every POST route: answered 413 long before the end, archive fine."""

    def chunked_post(path: str) -> tuple[bytes, int]:
        with socket.create_connection(("127.0.0.1", served.port), timeout=20) as sock:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                "Transfer-Encoding: chunked\r\n\r\n".encode()
            )
            chunk = b"a" * 65536
            sent = 0
            sock.settimeout(0.05)
            answer = b""
            while sent < 30 * 1024 * 1024:
                try:
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    sent += len(chunk)
                except OSError:
                    break  # the server stopped reading and closed
                try:
                    answer += sock.recv(65536)
                    if answer:
                        break
                except TimeoutError:
                    continue
            sock.settimeout(10)
            try:
                while b"\r\n\r\n" not in answer:
                    more = sock.recv(65536)
                    if not more:
                        break
                    answer += more
            except OSError:
                pass
            return answer, sent

    for path in ("/subscribe", "/unsubscribe/whatever", "/confirm/whatever", "/"):
        answer, sent = chunked_post(path)
        assert answer.split(b"\r\n", 1)[0] in (
            b"HTTP/1.1 413 Request Entity Too Large",
            b"HTTP/1.1 413 Content Too Large",
            b"HTTP/1.1 400 Bad Request",
            b"HTTP/1.1 405 Method Not Allowed",
        ), (path, answer[:80])
        assert sent < 5 * 1024 * 1024, (path, sent)  # it stopped reading long before 30 MB
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
            assert (await client.get("/")).status_code == 200


async def test_signup_while_the_relay_is_down_is_sent_when_it_is_back(
    served: SliceServe, smtp_server: RecordingSMTPServer
) -> None:
    smtp_server.refuse_all = "421 4.3.2 Service not available"
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
        page = await client.get("/subscribe")
        answer = await client.post(
            "/subscribe",
            data={"email": "patient@example.org", "form_token": form_token(page.text)},
        )
    assert answer.status_code == 200 and "we'll email it a link" in answer.text
    time.sleep(2)  # several retries, all refused
    assert smtp_server.messages == []
    smtp_server.refuse_all = None
    smtp_server.wait_for(1, timeout=30)
    [message] = smtp_server.parsed()
    assert message["To"].addresses[0].addr_spec == "patient@example.org"
    assert links(message, "confirm")


# --- a killed import ---------------------------------------------------------------------------


def test_a_killed_import_leaves_its_confirmations_queued_and_they_are_sent(
    project: Path, smtp_environ: dict[str, str], smtp_server: RecordingSMTPServer
) -> None:
    import os
    import signal
    import subprocess
    import sys
    from datetime import timedelta

    from newsletter.core.models import utcnow
    from newsletter.readers.mail import SubscriberMail
    from newsletter.readers.mailqueue import MailQueue
    from newsletter.readers.subscribers import Subscribers
    from newsletter.send.notices import SmtpMailer

    addresses = [f"reader{i:02}@example.org" for i in range(30)]
    csv_file = project / "list.csv"
    csv_file.write_text("email\n" + "\n".join(addresses) + "\n", encoding="utf-8")
    smtp_server.delay = 0.3  # a slow relay: the import is killed while it mails
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLICE_")}
    env.update(smtp_environ, SLICE_CONFIG=str(project / "slice.toml"))
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "slice"), "subscribers", "import", str(csv_file)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        smtp_server.wait_for(3, timeout=60)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    got_before = {m.rcpt_tos[0] for m in smtp_server.messages}
    assert 3 <= len(got_before) < 30

    settings = smtp_settings(project, smtp_environ)
    store = Store.open(settings.database_url)
    try:
        assert {s.email for s in rows(store)} == set(addresses)  # every row was kept
        # what `slice serve` does once the killed sender's claim (5 minutes) has run out
        later = Subscribers(settings, store, clock=lambda: utcnow() + timedelta(minutes=6))
        queue = MailQueue(SubscriberMail(later, mailer=SmtpMailer(settings)))
        assert queue.pending() >= 30 - len(got_before)
        smtp_server.delay = 0
        report = asyncio.run(queue.drain())
        assert queue.pending() == 0 and not report.failed
    finally:
        store.dispose()
    received = [m.rcpt_tos[0] for m in smtp_server.messages]
    assert set(received) == set(addresses)  # nobody was left without their link
    assert len(received) <= 30 + 10  # the chunk being sent when it was killed may go twice
