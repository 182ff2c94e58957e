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

A clock can be passed in (``clock=``) so that tests can move time forward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from itsdangerous import (
    BadData,
    SignatureExpired,
    TimestampSigner,
    URLSafeSerializer,
    URLSafeTimedSerializer,
)

from newsletter.core.errors import TokenError, TokenExpiredError

_CONFIRM = "slice.confirm.v1"
_UNSUBSCRIBE = "slice.unsubscribe.v1"
_FORM = "slice.form.v1"


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

    def confirm_token(self, uid: str, nonce: str) -> str:
        return str(self._confirm.dumps([uid, nonce]))

    def read_confirm(self, token: str, *, max_age: timedelta) -> ConfirmClaim:
        """The claim in a confirm token. Raises TokenExpiredError or TokenError."""
        try:
            payload = self._confirm.loads(token, max_age=int(max_age.total_seconds()))
        except SignatureExpired:
            raise TokenExpiredError("this confirmation link has expired") from None
        except (BadData, OverflowError, OSError, ValueError):
            # a bad signature, or signed for another purpose (a payload or timestamp it never makes)
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
        except BadData:  # a bad signature, or a payload signed for another purpose
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
        except (BadData, OverflowError, OSError, ValueError):
            # a bad signature, or signed for another purpose (a payload or timestamp it never makes)
            raise TokenError("this form did not come from this site") from None
        if payload != "signup":
            raise TokenError("this form did not come from this site")
