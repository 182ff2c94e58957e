"""The issue's body as pieces encoded once, and the per-reader values that go between them.

The HTML and text parts are quoted-printable encoded once (`encode_part`);
every placeholder (`newsletter.issue.outbox.PLACEHOLDERS`) becomes a slot that
starts and ends on an encoded-line boundary (a soft line break, ``=\\r\\n``,
before and after), so a reader's value is encoded on its own and dropped into
place: line lengths stay within RFC 2045's 76 characters, and the decoded text
is exactly the template with the values in it. Each piece also carries its DKIM
relaxed form and its dot-stuffed wire form, made once. Headers are folded here too.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.headerregistry import Address
from email.policy import SMTP, SMTPUTF8

from newsletter.core.errors import HeaderInjectionError
from newsletter.issue.outbox import GREETING, PLACEHOLDERS, UNSUBSCRIBE_URL
from newsletter.readers.addresses import check_header_value, fold_header, named_address
from newsletter.send.dkim import canonical_body

FIRST_NAME_FALLBACK = "there"
_SLOTS = {UNSUBSCRIBE_URL: "url", GREETING: "greeting"}  # any other placeholder: "name"
_SLOT_RE = re.compile("(" + "|".join(re.escape(p) for p in PLACEHOLDERS) + ")")
_WS = re.compile(r"\s+")
_HEADERS = SMTP.clone(max_line_length=76)  # RFC 2047: a line with encoded words, 76 at most
_TITLES = frozenset({"dr", "dr.", "prof", "prof.", "mr", "mr.", "ms", "ms.", "mrs", "mrs."})


def known_first_name(name: str) -> str:
    """The name a greeting uses: the first word that is not a title; "" if there is none."""
    words = [w for w in _WS.split(name.strip()) if w]
    while len(words) > 1 and words[0].lower() in _TITLES:
        words.pop(0)
    if not words or not words[0].isprintable():
        return ""
    return words[0]


def qp_encode(text: str) -> bytes:
    """Quoted-printable for one piece: CRLF line ends, ending on a line boundary."""
    if not text:
        return b""
    encoded = binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")
    if not encoded.endswith(b"\r\n"):
        encoded += b"=\r\n"  # a soft break: the next piece starts a new encoded line
    return encoded


def dot_stuff(piece: bytes) -> bytes:
    """SMTP transparency (RFC 5321 4.5.2) for a run of whole lines: a leading "." doubled."""
    stuffed = piece.replace(b"\r\n.", b"\r\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


@dataclass(frozen=True)
class Piece:
    """A constant run of the encoded body, or (``slot`` set) a place for a reader's value.

    ``canonical`` is the run in DKIM's relaxed form; ``wire`` is it dot-stuffed for DATA.
    """

    raw: bytes
    canonical: bytes
    slot: str | None = None  # "url", "name", "greeting", each also with "_html"
    wire: bytes = b""


def encode_part(text: str, *, is_html: bool) -> list[Piece]:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    pieces: list[Piece] = []
    for i, segment in enumerate(_SLOT_RE.split(text)):
        if i % 2 == 1:
            slot = _SLOTS.get(segment, "name")
            pieces.append(Piece(b"", b"", slot + ("_html" if is_html else "")))
        elif segment:
            raw = qp_encode(segment)
            pieces.append(Piece(raw, canonical_body(raw), None, dot_stuff(raw)))
    return pieces


def const_piece(raw: bytes) -> Piece:
    return Piece(raw, canonical_body(raw), None, dot_stuff(raw))


def header_line(name: str, value: str) -> bytes:
    """One header line, folded and encoded by the email package (lines of at most 76
    characters, RFC 2047's limit for a line with encoded words)."""
    check_header_value(value, name)
    folded: str = SMTP.header_factory(name, value).fold(policy=_HEADERS)
    return folded.encode("ascii")


def safe_url(url: str, what: str) -> str:
    if any(ch.isspace() or ch in '<>"' for ch in url) or not url.isprintable():
        raise HeaderInjectionError(f'{what} {url!r} holds spaces or <>" and cannot go in a header.')
    return url


def to_header(email: str, display_name: str) -> bytes:
    """The To: line of one reader's message."""
    name = " ".join(display_name.split())
    check_header_value(email, "subscriber address")
    if email.isascii():
        value = named_address(name, email) if name.isprintable() else email
        return fold_header("To", value).encode("ascii")
    # An internationalized address (RFC 6531): UTF-8 header, sent with SMTPUTF8.
    address = Address(display_name=name, addr_spec=email)
    folded: str = SMTPUTF8.header_factory("To", address).fold(policy=SMTPUTF8)
    return folded.encode("utf-8")


def fill_placeholders(text: str, values: Callable[[str], str] | dict[str, str]) -> str:
    """The template with values in place (for tests and previews; sending uses the encoded form)."""
    lookup = values if callable(values) else values.__getitem__
    return _SLOT_RE.sub(lambda m: lookup(m.group(0)), text)
