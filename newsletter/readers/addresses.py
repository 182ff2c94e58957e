"""Email addresses and names as subscribers give them: validated, normalized, one line.

Addresses are checked with email-validator without DNS lookups. The stored form
has the domain in ASCII (IDNA), so ``bob@bücher.de`` and ``bob@xn--bcher-kva.de``
are one person; the key is that form lower-cased. Non-ASCII characters before
the ``@`` are refused: most relays cannot deliver them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.header import Header
from email.headerregistry import Address
from email.policy import Policy
from email.utils import formataddr, getaddresses

from email_validator import EmailNotValidError, validate_email

from newsletter.core.errors import (
    HeaderInjectionError,
    InvalidAddressError,
    InvalidNameError,
    SendError,
)
from newsletter.core.settings import Settings

MAX_NAME_LENGTH = 100
MAX_ADDRESS_LENGTH = 254


@dataclass(frozen=True)
class EmailAddress:
    """A validated address: as stored (ASCII domain), its unique key, and as shown."""

    email: str
    key: str
    display: str


def _has_control(text: str, *, allow_tab: bool = False) -> bool:
    return any((ord(ch) < 32 and not (allow_tab and ch == "\t")) or ord(ch) == 127 for ch in text)


def normalize_email(raw: str) -> EmailAddress:
    """Validate ``raw`` and return it normalized. Raises InvalidAddressError."""
    if _has_control(raw):
        raise InvalidAddressError(
            "the email address holds a line break or control character; type it on one line."
        )
    text = raw.strip()
    if not text:
        raise InvalidAddressError(
            "the email address is empty; enter an address like name@example.org."
        )
    if len(text) > MAX_ADDRESS_LENGTH:
        raise InvalidAddressError(
            f"the email address is too long ({len(text)} characters; at most {MAX_ADDRESS_LENGTH})."
        )
    try:
        valid = validate_email(text, check_deliverability=False, strict=True, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidAddressError(f"{text!r} is not a valid email address: {exc}") from None
    stored = valid.ascii_email or valid.normalized
    return EmailAddress(email=stored, key=stored.lower(), display=valid.normalized)


def clean_name(raw: str) -> str:
    """A subscriber's name on one line, spaces collapsed. Raises InvalidNameError."""
    if _has_control(raw, allow_tab=True):
        raise InvalidNameError("the name holds a line break or control character; use one line.")
    name = " ".join(raw.split())
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(
            f"the name is too long ({len(name)} characters; at most {MAX_NAME_LENGTH})."
        )
    return name


# --- addresses in headers: the list's own, and values that must stay on one line

_FORBIDDEN = {"\r", "\n", "\x00"}


def check_header_value(value: str, what: str) -> str:
    """Refuse a value that would break out of its header."""
    if any(ch in value for ch in _FORBIDDEN) or any(ord(ch) < 32 and ch != "\t" for ch in value):
        raise HeaderInjectionError(f"{what} holds a line break or control character; refused.")
    return value


def parse_address(value: str, what: str = "address") -> Address:
    """``'Name <a@b.c>'`` or ``'a@b.c'`` as an Address object."""
    check_header_value(value, what)
    pairs = getaddresses([value])
    if len(pairs) != 1 or "@" not in pairs[0][1]:
        raise SendError(f"{what} {value!r} is not one address like 'Name <news@example.org>'.")
    name, addr = pairs[0]
    local, _, domain = addr.rpartition("@")
    return Address(display_name=name, username=local, domain=domain)


def sender_domain(settings: Settings) -> str:
    return parse_address(settings.newsletter.from_address, "newsletter.from_address").domain


def derive_list_id(settings: Settings) -> str:
    """``newsletter.example.org`` from ``newsletter@example.org`` (RFC 2919 wants a dotted id)."""
    addr = parse_address(settings.newsletter.from_address, "newsletter.from_address")
    local = re.sub(r"[^0-9A-Za-z-]", "-", addr.username).strip("-") or "list"
    return f"{local}.{addr.domain}"


_EW_MAX = 66  # 76 less "List-Id: " and a space


def encoded_words(text: str) -> str:
    """``text`` as RFC 2047 encoded words on one line, separated by spaces.

    Each word fits a 76-character line after ``List-Id: `` (RFC 2047 section 2),
    and `fold_header` folds between them; a reader's mail program ignores the
    spaces between encoded words, so the text reads back exactly.
    """
    chunks = [""]
    for word in re.findall(r"\S+\s*|\s+", text):  # each word with the spaces after it
        if chunks[-1] and len(Header(chunks[-1] + word, "utf-8").encode(maxlinelen=998)) > _EW_MAX:
            chunks.append("")  # break where the text has a space, never inside a word
        chunks[-1] += word
    # a single word too long for one encoded word is split by the email package
    return " ".join(
        w for c in chunks for w in Header(c, "utf-8").encode(maxlinelen=_EW_MAX).split()
    )


def fold_header(name: str, value: str, *, width: int = 76) -> str:
    """``Name: value`` and CRLF, folded at spaces so that no line is longer than ``width``
    where a space allows it (a line with encoded words may not pass 76, RFC 2047)."""
    check_header_value(value, name)
    lines: list[str] = []
    line = start = f"{name}:"
    for word in value.split(" "):
        if word and len(line) + 1 + len(word) > width and line not in (start, ""):
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def quoted_phrase(text: str) -> str:
    """A display phrase fit for a structured header: quoted, or RFC 2047 when not ASCII."""
    check_header_value(text, "phrase")
    if text.isascii():
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return encoded_words(text)


def list_id_value(name: str, list_id: str) -> str:
    """``"Name" <list.id>``: the one form of List-Id in every email the list sends."""
    check_header_value(list_id, "newsletter.list_id")
    return f"{quoted_phrase(name)} <{list_id}>"


def list_id(settings: Settings) -> str:
    """The List-Id header value, the same as on issues: the setting, or derived from the sender."""
    value = settings.newsletter.list_id or derive_list_id(settings)
    return list_id_value(settings.newsletter.name, value)


def unsubscribe_mailto(settings: Settings) -> str:
    return settings.newsletter.unsubscribe_mailto or f"unsubscribe@{sender_domain(settings)}"


def named_address(name: str, email: str) -> str:
    """``Name <a@b.c>`` in ASCII wire form, the name read back exactly as given.

    A name with non-ASCII text, or with ``=?`` (which could be read as an RFC 2047
    encoded word: ``=?utf-8?q?Prize!?=`` would show as "Prize!"), is sent as one
    encoded word of the whole name, so a mail program decodes it once, to the
    literal text. Any other name is quoted when it holds specials.
    """
    check_header_value(name, "subscriber name")
    check_header_value(email, "subscriber address")
    if not name:
        return email
    if name.isascii() and "=?" not in name:
        return formataddr((name, email))
    return f"{encoded_words(name)} <{email}>"


class WireHeader(str):
    """A header value already in wire form, kept as it is by `email.message.EmailMessage`.

    A value with a ``name`` and ``fold`` is stored and written untouched
    (`email.policy.EmailPolicy.header_store_parse`), folded by `fold_header`: the
    same bytes as the issue's own header of that name.
    """

    name: str

    def __new__(cls, header: str, value: str) -> WireHeader:
        made = super().__new__(cls, check_header_value(value, header))
        made.name = header
        return made

    def fold(self, *, policy: Policy) -> str:
        return fold_header(self.name, self).replace("\r\n", policy.linesep)


class WireAddressHeader(WireHeader):
    """A To header value already in wire form (see `WireHeader`).

    The email package (Python 3.11-3.13) re-folds an address header from its parse,
    and writes an ASCII display name that looks like an encoded word as bare text,
    where mail programs decode it.
    """

    addresses: tuple[Address, ...]

    def __new__(cls, header: str, display: str, email: str) -> WireAddressHeader:  # type: ignore[misc]
        made = str.__new__(cls, named_address(display, email))
        made.name = header
        local, _, domain = email.rpartition("@")
        made.addresses = (Address(display_name=display, username=local, domain=domain),)
        return made
