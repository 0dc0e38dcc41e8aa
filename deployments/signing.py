"""How a caller signs a request to the webhook receiver, and how the receiver checks it.

The signature covers everything that decides what the receiver does with a request, and can be
checked from the headers alone, before a byte of the body is read (docs/webhook.md):

    canonical = METHOD "\\n" PATH "\\n" TIMESTAMP "\\n" BODY_SHA256      (UTF-8, no final newline)
    X-Mmflow-Signature: v2=<hex HMAC-SHA256(secret, canonical)>

- METHOD: `POST` or `GET`, upper case;
- PATH: the request path as the receiver sees it, e.g. `/v1/ingest/invoice` (no scheme, host or
  query string), so a request signed for one scenario is refused at another;
- TIMESTAMP: unix seconds in ASCII digits, also sent as `X-Mmflow-Timestamp`;
- BODY_SHA256: lower-case hex SHA-256 of the body (of no bytes for a GET), also sent as
  `X-Mmflow-Content-SHA256`; the receiver streams the body and refuses it when its hash differs.

The `v2=` prefix names the scheme. The first scheme (`sha256=<HMAC of TIMESTAMP.BODY>`) signed
neither the method nor the path, so a request could be moved to another scenario; a signature in
that form, or of any version but v2, is refused with `unsupported_signature_version`, which tells
an old client what changed instead of a bare "bad signature".

The secret is shared by the receiver and its callers; `secret_weakness` refuses ones that a
guess or a typo could produce.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from urllib.parse import quote

from pydantic import BaseModel

from mmflow.deployments.refused import Refused

TIMESTAMP_HEADER = "X-Mmflow-Timestamp"
CONTENT_SHA256_HEADER = "X-Mmflow-Content-SHA256"
SIGNATURE_HEADER = "X-Mmflow-Signature"
FILENAME_HEADER = "X-Mmflow-Filename"  # not signed: a display name only (docs/webhook.md)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MIN_SECRET_BYTES = 32
MIN_DISTINCT_SECRET_BYTES = 8  # random 32 bytes, hex or base64 use far more than this
SIGNATURE_VERSION = "v2"
SCHEME_HELP = (
    f"sign METHOD\\nPATH\\nTIMESTAMP\\nBODY_SHA256 with HMAC-SHA256 and send {TIMESTAMP_HEADER}, "
    f"{CONTENT_SHA256_HEADER} and {SIGNATURE_HEADER}: {SIGNATURE_VERSION}=<hex> (docs/webhook.md)"
)

_SIGNATURE = re.compile(rf"{SIGNATURE_VERSION}=([0-9a-f]{{64}})")
_VERSIONED = re.compile(r"(sha256|v[0-9]+)=")  # the form of every scheme, past or future
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DIGITS = re.compile(r"[0-9]{1,15}")  # ASCII only: str.isdigit() also accepts "²"


def canonical_request(method: str, path: str, timestamp: str, body_sha256: str) -> bytes:
    """The bytes a signature is made over (see the module docstring)."""
    return "\n".join((method.upper(), path, timestamp, body_sha256)).encode("utf-8")


def sign(secret: bytes, method: str, path: str, timestamp: str, body_sha256: str) -> str:
    """The `X-Mmflow-Signature` value for a request."""
    canonical = canonical_request(method, path, timestamp, body_sha256)
    return f"{SIGNATURE_VERSION}=" + hmac.new(secret, canonical, hashlib.sha256).hexdigest()


def signed_headers(
    secret: bytes,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    content_type: str | None = None,
    timestamp: float | None = None,
    filename: str | None = None,
) -> dict[str, str]:
    """The headers a caller sends with `body` to `path`: what tests, benchmarks and callers use.

    `filename` (the original file name, any Unicode) travels percent-encoded in
    `X-Mmflow-Filename`; it names the run, nothing else.
    """
    stamp = str(int(time.time() if timestamp is None else timestamp))
    body_sha256 = hashlib.sha256(body).hexdigest()
    headers = {
        TIMESTAMP_HEADER: stamp,
        CONTENT_SHA256_HEADER: body_sha256,
        SIGNATURE_HEADER: sign(secret, method, path, stamp, body_sha256),
    }
    if content_type is not None:
        headers["Content-Type"] = content_type
    if filename is not None:
        headers[FILENAME_HEADER] = quote(filename, safe="")
    return headers


def secret_weakness(secret: bytes) -> str | None:
    """Why `secret` is too weak to guard the receiver, or None when it is strong enough."""
    advice = "use at least 32 random bytes, e.g. `openssl rand -hex 32`"
    if len(secret) < MIN_SECRET_BYTES:
        return f"the secret is {len(secret)} bytes long; {advice}"
    core = secret.strip()
    if core != secret and core.isascii() and core.decode().isprintable():
        # a text secret (hex, base64, a passphrase) read with a newline or padded by accident
        return f"the secret begins or ends with whitespace (a stray newline?); {advice}"
    distinct = len(set(secret))
    if distinct < MIN_DISTINCT_SECRET_BYTES:
        return (
            f"the secret uses only {distinct} distinct characters (one character repeated, "
            f"whitespace or a short pattern); {advice}"
        )
    return None


class SignedRequest(BaseModel):
    """The signature headers of a request, well-formed and inside the time window."""

    timestamp: int
    body_sha256: str
    signature: str

    def matches(self, secret: bytes, method: str, path: str) -> bool:
        expected = sign(secret, method, path, str(self.timestamp), self.body_sha256)
        return hmac.compare_digest(expected, self.signature)


def read_signed_headers(headers: Mapping[str, str], now: float, window_s: int) -> SignedRequest:
    """The request's signature headers, or a 401 saying what is missing, malformed or late."""
    stamp = headers.get(TIMESTAMP_HEADER)
    body_sha256 = headers.get(CONTENT_SHA256_HEADER)
    signature = headers.get(SIGNATURE_HEADER)
    if not stamp or not body_sha256 or not signature:
        raise Refused(401, "missing_signature", SCHEME_HELP)
    scheme = _VERSIONED.match(signature)
    if scheme and scheme.group(1) != SIGNATURE_VERSION:
        version = scheme.group(1)
        raise Refused(
            401,
            "unsupported_signature_version",
            f"{SIGNATURE_HEADER} is a {version}= signature; this receiver checks "
            f"{SIGNATURE_VERSION}= signatures only, which also cover the method and path: "
            f"{SCHEME_HELP}",
        )
    if (
        not _SIGNATURE.fullmatch(signature)
        or not _DIGITS.fullmatch(stamp)
        or not _SHA256.fullmatch(body_sha256)
    ):
        raise Refused(401, "bad_signature", f"the signature headers are malformed; {SCHEME_HELP}")
    if abs(now - int(stamp)) > window_s:
        raise Refused(
            401,
            "stale_timestamp",
            f"the timestamp is more than {window_s} s from the receiver's clock; "
            "sign the request again with the current time",
        )
    return SignedRequest(timestamp=int(stamp), body_sha256=body_sha256, signature=signature)
