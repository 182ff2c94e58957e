"""What one inbound message is, and the evidence it carries about whom it concerns.

`classify` reads a message and says what kind it is (a permanent or temporary
bounce, a complaint, an automatic reply, an emailed unsubscribe request, or
something else) and what ties it to a reader. Only signed evidence is enough
to act on (see `newsletter.readers.bounces`):

- a bounce (VERP) token, ``bounces+<delivery id>-<sig>@domain``, in the
  envelope recipient, in the report's own recipient headers, or in the
  Return-Path of the message the report quotes;
- a signed unsubscribe token: in the quoted message's List-Unsubscribe (for
  complaints), or in the subject of an emailed unsubscribe request;
- the Message-ID of the quoted message, which counts only if the list sent a
  message with that id to an address the report names.

Addresses a report merely names are never enough: anyone can write a report.
Nothing here touches the database.
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses, parseaddr
from typing import cast

from flufl.bounce import all_failures

from newsletter.core.errors import NewsletterError, TokenError
from newsletter.readers.tokens import Tokens

MAX_PARTS = 200  # more MIME parts than any real report holds
MAX_DEPTH = 12  # nesting deeper than a report quoting a forwarded message

_TOKEN_IN_URL = re.compile(r"/unsubscribe/([A-Za-z0-9_\-.]+)")
_TOKEN_IN_MAILTO = re.compile(r"subject=unsubscribe(?:%20|\+|\s)+([A-Za-z0-9_\-.]+)", re.I)
_UNSUBSCRIBE_SUBJECT = re.compile(r"\bunsubscribe\b\s*([A-Za-z0-9_\-.]{16,})?", re.I)
_VERP = re.compile(r"[A-Za-z0-9._-]+\+([0-9]{1,18}-[A-Za-z2-7]{13})@", re.I)
_AUTO_SUBJECT = re.compile(
    r"^(out of (the )?office|automatic reply|auto(matic)?[- ]?(reply|response)|"
    r"abwesenheitsnotiz|absence|vacation|on leave|away from)",
    re.I,
)
_MESSAGE_ID_LINE = re.compile(r"^Message-ID:[ \t]*(<[^<>\s]{1,250}>)", re.I | re.M)
_RETURN_PATH_LINE = re.compile(r"^Return-Path:[ \t]*(<[^<>\s]{1,250}>)", re.I | re.M)
_RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "To", "X-Envelope-To")


class ReportError(NewsletterError):
    """A message too odd to read safely (a MIME bomb, say)."""


@dataclass
class Finding:
    """What one inbound message is and what ties it to a reader."""

    kind: str  # "hard", "soft", "complaint", "auto_reply", "unsubscribe", "other"
    message_id: str = ""  # the inbound message's own Message-ID
    sender: str = ""  # its From address
    addresses: list[str] = field(default_factory=list)  # addresses the report names
    delivery_ids: list[int] = field(default_factory=list)  # from valid bounce tokens
    reader_uids: list[str] = field(default_factory=list)  # from valid unsubscribe tokens
    quoted_ids: list[str] = field(default_factory=list)  # Message-IDs of the quoted message
    forged_tokens: int = 0  # token-shaped strings that failed their signature


def parse(data: bytes) -> Message:
    return email.message_from_bytes(data, policy=email.policy.compat32)


def check_shape(msg: Message) -> None:
    """Refuse a message nested too deep or with too many parts (walked without recursion)."""
    stack: list[tuple[Message, int]] = [(msg, 0)]
    parts = 0
    while stack:
        part, depth = stack.pop()
        parts += 1
        if depth > MAX_DEPTH:
            raise ReportError(f"MIME parts nested more than {MAX_DEPTH} deep; not read")
        if parts > MAX_PARTS:
            raise ReportError(f"more than {MAX_PARTS} MIME parts; not read")
        payload = part.get_payload()
        if isinstance(payload, list):
            stack.extend((cast(Message, p), depth + 1) for p in payload)


def header_text(value: object) -> str:
    """A header's value as text, RFC 2047 words decoded; '' when it cannot be."""
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value))))
    except (ValueError, LookupError, UnicodeError):
        return str(value)


def is_complaint(msg: Message) -> bool:
    return msg.get_content_type() == "multipart/report" and (
        str(msg.get_param("report-type", "")).lower() == "feedback-report"
    )


def _feedback_fields(msg: Message) -> Message | None:
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                return cast(Message, payload[0])
            if isinstance(payload, str):
                return HeaderParser().parsestr(payload.strip() + "\n\n")
    return None


def quoted_headers(msg: Message) -> Message | None:
    """The headers of the message a report quotes (message/rfc822 or text/rfc822-headers)."""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                return cast(Message, payload[0])
        if ctype in ("text/rfc822-headers", "message/global-headers"):
            raw = part.get_payload(decode=True) or b""
            return HeaderParser().parsestr(bytes(raw).decode("utf-8", "replace"))
    return None


def _addresses(values: list[str]) -> list[str]:
    found: list[str] = []
    for _, addr in getaddresses(values):
        addr = addr.strip().lower()
        if "@" in addr and addr not in found:
            found.append(addr)
    return found


class _Evidence:
    def __init__(self, finding: Finding, tokens: Tokens) -> None:
        self.finding = finding
        self.tokens = tokens

    def verp(self, text: str) -> None:
        for match in _VERP.finditer(text):
            try:
                delivery_id = self.tokens.read_bounce(match.group(1))
            except TokenError:
                self.finding.forged_tokens += 1
                continue
            if delivery_id not in self.finding.delivery_ids:
                self.finding.delivery_ids.append(delivery_id)

    def unsubscribe(self, token: str) -> None:
        try:
            uid = self.tokens.read_unsubscribe(token)
        except TokenError:
            self.finding.forged_tokens += 1
            return
        if uid not in self.finding.reader_uids:
            self.finding.reader_uids.append(uid)

    def quoted(self, quoted: Message | None, msg: Message) -> None:
        if quoted is None:  # a bounce in no standard form quotes the message as text
            for part in msg.walk():
                if part.get_content_type() == "text/plain":
                    raw = part.get_payload(decode=True) or b""
                    text = bytes(raw)[:200_000].decode("utf-8", "replace")
                    self.verp(" ".join(_RETURN_PATH_LINE.findall(text)))
                    self.finding.quoted_ids += _MESSAGE_ID_LINE.findall(text)
            return
        self.verp(str(quoted.get("Return-Path", "")))
        message_id = str(quoted.get("Message-ID", "")).strip()
        if message_id:
            self.finding.quoted_ids.append(message_id)


def failures(msg: Message) -> tuple[frozenset[bytes], frozenset[bytes]]:
    """flufl.bounce's (temporary, permanent) failures; a detector that trips over a
    malformed message makes it a `ReportError`, said in one line.

    flufl.bounce logs the traceback before it re-raises; with no logging set up,
    Python would print it on the terminal of `slice inbound`. The reason is
    recorded with the message instead.
    """
    quiet = logging.getLogger("flufl.bounce")
    quiet.propagate = False
    if not quiet.handlers:
        quiet.addHandler(logging.NullHandler())
    try:
        return all_failures(msg)
    except Exception as exc:
        why = " ".join(str(exc).split())[:150]
        raise ReportError(
            f"the bounce detectors could not read it ({exc.__class__.__name__}: {why})"
        ) from exc


def classify(data: bytes | Message, tokens: Tokens, *, recipients: Sequence[str] = ()) -> Finding:
    """What the message is and what ties it to a reader. Raises ReportError for a MIME bomb."""
    msg = parse(data) if isinstance(data, bytes) else data
    check_shape(msg)
    finding = Finding(
        kind="other",
        message_id=str(msg.get("Message-ID", "")).strip()[:300],
        sender=parseaddr(str(msg.get("From", "")))[1].strip().lower()[:300],
    )
    evidence = _Evidence(finding, tokens)
    for rcpt in recipients:
        evidence.verp(rcpt)
    for name in _RECIPIENT_HEADERS:
        for value in msg.get_all(name, []):
            evidence.verp(str(value))

    if is_complaint(msg):
        finding.kind = "complaint"
        quoted = quoted_headers(msg)
        evidence.quoted(quoted, msg)
        named: list[str] = []
        fields = _feedback_fields(msg)
        if fields is not None:
            named += [
                str(fields.get("Original-Rcpt-To", "")),
                str(fields.get("Removal-Recipient", "")),
            ]
        if quoted is not None:
            unsubscribe = str(quoted.get("List-Unsubscribe", ""))
            for match in _TOKEN_IN_URL.finditer(unsubscribe):
                evidence.unsubscribe(match.group(1))
            for match in _TOKEN_IN_MAILTO.finditer(unsubscribe):
                evidence.unsubscribe(match.group(1))
            named.append(str(quoted.get("To", "")))
        finding.addresses = _addresses(named)
        return finding

    temporary, permanent = failures(msg)
    if permanent or temporary:
        finding.kind = "hard" if permanent else "soft"
        failed = permanent or temporary
        finding.addresses = [a.decode("utf-8", "replace").strip().lower() for a in failed]
        evidence.quoted(quoted_headers(msg), msg)
        return finding

    subject = header_text(msg.get("Subject", "")).strip()
    request = _UNSUBSCRIBE_SUBJECT.search(subject)
    if request is not None and request.group(1):
        # first: a mail provider's own unsubscribe email may say Auto-Submitted
        finding.kind = "unsubscribe"
        evidence.unsubscribe(request.group(1))
        return finding
    auto = str(msg.get("Auto-Submitted", "no")).strip().lower()
    if (
        auto not in ("", "no")
        or msg.get("X-Autoreply") is not None
        or msg.get("X-Autorespond") is not None
        or str(msg.get("Precedence", "")).strip().lower() in ("auto_reply", "junk")
        or _AUTO_SUBJECT.match(subject)
    ):
        finding.kind = "auto_reply"
        return finding

    if request is not None:
        finding.kind = "unsubscribe"  # asks, but carries no token
    return finding
