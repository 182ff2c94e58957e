"""DKIM signing (RFC 6376), rsa-sha256 with relaxed/relaxed canonicalization.

The RSA signature comes from `cryptography` (OpenSSL); canonicalization of the
body is done per piece of the pre-encoded issue (see `newsletter.send.message`),
so a message costs one SHA-256 over its body and one RSA signature.

The tests check every signature with dkimpy's verifier, an implementation
independent of this one.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from newsletter.core.errors import ConfigError

# The headers the signature covers, in order: From, To, Cc,
# Subject, Date, Message-ID and both List-Unsubscribe headers among them; a header named
# here but absent from a message is skipped. The OVERSIGNED names are listed
# once more whether the message has them or not ("oversigning"): a header of
# that name added later, such as a Reply-To or Cc slipped in by a relay that
# wants replies, breaks the signature.
SIGNED_HEADERS = (
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "feedback-id",
    "mime-version",
    "content-type",
    "precedence",
    "auto-submitted",
)
OVERSIGNED = ("from", "subject", "reply-to", "cc", "list-unsubscribe", "list-unsubscribe-post")

_WSP_RUN = re.compile(rb"[ \t]+")
_TRAILING_WSP = re.compile(rb"[ \t]+\r\n")
_FOLD = re.compile(rb"\r\n(?=[ \t])")
_SELECTOR = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62})$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})+$")


def canonical_body(data: bytes) -> bytes:
    """Relaxed body canonicalization of whole lines (no trailing-empty-line trimming).

    The pieces of an encoded issue always end with CRLF, and the body ends with
    the closing MIME boundary, so trimming empty lines at the end never applies.
    """
    if b" " not in data and b"\t" not in data:
        return data
    return _TRAILING_WSP.sub(b"\r\n", _WSP_RUN.sub(b" ", data))


def canonical_whole_body(data: bytes) -> bytes:
    """Relaxed canonicalization of a complete body (RFC 6376, 3.4.4).

    Unlike `canonical_body`, which works on pieces of an issue, this also drops
    the empty lines at the end and ends a non-empty body with exactly one CRLF.
    """
    body = canonical_body(data).rstrip(b" \t").rstrip(b"\r\n")
    return body + b"\r\n" if body else b""


def canonical_header(line: bytes) -> bytes:
    """Relaxed header canonicalization of one raw header line (with its CRLF)."""
    name, _, value = line.partition(b":")
    value = _FOLD.sub(b"", value.rstrip(b"\r\n"))
    value = _WSP_RUN.sub(b" ", value).strip(b" ")
    return name.strip().lower() + b":" + value


class DkimSigner:
    """Signs messages for one domain and selector with an RSA key."""

    def __init__(self, *, key: rsa.RSAPrivateKey, selector: str, domain: str) -> None:
        if key.key_size < 1024:
            raise ConfigError(
                f"the DKIM key has {key.key_size} bits; receivers want at least 1024 (2048 is usual)."
            )
        if not _SELECTOR.match(selector) or not _DOMAIN.match(domain):
            raise ConfigError(
                f"DKIM selector {selector!r} or domain {domain!r} is not a DNS name; "
                "use e.g. selector 'slice1' and domain 'example.org'."
            )
        self.key = key
        self.selector = selector
        self.domain = domain

    def sign(self, headers: Sequence[bytes], body_hash: bytes, *, timestamp: int) -> bytes:
        """The DKIM-Signature header line for a message with these header lines and body hash.

        ``headers`` are raw header lines, each ending in CRLF; ``body_hash`` is the
        SHA-256 digest of the relaxed-canonical body.
        """
        by_name: dict[bytes, list[bytes]] = {}
        for line in headers:
            by_name.setdefault(line.split(b":", 1)[0].strip().lower(), []).append(line)
        names = [n for n in SIGNED_HEADERS if n.encode() in by_name]
        names += OVERSIGNED
        signed: list[bytes] = []
        used: dict[bytes, int] = {}
        for header in names:
            key = header.encode()
            found = by_name.get(key, [])
            count = used.get(key, 0)
            if count < len(found):  # the last unused instance, bottom-up (RFC 6376 5.4.2)
                signed.append(canonical_header(found[len(found) - 1 - count]) + b"\r\n")
            used[key] = count + 1
        value = (
            f" v=1; a=rsa-sha256; c=relaxed/relaxed; d={self.domain}; s={self.selector};\r\n"
            f"\tt={timestamp}; h={_fold_names(names)};\r\n"
            f"\tbh={base64.b64encode(body_hash).decode('ascii')};\r\n\tb="
        )
        head = b"DKIM-Signature:" + value.encode("ascii")
        data = b"".join(signed) + canonical_header(head)
        signature = self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        b64 = base64.b64encode(signature).decode("ascii")
        folded = "\r\n\t ".join(b64[i : i + 64] for i in range(0, len(b64), 64))
        return head + folded.encode("ascii") + b"\r\n"


def _fold_names(names: Sequence[str]) -> str:
    lines: list[str] = []
    current = ""
    for name in names:
        if current and len(current) + len(name) > 50:
            lines.append(current)
            current = ""
        current += (":" if current else "") + name
    lines.append(current)
    return ":\r\n\t ".join(lines)


def load_key(path: Path) -> rsa.RSAPrivateKey:
    """Read a PEM RSA private key; one clear error for each way this goes wrong."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"SLICE_DKIM_KEY points at {path}, which does not exist; set it to your PEM private key."
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the DKIM key {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError(
            f"the DKIM key {path} is encrypted; give Slice an unencrypted PEM "
            "(`openssl rsa -in key.pem -out plain.pem`)."
        ) from None
    except ValueError:
        raise ConfigError(
            f"{path} is not a PEM private key; make one with `openssl genrsa -out dkim.pem 2048`."
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"the DKIM key {path} is not an RSA key; Slice signs with rsa-sha256.")
    return key
