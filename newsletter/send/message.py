"""One issue, encoded once; each reader's message is the pre-encoded bytes with their values filled in.

`IssueMessage` holds the issue's body as pieces (`newsletter.send.encoding`)
made when the send starts, and per reader fills in the slots, the headers
and, when a key is set, the DKIM signature. Because every piece ends on a line
boundary, DKIM's relaxed body canonicalization is also done once per piece
(`Piece.canonical`), and a message's body hash is one SHA-256 over the joined
pieces.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import re
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import partial

from newsletter.core.errors import SendError
from newsletter.issue.linkcheck import links_in
from newsletter.issue.outbox import (
    UNSUBSCRIBE_URL,
    IssueFolder,
    RenderedIssue,
    resolve_links,
)
from newsletter.readers.addresses import (
    check_header_value,
    fold_header,
    list_id_value,
    parse_address,
)
from newsletter.readers.tokens import Tokens
from newsletter.send.dkim import DkimSigner, canonical_body
from newsletter.send.encoding import (
    FIRST_NAME_FALLBACK,
    Piece,
    const_piece,
    dot_stuff,
    encode_part,
    header_line,
    known_first_name,
    qp_encode,
    safe_url,
    to_header,
)


@dataclass(frozen=True)
class Reader:
    """Whom one message goes to: what the ledger knows about a subscriber."""

    uid: str
    email: str
    name: str = ""


@dataclass(frozen=True)
class ListHeaders:
    """What every message of the list carries besides the issue: sender, list, links, key."""

    from_address: str
    reply_to: str
    list_name: str
    list_id: str
    unsubscribe_mailto: str
    base_url: str
    domain: str
    secret_key: str
    bounce_address: str = ""  # the envelope sender; empty: from_address
    verp: bool = True  # a signed token per message in the envelope sender
    feedback_id: str = ""  # the sender id of a Feedback-ID header; empty: none


class IssueMessage:
    """An issue ready to send: build once with `from_outbox`, then `render` per reader."""

    def __init__(
        self,
        *,
        issue_id: str,
        subject: str,
        text: str,
        html_body: str,
        from_address: str,
        reply_to: str,
        list_name: str,
        list_id: str,
        unsubscribe_mailto: str,
        base_url: str,
        tokens: Tokens,
        message_key: bytes,
        domain: str,
        signer: DkimSigner | None = None,
        boundary: str | None = None,
        greeting: str = RenderedIssue.greeting,
        greeting_no_name: str = RenderedIssue.greeting_no_name,
        bounce_address: str = "",
        verp: bool = True,
        feedback_id: str = "",
    ) -> None:
        self.issue_id = issue_id
        self._date: tuple[int, bytes] = (-1, b"")
        self.links: list[str] = []  # every link of the message (set by `from_outbox`)
        self._greeting = (greeting, greeting_no_name)
        self.subject = check_header_value(subject, "subject")
        self.signer = signer
        self.domain = domain
        self._tokens = tokens
        self._key = message_key
        self._unsubscribe_base = safe_url(base_url, "web.base_url") + "/unsubscribe/"
        self._mailto = "<mailto:" + safe_url(unsubscribe_mailto, "unsubscribe_mailto")
        self._mailto += "?subject=unsubscribe%20"
        sender = parse_address(from_address, "newsletter.from_address")
        self.envelope_from = sender.addr_spec
        if bounce_address:
            self.envelope_from = parse_address(bounce_address, "inbound.bounce_address").addr_spec
        self._verp = verp
        # "=_" never occurs in quoted-printable text, so the boundary cannot clash; it is
        # derived from the content so a dry run and the real send write the same bytes.
        digest = hashlib.sha256(f"{issue_id}\0{text}\0{html_body}".encode()).hexdigest()
        self.boundary = boundary or "=_slice_" + digest[:24]

        # Written from the parsed address so a name with RFC 5322 specials is quoted: unquoted,
        # "Weekly (demo) <a@b>" reads as "Weekly" plus a comment, and mail clients drop "(demo)".
        top = [header_line("From", str(sender)), header_line("Subject", self.subject)]
        tail: list[bytes] = []
        if reply_to:
            tail.append(
                header_line("Reply-To", str(parse_address(reply_to, "newsletter.reply_to")))
            )
        tail.append(fold_header("List-Id", list_id_value(list_name, list_id)).encode("ascii"))
        if feedback_id:
            label = re.sub(r"[^0-9A-Za-z-]", "-", issue_id)
            tail.append(header_line("Feedback-ID", f"{label}:issue:{feedback_id}"))
        self._top = top
        self._tail = tail
        self._post = [
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
            b"Precedence: bulk\r\n",
            b"Auto-Submitted: auto-generated\r\n",
            b"MIME-Version: 1.0\r\n",
            b'Content-Type: multipart/alternative;\r\n boundary="'
            + self.boundary.encode("ascii")
            + b'"\r\n',
        ]
        delimiter = b"--" + self.boundary.encode("ascii")
        part_head = (
            b'\r\nContent-Type: text/%s; charset="utf-8"\r\n'
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        )
        self.pieces: list[Piece] = [
            const_piece(delimiter + part_head % b"plain"),
            *encode_part(text, is_html=False),
            const_piece(b"\r\n" + delimiter + part_head % b"html"),
            *encode_part(html_body, is_html=True),
            const_piece(b"\r\n" + delimiter + b"--\r\n"),
        ]

    # --- building -------------------------------------------------------

    @classmethod
    def from_outbox(
        cls,
        folder: IssueFolder,
        headers: ListHeaders,
        *,
        signer: DkimSigner | None = None,
        subject_prefix: str = "",
    ) -> IssueMessage:
        """Read the issue's rendered files, resolve their links, and encode them once."""
        rendered = folder.read_rendered()
        try:
            text = folder.text.read_text(encoding="utf-8")
            html_body = folder.email_html.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise SendError(
                f"{folder.root}: a rendered file is not UTF-8 ({exc.reason}); run `slice compose` again."
            ) from None
        # the site's links follow the base URL in use now, not the one at compose time
        base_url = safe_url(headers.base_url, "web.base_url")
        text, html_body = resolve_links(text, base_url), resolve_links(html_body, base_url)
        links = links_in(html_body, text)
        if UNSUBSCRIBE_URL not in html_body or UNSUBSCRIBE_URL not in text:
            raise SendError(
                f"issue {folder.issue_id} has no unsubscribe link ({UNSUBSCRIBE_URL} missing in "
                f"email.html or issue.txt); every email must have one: run `slice compose` again."
            )
        key = headers.secret_key
        message = cls(
            issue_id=folder.issue_id,
            subject=subject_prefix + rendered.subject,
            text=text,
            html_body=html_body,
            from_address=headers.from_address,
            reply_to=headers.reply_to,
            list_name=headers.list_name,
            list_id=headers.list_id,
            unsubscribe_mailto=headers.unsubscribe_mailto,
            base_url=headers.base_url,
            tokens=Tokens(key),
            message_key=hashlib.sha256(b"slice.message-id.v1\0" + key.encode()).digest(),
            domain=headers.domain,
            signer=signer,
            greeting=rendered.greeting,
            greeting_no_name=rendered.greeting_no_name,
            bounce_address=headers.bounce_address,
            verp=headers.verp,
            feedback_id=headers.feedback_id,
        )
        message.links = links
        return message

    # --- per reader -----------------------------------------------------

    def message_id(self, reader_uid: str) -> str:
        """The same Message-ID for the same (issue, reader), on every attempt and every run."""
        digest = hmac.new(
            self._key, f"{self.issue_id}\0{reader_uid}".encode(), hashlib.sha256
        ).hexdigest()[:24]
        label = re.sub(r"[^0-9A-Za-z-]", "-", self.issue_id)
        return f"<{label}.{digest}@{self.domain}>"

    def envelope_sender(self, delivery_id: int | None) -> str:
        """The Return-Path of one message: ``bounces+<delivery id>-<sig>@domain`` (VERP).

        A bounce comes back to this address, so it names the message it is about with
        a signature nobody without the key can make; proofs (no delivery) and lists with
        VERP turned off use the plain address.
        """
        if delivery_id is None or not self._verp:
            return self.envelope_from
        local, _, domain = self.envelope_from.rpartition("@")
        return f"{local}+{self._tokens.bounce_token(delivery_id)}@{domain}"

    def unsubscribe_url(self, reader_uid: str) -> str:
        return self._unsubscribe_base + self._tokens.unsubscribe_token(reader_uid)

    def render(self, reader: Reader, *, now: datetime, message_id: str | None = None) -> bytes:
        """The message for one reader, exactly as it goes on the wire."""
        headers, encoded = self._fill(reader, now=now, message_id=message_id)
        if self.signer is not None:
            headers.insert(0, self._signature(headers, encoded, now))
        body = b"".join(encoded[p.slot] if p.slot else p.raw for p in self.pieces)
        return b"".join(headers) + b"\r\n" + body

    async def render_wire(
        self,
        reader: Reader,
        *,
        now: datetime,
        executor: Executor | None = None,
        message_id: str | None = None,
    ) -> bytes:
        """The message as DATA carries it: CRLF line ends and dot-stuffed, ready to write.

        This is `render`'s message with SMTP's transparency applied once here, so the
        40-odd KB of an issue need not be scanned again for every reader. The DKIM
        signature (made on ``executor`` when given: hashing and RSA free the GIL) is
        over the message itself, as the receiver sees it. ``message_id``: the reader's
        `message_id`, when the caller has it already.
        """
        headers, encoded = self._fill(reader, now=now, message_id=message_id)
        if self.signer is not None:
            if executor is None:
                headers.insert(0, self._signature(headers, encoded, now))
            else:
                loop = asyncio.get_running_loop()
                sign = partial(self._signature, headers, encoded, now)
                headers.insert(0, await loop.run_in_executor(executor, sign))
        stuffed = {slot: dot_stuff(value) for slot, value in encoded.items()}
        body = b"".join(stuffed[p.slot] if p.slot else p.wire for p in self.pieces)
        return b"".join(headers) + b"\r\n" + body

    def _fill(
        self, reader: Reader, *, now: datetime, message_id: str | None
    ) -> tuple[list[bytes], dict[str, bytes]]:
        token = self._tokens.unsubscribe_token(reader.uid)
        url = self._unsubscribe_base + token
        known = known_first_name(reader.name)
        name = known or FIRST_NAME_FALLBACK
        with_name, no_name = self._greeting
        greeting = with_name.replace("{name}", known) if known else no_name
        values = {
            "url": url,
            "url_html": html.escape(url),
            "name": name,
            "name_html": html.escape(name),
            "greeting": greeting,
            "greeting_html": html.escape(greeting),
        }
        encoded = {slot: qp_encode(value) for slot, value in values.items()}
        headers = [
            *self._top,
            to_header(reader.email, reader.name),
            self._date_line(now),
            b"Message-ID: " + (message_id or self.message_id(reader.uid)).encode("ascii") + b"\r\n",
            *self._tail,
            b"List-Unsubscribe: <"
            + url.encode("ascii")
            + b">,\r\n "
            + self._mailto.encode("ascii")
            + token.encode("ascii")
            + b">\r\n",
            *self._post,
        ]
        return headers, encoded

    def _date_line(self, now: datetime) -> bytes:
        """The Date: header (whole seconds), made once per second rather than per message."""
        second = int(now.timestamp())
        if second != self._date[0]:
            # a numeric zone (RFC 5322 3.3), "+0000", not the obsolete "GMT"
            when = format_datetime(now.astimezone(UTC).replace(microsecond=0))
            self._date = (second, b"Date: " + when.encode("ascii") + b"\r\n")
        return self._date[1]

    def _signature(self, headers: list[bytes], encoded: dict[str, bytes], now: datetime) -> bytes:
        assert self.signer is not None
        canon = (canonical_body(encoded[p.slot]) if p.slot else p.canonical for p in self.pieces)
        body_hash = hashlib.sha256(b"".join(canon)).digest()
        return self.signer.sign(headers, body_hash, timestamp=int(now.timestamp()))
