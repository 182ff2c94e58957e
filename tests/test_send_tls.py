"""Sending through a relay that speaks TLS and wants a login, as a hosted relay does.

Every test runs a real aiosmtpd server on 127.0.0.1 with a certificate made
here (SAN 127.0.0.1 and localhost). The client checks certificates the normal
way (`ssl.create_default_context`); the tests trust the certificate the way an
operator with a private CA would, by pointing SSL_CERT_FILE at it.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlmodel import select
from typer.testing import Result

from newsletter.core.config import load_settings
from newsletter.core.models import Delivery, Subscriber
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.send.smtp import setup_problem
from tests.send_support import ISSUE, SUBJECT, add_readers, write_issue
from tests.support.smtpd import RecordingSMTPServer

Run = Callable[..., Result]

# the plain relays below want a login without TLS, as some old relays do; aiosmtpd warns
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

USERNAME = "weekly@example.org"
PASSWORD = "correct horse battery staple"


@dataclass
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost, as a private CA would issue."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    paths = Certificate(folder / "relay.crt", folder / "relay.key")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@dataclass
class Logins:
    """An aiosmtpd authenticator that checks the one account and notes how each try arrived."""

    seen: list[tuple[str, str, bool]] = field(default_factory=list)  # mechanism, login, over TLS

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login, password = data.login.decode(), data.password.decode()
        over_tls = (
            server.transport is not None
            and server.transport.get_extra_info("ssl_object") is not None
        )
        self.seen.append((mechanism, login, over_tls))
        ok = over_tls and login == USERNAME and password == PASSWORD
        return AuthResult(success=ok, handled=False)


@dataclass
class Relay:
    server: RecordingSMTPServer
    logins: Logins


def start_relay(
    *, certificate: Certificate | None, mode: str, logins: Logins | None = None
) -> Relay:
    """A relay like a hosted one: ``starttls`` (port 587 style), ``tls`` (465) or ``plain``."""
    logins = logins or Logins()
    kwargs: dict[str, Any] = {"authenticator": logins, "auth_required": True}
    implicit: ssl.SSLContext | None = None
    if mode == "starttls":
        assert certificate is not None
        kwargs |= {"tls_context": certificate.server_context(), "require_starttls": True}
    elif mode == "tls":
        assert certificate is not None
        implicit = certificate.server_context()
        # aiosmtpd only knows about STARTTLS; on an implicit-TLS socket the
        # authenticator checks the transport instead
        kwargs |= {"auth_require_tls": False}
    else:
        kwargs |= {"auth_require_tls": False}
    server = RecordingSMTPServer(smtp_kwargs=kwargs, ssl=implicit)
    server.start()
    return Relay(server, logins)


@pytest.fixture
def relays() -> Iterator[Callable[..., Relay]]:
    started: list[Relay] = []

    def make(**kwargs: Any) -> Relay:
        relay = start_relay(**kwargs)
        started.append(relay)
        return relay

    yield make
    for relay in started:
        relay.server.stop()


def relay_env(
    environ: dict[str, str], relay: Relay, *, tls: str, trust: Certificate | None
) -> dict[str, str]:
    env = {
        **environ,
        "SLICE_SMTP_HOST": "127.0.0.1",
        "SLICE_SMTP_PORT": str(relay.server.port),
        "SLICE_SMTP_TLS": tls,
        "SLICE_SMTP_USERNAME": USERNAME,
        "SLICE_SMTP_PASSWORD": PASSWORD,
    }
    if trust is not None:
        env["SSL_CERT_FILE"] = str(trust.cert)
    return env


@pytest.fixture(autouse=True)
def _no_inherited_trust(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets decides which certificates are trusted."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)


def issue_with_readers(project: Path, env: dict[str, str], count: int) -> list[str]:
    settings: Settings = load_settings(config=project / "slice.toml", environ=env)
    with Store.open(settings.database_url) as store:
        write_issue(settings, store)
        return add_readers(store, count)


def ledger(project: Path, env: dict[str, str]) -> tuple[list[str], list[str]]:
    """Delivery statuses and subscriber statuses, as stored."""
    settings = load_settings(config=project / "slice.toml", environ=env)
    with Store.open(settings.database_url) as store, store.read() as session:
        deliveries = sorted(d.status for d in session.exec(select(Delivery)).all())
        subscribers = sorted(s.status for s in session.exec(select(Subscriber)).all())
    return deliveries, subscribers


def error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


@pytest.mark.parametrize("mode", ["starttls", "tls"])
def test_send_over_tls_with_a_login_reaches_every_reader(
    run_cli: Run,
    project: Path,
    environ: dict[str, str],
    certificate: Certificate,
    relays: Any,
    mode: str,
) -> None:
    relay = relays(certificate=certificate, mode=mode)
    env = relay_env(environ, relay, tls=mode, trust=certificate)
    readers = issue_with_readers(project, env, 6)

    result = run_cli("send", ISSUE, "--rate", "0", "--concurrency", "2", env=env)

    assert result.exit_code == 0, result.output
    assert "Issue 2025-W24: sent 6, deferred 0, failed 0 (0 suppressed)" in result.stdout
    got = sorted(rcpt for m in relay.server.messages for rcpt in m.rcpt_tos)
    assert got == sorted(readers)
    assert {m["Subject"] for m in relay.server.parsed()} == {SUBJECT}
    # one login per connection, each after TLS was up, with the configured account
    assert relay.logins.seen
    assert {(login, tls) for _, login, tls in relay.logins.seen} == {(USERNAME, True)}
    assert {mech for mech, _, _ in relay.logins.seen} <= {"LOGIN", "PLAIN"}
    assert ledger(project, env)[0] == ["sent"] * 6


def test_confirmation_email_goes_over_starttls(
    run_cli: Run, project: Path, environ: dict[str, str], certificate: Certificate, relays: Any
) -> None:
    relay = relays(certificate=certificate, mode="starttls")
    env = relay_env(environ, relay, tls="starttls", trust=certificate)

    result = run_cli("subscribers", "add", "ann@example.org", env=env)

    assert result.exit_code == 0, result.output
    assert "Sent a confirmation email to ann@example.org" in result.stdout
    [message] = relay.server.parsed()
    assert message["To"] == "ann@example.org"
    assert message["Subject"] == "Confirm your subscription to Test Weekly"
    assert [(login, tls) for _, login, tls in relay.logins.seen] == [(USERNAME, True)]


# (relay mode, SLICE_SMTP_TLS, trust the certificate?, password, what the one line must say)
MISCONFIGURED = {
    "tls-to-a-plain-relay": (
        "plain",
        "tls",
        True,
        PASSWORD,
        "the TLS handshake with the relay at 127.0.0.1:{port} failed (wrong version number); "
        "check SLICE_SMTP_TLS: `tls` is for a relay that speaks TLS from the first byte "
        "(usually port 465), `starttls` for one that upgrades a plain connection (usually port 587).",
    ),
    "starttls-not-offered": (
        "plain",
        "starttls",
        True,
        PASSWORD,
        "the relay at 127.0.0.1:{port} does not offer STARTTLS; check SLICE_SMTP_TLS: "
        "`tls` is for a relay that speaks TLS from the first byte (usually port 465), "
        "`starttls` for one that upgrades a plain connection (usually port 587).",
    ),
    "untrusted-certificate": (
        "starttls",
        "starttls",
        False,
        PASSWORD,
        "the relay at 127.0.0.1:{port} sent a TLS certificate this machine does not trust "
        "(self-signed certificate); check that SLICE_SMTP_HOST is the name on the relay's "
        "certificate, or, for a relay with a private CA, set SSL_CERT_FILE to that CA's "
        "certificate file.",
    ),
    "untrusted-certificate-implicit-tls": (
        "tls",
        "tls",
        False,
        PASSWORD,
        "the relay at 127.0.0.1:{port} sent a TLS certificate this machine does not trust "
        "(self-signed certificate);",
    ),
    "no-tls-to-a-relay-that-logs-in-only-over-tls": (
        "starttls",
        "none",
        True,
        PASSWORD,
        "the relay at 127.0.0.1:{port} offers no login (AUTH) on this connection; check "
        "SLICE_SMTP_TLS: `tls` is for a relay that speaks TLS from the first byte (usually "
        "port 465), `starttls` for one that upgrades a plain connection (usually port 587); "
        "or leave SLICE_SMTP_USERNAME empty for a relay that needs no login.",
    ),
    "wrong-password": (
        "starttls",
        "starttls",
        True,
        "wrong password",
        "the relay at 127.0.0.1:{port} refused the login: 535 5.7.8 Authentication "
        "credentials invalid; check SLICE_SMTP_USERNAME and SLICE_SMTP_PASSWORD.",
    ),
}


@pytest.mark.parametrize("case", list(MISCONFIGURED))
def test_misconfigured_tls_or_login_is_one_line_and_loses_nothing(
    run_cli: Run,
    project: Path,
    environ: dict[str, str],
    certificate: Certificate,
    relays: Any,
    case: str,
) -> None:
    mode, tls, trusted, password, expected = MISCONFIGURED[case]
    relay = relays(certificate=certificate, mode=mode)
    env = relay_env(environ, relay, tls=tls, trust=certificate if trusted else None)
    env["SLICE_SMTP_PASSWORD"] = password
    issue_with_readers(project, env, 8)

    result = run_cli("send", ISSUE, "--rate", "0", "--concurrency", "2", env=env)

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    [line] = error_lines(result)
    assert line.startswith("Error: " + expected.format(port=relay.server.port)), line
    assert relay.server.messages == []
    deliveries, subscribers = ledger(project, env)
    assert "sent" not in deliveries and "failed" not in deliveries
    assert subscribers == ["confirmed"] * 8  # nobody suppressed
    assert "Ledger: 0 sent, 0 failed, 0 skipped, 0 deferred, 8 waiting of 8." in result.stdout

    # fixed, the same command sends to everyone
    fixed = relays(certificate=certificate, mode="starttls")
    good = relay_env(environ, fixed, tls="starttls", trust=certificate)
    again = run_cli("send", ISSUE, "--rate", "0", env=good)
    assert again.exit_code == 0, again.output
    assert len(fixed.server.messages) == 8


@pytest.mark.parametrize(
    "case",
    ["tls-to-a-plain-relay", "starttls-not-offered", "untrusted-certificate", "wrong-password"],
)
def test_confirmation_email_on_a_misconfigured_relay_says_what_to_fix(
    run_cli: Run,
    project: Path,
    environ: dict[str, str],
    certificate: Certificate,
    relays: Any,
    case: str,
) -> None:
    mode, tls, trusted, password, expected = MISCONFIGURED[case]
    relay = relays(certificate=certificate, mode=mode)
    env = relay_env(environ, relay, tls=tls, trust=certificate if trusted else None)
    env["SLICE_SMTP_PASSWORD"] = password

    result = run_cli("subscribers", "add", "ann@example.org", env=env)

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    [line] = error_lines(result)
    problem = expected.format(port=relay.server.port).rstrip(".;")
    assert line.startswith(
        "Error: ann@example.org is pending, but its confirmation email was not sent: " + problem
    ), line
    assert line.endswith("Run the same command again to retry now."), line
    assert relay.server.messages == []
    assert ledger(project, env)[1] == ["pending"]


def test_a_relay_hanging_up_during_the_handshake_is_retried_not_a_setting_to_fix() -> None:
    dropped = ssl.SSLEOFError(8, "EOF occurred in violation of protocol")
    assert setup_problem(dropped, "relay:465") is None
    wrapped = aiosmtplib.SMTPConnectError("Error connecting to relay on port 465")
    wrapped.__cause__ = dropped
    assert setup_problem(wrapped, "relay:465") is None
    refused = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    refused.reason = "WRONG_VERSION_NUMBER"
    wrapped.__cause__ = refused
    assert "check SLICE_SMTP_TLS" in (setup_problem(wrapped, "relay:465") or "")
