"""DKIM over whole transactional messages: bodies with awkward endings still verify."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.send.dkim import DkimSigner, canonical_whole_body, load_key
from newsletter.send.notices import dkim_signed
from tests.send_support import dkim_verify, make_dkim_key

HEAD = (
    b"From: Weekly <news@example.org>\r\n"
    b"To: reader@example.org\r\n"
    b"Subject: Confirm\r\n"
    b"Date: Sat, 28 Nov 2026 00:00:00 +0000\r\n"
    b"Message-ID: <x@example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
)


@pytest.mark.parametrize(
    "body",
    [
        b"Hello\r\n",
        b"Hello\r\n\r\n\r\n",  # empty lines at the end are not part of the signed body
        b"Hello  \t \r\nthere \r\n \r\n",  # trailing white space, and a blank line of spaces
        b"Hello without an ending",
        b"",
    ],
    ids=["plain", "trailing-empty-lines", "trailing-space", "no-final-crlf", "empty"],
)
def test_signed_transactional_message_verifies(tmp_path: Path, body: bytes) -> None:
    key_path, record = make_dkim_key(tmp_path, bits=1024)
    signer = DkimSigner(key=load_key(key_path), selector="s1", domain="example.org")
    signed = dkim_signed(signer, HEAD + b"\r\n" + body, timestamp=1_790_000_000)
    assert signed.startswith(b"DKIM-Signature:")
    assert dkim_verify(signed, record)
    assert not dkim_verify(signed.replace(b"Hello", b"Hullo"), record) or b"Hello" not in body


def test_canonical_whole_body_rules() -> None:
    assert canonical_whole_body(b"a  b \r\n\r\n\r\n") == b"a b\r\n"
    assert canonical_whole_body(b"a\r\n \r\n") == b"a\r\n"
    assert canonical_whole_body(b"\r\n\r\n") == b""
    assert canonical_whole_body(b"last  ") == b"last\r\n"
