"""Every kind of email Slice sends, scored by SpamAssassin (Debian's, local rules only).

Each email is scored as captured at the relay, and again with a ``Received:``
header from a relay without reverse DNS (as a home or cloud server often has),
and compared with a plain one-line email carrying the same headers through the
same hop: rules about the headers and the relay fire on both and cancel out,
so what is left is what the content costs. Each must cost under 2 points.

Run with ``-s`` to see the rules that fire. Skipped when `spamassassin` is not
installed (.ci/run installs it).
"""

from __future__ import annotations

import mailbox
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path

import pytest

from newsletter.core.settings import Settings
from newsletter.core.store import Store
from tests.mail_samples import KINDS, capture_all, sample_settings
from tests.support.smtpd import RecordingSMTPServer

pytestmark = pytest.mark.skipif(
    shutil.which("spamassassin") is None,
    reason="SpamAssassin is not installed (Debian: apt-get install spamassassin)",
)

MAX_ABOVE_PLAIN = 2.0
_DROP = {b"content-type", b"content-transfer-encoding", b"mime-version", b"dkim-signature"}


def crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def no_rdns_hop(data: bytes) -> bytes:
    """The message as an MX got it from a relay whose address has no name (Postfix's form)."""
    date = BytesHeaderParser(policy=compat32).parsebytes(data)["Date"]
    return (
        b"Received: from mail.example.org (unknown [203.0.113.25])\r\n"
        b"\tby mx.example.net (Postfix) with ESMTPS id 4XqABC123\r\n"
        b"\tfor <reader@example.com>; " + str(date).encode("ascii") + b"\r\n" + data
    )


def plain_twin(data: bytes) -> bytes:
    """The same headers (and hop) with a one-line plain-text body instead of the content."""
    head = data.partition(b"\r\n\r\n")[0]
    kept: list[bytes] = []
    dropping = False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        dropping = line.split(b":", 1)[0].strip().lower() in _DROP
        if not dropping:
            kept.append(line)
    kept += [b"MIME-Version: 1.0", b'Content-Type: text/plain; charset="utf-8"']
    return b"\r\n".join(kept) + b"\r\n\r\nThanks for reading.\r\n"


def score_all(messages: list[bytes], home: Path) -> Iterator[tuple[float, dict[str, float]]]:
    """(score, {rule: points}) for each message, in order, from one `spamassassin` run."""
    box_path = home / "in.mbox"
    box = mailbox.mbox(box_path)
    for i, data in enumerate(messages):
        box.add(b"X-Sample: %d\r\n" % i + data)  # spamassassin --mbox may reorder them
    box.close()
    done = subprocess.run(
        ["spamassassin", "-t", "-L", "--mbox"],
        stdin=box_path.open("rb"),
        capture_output=True,
        check=True,
        env={**os.environ, "HOME": str(home)},
        timeout=600,
    )
    out = done.stdout.decode("utf-8", "replace").replace("\r\n", "\n")
    # points per rule, from the report tables -t appends
    points = {
        m.group(2): float(m.group(1))
        for m in re.finditer(r"^\s*(-?\d+\.\d+)\s+([A-Z0-9_]+)\s", out, re.M)
    }
    chunks = re.split(r"^From MAILER-DAEMON .*\n", out, flags=re.M)[1:]
    assert len(chunks) == len(messages), done.stderr.decode()[-2000:]
    order = [re.search(r"^X-Sample: (\d+)$", c, re.M) for c in chunks]
    ordered = sorted(zip((int(m.group(1)) if m else -1 for m in order), chunks, strict=True))
    assert [i for i, _ in ordered] == list(range(len(messages)))
    for _, chunk in ordered:
        status = re.search(
            r"^X-Spam-Status: \w+, score=(-?[\d.]+) required=[\d.]+ tests=(.*?)\s+autolearn",
            chunk,
            re.M | re.S,
        )
        assert status is not None, chunk[:500]
        names = [n for n in re.split(r"[,\s]+", status.group(2)) if re.fullmatch(r"[A-Z0-9_]+", n)]
        yield float(status.group(1)), {n: points.get(n, 0.0) for n in names}


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("samples")
    with RecordingSMTPServer() as server:
        settings: Settings = sample_settings(
            root / "project", {"SLICE_SECRET_KEY": "spam-test-secret-0123456789"}, server
        )
        with Store.open(settings.database_url) as store:
            return {k: crlf(v) for k, v in capture_all(settings, store, server).items()}


def test_each_email_scores_under_two_points_above_a_plain_one(
    captured: dict[str, bytes], tmp_path: Path
) -> None:
    cases = [(kind, hop) for kind in KINDS for hop in ("as captured", "relay without rDNS")]
    messages: list[bytes] = []
    for kind, hop in cases:
        data = captured[kind] if hop == "as captured" else no_rdns_hop(captured[kind])
        messages += [data, plain_twin(data)]
    scores = list(score_all(messages, tmp_path))
    problems = []
    for i, (kind, hop) in enumerate(cases):
        (score, rules), (plain, plain_rules) = scores[2 * i], scores[2 * i + 1]
        own = {r: p for r, p in rules.items() if r not in plain_rules}
        print(
            f"{kind:>12} {hop:<18} {score:5.1f} (plain {plain:4.1f}, +{score - plain:.1f}) "
            f"own rules: {', '.join(f'{r} {p:+.1f}' for r, p in own.items()) or 'none'}; "
            f"both: {', '.join(sorted(plain_rules)) or 'none'}"
        )
        if score - plain >= MAX_ABOVE_PLAIN:
            problems.append(f"{kind} {hop}: {score} vs {plain} ({own})")
    assert not problems, problems


def test_the_plain_twin_keeps_the_headers_and_drops_the_content(
    captured: dict[str, bytes],
) -> None:
    data = no_rdns_hop(captured["welcome"])
    twin = BytesHeaderParser(policy=compat32).parsebytes(plain_twin(data))
    original = BytesHeaderParser(policy=compat32).parsebytes(data)
    for name in ("Received", "From", "To", "Subject", "Date", "List-Unsubscribe", "List-Id"):
        assert twin[name] == original[name]
    assert twin.get_content_type() == "text/plain"
