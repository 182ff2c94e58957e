"""Signed, URL-safe tokens for the links in emails.

Every token is an HMAC-signed payload (itsdangerous) with a salt per purpose,
so a token made for one purpose never passes as another. Payloads carry the
subscriber's random ``uid``, never a database id.

- Confirm tokens carry a timestamp and the subscriber's current
  ``confirm_nonce``: they expire, and they work once (confirming clears the
  nonce; sending a new link replaces it).
- Unsubscribe tokens never expire, so the link in a years-old email still works.
- Form tokens go in the signup form: they prove a submission came from a page
  this server rendered recently, with no cookie.
- Bounce (VERP) tokens go in the envelope sender of each issue message,
  ``bounces+<delivery id>-<signature>@domain``: a bounce names the delivery it is
  about, and nobody without the key can name one.

A clock can be passed in (``clock=``) so that tests can move time forward.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from itsdangerous import (
    BadSignature,
    SignatureExpired,
    TimestampSigner,
    URLSafeSerializer,
    URLSafeTimedSerializer,
)

from newsletter.core.errors import TokenError, TokenExpiredError

_CONFIRM = "slice.confirm.v1"
_UNSUBSCRIBE = "slice.unsubscribe.v1"
_FORM = "slice.form.v1"
_BOUNCE = b"slice.bounce.v1"
_BOUNCE_TOKEN = re.compile(r"^([0-9]{1,18})-([a-z2-7]{13})$")


def _signer_with_clock(clock: Callable[[], datetime]) -> type[TimestampSigner]:
    class ClockSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(clock().timestamp())

    return ClockSigner


@dataclass(frozen=True)
class ConfirmClaim:
    uid: str
    nonce: str


class Tokens:
    """Makes and reads the tokens; the only holder of the secret key."""

    def __init__(self, secret_key: str, *, clock: Callable[[], datetime] | None = None) -> None:
        if not secret_key:
            raise TokenError("no secret key: set SLICE_SECRET_KEY")
        timed: dict[str, Any] = {}
        if clock is not None:
            timed["signer"] = _signer_with_clock(clock)
        self._confirm = URLSafeTimedSerializer(secret_key, salt=_CONFIRM, **timed)
        self._unsubscribe = URLSafeSerializer(secret_key, salt=_UNSUBSCRIBE)
        self._form = URLSafeTimedSerializer(secret_key, salt=_FORM, **timed)
        self._bounce_key = hashlib.sha256(_BOUNCE + b"\0" + secret_key.encode()).digest()

    def confirm_token(self, uid: str, nonce: str) -> str:
        return str(self._confirm.dumps([uid, nonce]))

    def read_confirm(self, token: str, *, max_age: timedelta) -> ConfirmClaim:
        """The claim in a confirm token. Raises TokenExpiredError or TokenError."""
        try:
            payload = self._confirm.loads(token, max_age=int(max_age.total_seconds()))
        except SignatureExpired:
            raise TokenExpiredError("this confirmation link has expired") from None
        except BadSignature:
            raise TokenError("this confirmation link is not valid") from None
        if not (
            isinstance(payload, list)
            and len(payload) == 2
            and all(isinstance(p, str) for p in payload)
        ):
            raise TokenError("this confirmation link is not valid")
        return ConfirmClaim(uid=payload[0], nonce=payload[1])

    def unsubscribe_token(self, uid: str) -> str:
        return str(self._unsubscribe.dumps(uid))

    def read_unsubscribe(self, token: str) -> str:
        """The subscriber uid in an unsubscribe token. Raises TokenError."""
        try:
            payload = self._unsubscribe.loads(token)
        except BadSignature:
            raise TokenError("this unsubscribe link is not valid") from None
        if not isinstance(payload, str):
            raise TokenError("this unsubscribe link is not valid")
        return payload

    def form_token(self) -> str:
        """A token for a form this server renders; see `read_form_token`."""
        return str(self._form.dumps("signup"))

    def read_form_token(self, token: str, *, max_age: timedelta) -> None:
        """Check a form token. Raises TokenExpiredError or TokenError."""
        try:
            payload = self._form.loads(token, max_age=int(max_age.total_seconds()))
        except SignatureExpired:
            raise TokenExpiredError("this form has expired") from None
        except BadSignature:
            raise TokenError("this form did not come from this site") from None
        if payload != "signup":
            raise TokenError("this form did not come from this site")

    # --- bounce tokens ------------------------------------------------------
    # Hand-written rather than itsdangerous: its shortest token (payload, a dot and a
    # 27-character signature) with mixed case does not survive as an address's local
    # part, which some MTAs lower-case and which is limited to 64 characters. This one
    # is the delivery id and 65 bits of HMAC-SHA256 in lower-case base32: at most 32
    # characters, the same in any case.

    def _bounce_sig(self, delivery_id: int) -> str:
        mac = hmac.new(self._bounce_key, str(delivery_id).encode(), hashlib.sha256).digest()
        return base64.b32encode(mac[:10]).decode("ascii")[:13].lower()

    def bounce_token(self, delivery_id: int) -> str:
        """``<delivery id>-<signature>``, for the envelope sender of one issue message."""
        return f"{delivery_id}-{self._bounce_sig(delivery_id)}"

    def read_bounce(self, token: str) -> int:
        """The delivery id in a bounce token. Raises TokenError."""
        match = _BOUNCE_TOKEN.match(token.strip().lower())
        if match is None:
            raise TokenError("not a bounce token")
        delivery_id = int(match.group(1))
        if not hmac.compare_digest(self._bounce_sig(delivery_id), match.group(2)):
            raise TokenError("this bounce token is not signed with this list's key")
        return delivery_id
