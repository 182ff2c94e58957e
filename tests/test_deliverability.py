"""What receivers check in every email Slice sends: dates, line lengths, List-Id, DKIM, links.

The four kinds (issue, proof, confirmation, welcome) are captured at a real SMTP
server, DKIM-signed, and checked as a receiver would: the signature is verified
by dkimpy and by Perl's Mail::DKIM (two implementations independent of Slice's
signer) after a relay has prepended a Received header and re-folded headers.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import shutil
import subprocess
from collections.abc import Callable
from email.header import decode_header, make_header
from pathlib import Path

import pytest
from typer.testing import Result

from newsletter.core.errors import SendError
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.send.encoding import to_header
from newsletter.send.service import send_issue
from newsletter.send.setup import deliverability_warnings
from tests.conftest import TEST_SECRET
from tests.mail_samples import KINDS, capture_all, compose_golden, sample_settings
from tests.send_support import add_reader, dkim_verify, make_dkim_key
from tests.support.smtpd import RecordingSMTPServer

Samples = tuple[dict[str, bytes], bytes]


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Samples:
    """Every kind of email, DKIM-signed (d=example.org, s=s1), with a Feedback-ID; and the key."""
    root = tmp_path_factory.mktemp("signed")
    key_path, record = make_dkim_key(root)
    env = {
        "SLICE_SECRET_KEY": TEST_SECRET,
        "SLICE_DKIM_KEY": str(key_path),
        "SLICE_DKIM_SELECTOR": "s1",
        "SLICE_DKIM_DOMAIN": "example.org",
    }
    with RecordingSMTPServer() as server:
        settings = sample_settings(
            root / "project", env, server, extra_toml='feedback_id = "weekly-example"'
        )
        with Store.open(settings.database_url) as store:
            return capture_all(settings, store, server), record


def headers(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


@pytest.mark.parametrize("kind", KINDS)
def test_date_has_a_numeric_zone(signed: Samples, kind: str) -> None:
    date = str(headers(signed[0][kind])["Date"])
    assert re.search(r" [+-]\d{4}$", date), date  # "+0000", not the obsolete "GMT"


@pytest.mark.parametrize("kind", KINDS)
def test_every_encoded_line_fits_76_characters(signed: Samples, kind: str) -> None:
    msg = headers(signed[0][kind])
    for part in msg.walk():
        if part.is_multipart():
            continue
        encoding = str(part.get("Content-Transfer-Encoding", "7bit")).lower()
        raw = part.get_payload(decode=False)
        assert isinstance(raw, str)
        longest = max(len(line) for line in raw.splitlines())
        limit = 76 if encoding in ("quoted-printable", "base64") else 78
        assert longest <= limit, f"{kind} {part.get_content_type()} ({encoding}): {longest}"


def test_list_id_is_written_the_same_way_in_every_list_email(signed: Samples) -> None:
    values = {
        kind: str(headers(signed[0][kind])["List-Id"]) for kind in ("issue", "proof", "welcome")
    }
    assert set(values.values()) == {'"Radiology AI Weekly" <newsletter.example.org>'}, values
    # the confirmation is not list mail: it goes to an address that has not joined
    assert "List-Id" not in headers(signed[0]["confirmation"])


def test_feedback_id_names_the_campaign_and_the_sender(signed: Samples) -> None:
    ids = {kind: str(headers(signed[0][kind])["Feedback-ID"]) for kind in KINDS}
    assert ids == {
        "issue": "2026-W22:issue:weekly-example",
        "proof": "2026-W22:issue:weekly-example",
        "confirmation": "signup:confirmation:weekly-example",
        "welcome": "signup:welcome:weekly-example",
    }


def relayed(data: bytes) -> bytes:
    """The message after a relay: a Received header on top, long headers folded anew."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = re.sub(rb"\r\n[ \t]+", b" ", head).split(b"\r\n")  # unfold everything
    refolded = []
    for line in lines:
        if line.lower().startswith((b"subject:", b"list-unsubscribe:", b"to:")):
            line = re.sub(rb" ", b"\r\n\t ", line, count=2)  # fold where the relay likes
        refolded.append(line)
    received = (
        b"Received: from mail.example.org (mail.example.org [192.0.2.25])\r\n"
        b"\tby mx.example.net (Postfix) with ESMTPS id 4XqABC123\r\n"
        b"\tfor <reader@example.com>; Mon, 01 Jun 2026 07:31:00 +0000 (UTC)"
    )
    return b"\r\n".join([received, *refolded]) + b"\r\n\r\n" + body


@pytest.mark.parametrize("kind", KINDS)
def test_dkimpy_verifies_every_kind_after_a_relay(signed: Samples, kind: str) -> None:
    messages, record = signed
    assert dkim_verify(messages[kind], record)
    assert dkim_verify(relayed(messages[kind]), record)


@pytest.mark.parametrize(
    "header", [b"Reply-To: Someone <reply@attacker.example>", b"Cc: x@example.net"]
)
def test_reply_to_and_cc_are_oversigned(signed: Samples, header: bytes) -> None:
    """A Reply-To or Cc added after signing breaks the signature (h= names them once more)."""
    messages, record = signed
    for kind in ("issue", "confirmation"):
        data = messages[kind]
        signature = str(headers(data)["DKIM-Signature"])
        names = re.search(r"h=([^;]+);", re.sub(r"\s+", "", signature))
        assert names is not None and {"reply-to", "cc"} <= set(names.group(1).split(":"))
        head, _, body = data.partition(b"\r\n\r\n")
        assert not dkim_verify(head + b"\r\n" + header + b"\r\n\r\n" + body, record)


MAIL_DKIM = r"""
use strict; use warnings;
use Mail::DKIM::Verifier; use Mail::DKIM::PublicKey;
my $record = $ENV{DKIM_RECORD};
no warnings 'redefine';
# the key from the test, not from DNS (the tests touch no network)
*Mail::DKIM::PublicKey::fetch_async = sub {
    my ($class, %args) = @_;
    my $key = Mail::DKIM::PublicKey->parse($record);
    my $on_success = ($args{Callbacks} || {})->{Success} || sub { $_[0] };
    my $result = $on_success->($key);
    return sub { $result };
};
my $verifier = Mail::DKIM::Verifier->new();
binmode STDIN;
local $/;
my $data = <STDIN>;
$verifier->PRINT($data);
$verifier->CLOSE();
print $verifier->result_detail, "\n";  # "pass", or "fail (why)"
"""


def mail_dkim(data: bytes, record: bytes) -> str:
    done = subprocess.run(
        ["perl", "-e", MAIL_DKIM],
        input=data,
        capture_output=True,
        env={"DKIM_RECORD": record.decode(), "PATH": "/usr/bin:/bin"},
        check=True,
        timeout=60,
    )
    return done.stdout.decode().strip()


def _has_mail_dkim() -> bool:
    if shutil.which("perl") is None:
        return False
    return subprocess.run(["perl", "-MMail::DKIM::Verifier", "-e1"], check=False).returncode == 0


@pytest.mark.skipif(
    not _has_mail_dkim(),
    reason="Perl Mail::DKIM is not installed (Debian: apt-get install libmail-dkim-perl)",
)
@pytest.mark.parametrize("kind", KINDS)
def test_mail_dkim_verifies_every_kind_after_a_relay(signed: Samples, kind: str) -> None:
    messages, record = signed
    assert mail_dkim(relayed(messages[kind]), record) == "pass"
    data = relayed(messages[kind])
    tampered = data.replace(b"From: My Research Weekly", b"From: My Research Weakly", 1)
    assert tampered != data and mail_dkim(tampered, record).startswith("fail")


# --- settings that would hurt delivery -------------------------------------------


def test_a_send_with_an_http_base_url_is_refused(
    tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    settings = sample_settings(tmp_path / "p", {"SLICE_SECRET_KEY": TEST_SECRET}, smtp_server)
    settings.web.base_url = "http://weekly.example.org"
    with Store.open(settings.database_url) as store:
        issue_id = compose_golden(settings, store)
        add_reader(store, "ada@example.com")
        with pytest.raises(SendError, match=r"must be https \(RFC 8058\)"):
            asyncio.run(send_issue(settings, store, issue_id))
    assert smtp_server.messages == []


def test_dry_run_warns_of_http_links_and_a_dkim_domain_that_does_not_align(
    run_cli: Callable[..., Result], project: Path, environ: dict[str, str], tmp_path: Path
) -> None:
    key_path, _ = make_dkim_key(tmp_path)
    env = {
        **environ,
        "SLICE_BASE_URL": "http://weekly.example.org",
        "SLICE_DKIM_KEY": str(key_path),
        "SLICE_DKIM_SELECTOR": "s1",
        "SLICE_DKIM_DOMAIN": "mailer.example.net",
    }
    result = run_cli("send", "2026-W22", "--dry-run", env=env)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning: ")]
    assert len(warnings) == 2, result.stderr
    assert "must be https (RFC 8058)" in warnings[0]
    assert "DKIM signs as mailer.example.net but the From address is at example.org" in warnings[1]


# --- a list whose name is not ASCII, and long -----------------------------------------

LONG_NAME = "Radiología e IA — Boletín semanal de la Sociedad Española de Radiología Médica"


@pytest.fixture(scope="module")
def non_ascii(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("non-ascii")
    with RecordingSMTPServer() as server:
        settings = sample_settings(root / "project", {"SLICE_SECRET_KEY": TEST_SECRET}, server)
        settings.newsletter.name = LONG_NAME
        settings.newsletter.from_address = f'"{LONG_NAME}" <weekly@example.org>'
        with Store.open(settings.database_url) as store:
            return capture_all(settings, store, server)


def decoded(data: bytes, name: str) -> str:
    """A header as RFC 2047 says to read it: white space between encoded words dropped.

    (Python's newer parser keeps that space inside a display name; mail programs do not.)
    """
    raw = email.message_from_bytes(data, policy=email.policy.compat32)[name]
    return str(make_header(decode_header(str(raw))))


@pytest.mark.parametrize("kind", KINDS)
def test_encoded_words_stay_within_76_characters_a_line(
    non_ascii: dict[str, bytes], kind: str
) -> None:
    """RFC 2047: a header line holding encoded words is at most 76 characters long."""
    head = non_ascii[kind].partition(b"\r\n\r\n")[0]
    encoded = [line for line in head.split(b"\r\n") if b"=?" in line]
    assert encoded and max(len(line) for line in encoded) <= 76, encoded
    assert decoded(non_ascii[kind], "From") == f"{LONG_NAME} <weekly@example.org>"
    if kind != "confirmation":  # and List-Id reads back the same in every list email
        assert decoded(non_ascii[kind], "List-Id") == f"{LONG_NAME} <weekly.example.org>"


def test_a_long_non_ascii_reader_name_is_folded_within_76_characters() -> None:
    name = "Zoë Ångström-Østergaard de la Fuente y Martínez Sánchez"
    line = to_header("zoe@example.com", name)
    assert max(len(part) for part in line.split(b"\r\n")) <= 76, line
    assert decoded(line + b"\r\n", "To") == f"{name} <zoe@example.com>"


def test_no_feedback_id_unless_one_is_set(non_ascii: dict[str, bytes]) -> None:
    for kind in KINDS:
        assert "Feedback-ID" not in headers(non_ascii[kind]), kind


@pytest.mark.parametrize(
    ("dkim_domain", "from_address", "aligned"),
    [
        ("example.org", "news@example.org", True),
        ("example.org", "news@weekly.example.org", True),  # signed by the parent
        ("mail.example.org", "news@example.org", True),  # signed by a child
        ("mail.example.org", "news@weekly.example.org", True),  # siblings: one organization
        ("mail.example.co.uk", "news@example.co.uk", True),
        ("mailer.example.net", "news@example.org", False),
        ("other.co.uk", "news@example.co.uk", False),  # neighbours under a public suffix
    ],
)
def test_the_alignment_warning_follows_dmarcs_relaxed_rule(
    settings: Settings, dkim_domain: str, from_address: str, aligned: bool
) -> None:
    settings.secrets = settings.secrets.model_copy(update={"dkim_key_path": "dkim.pem"})
    settings.dkim.domain = dkim_domain
    settings.newsletter.from_address = f"Weekly <{from_address}>"
    settings.web.base_url = "https://weekly.example.org"
    warned = [w for w in deliverability_warnings(settings) if w.startswith("DKIM signs as")]
    assert (warned == []) == aligned, warned
