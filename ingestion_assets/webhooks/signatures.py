"""Webhook signature verification, one function per vendor style.

Every style signs the exact request body with HMAC-SHA256 and a shared secret:

- ``stripe``: ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`` over ``"<t>.<body>"``;
  ``t`` must be within the tolerance (5 minutes by default) of the receiver's clock, so a
  captured request cannot be replayed later.
- ``shopify``: ``X-Shopify-Hmac-Sha256: <base64>`` over the body.
- ``github``: ``X-Hub-Signature-256: sha256=<hex>`` over the body.
- ``hmac``: a header named in YAML holding ``<prefix><hex or base64>`` over the body.

Several secrets may be valid at once (rotation): a signature made with any of them is
accepted. Digests are compared with :func:`hmac.compare_digest`. No message here contains a
secret or a signature. This module imports nothing from Dagster.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence


class SignatureError(Exception):
    """A request whose signature is missing, malformed, stale or wrong.

    Attributes:
        status: the HTTP status to answer (400 malformed or stale, 401 missing or wrong).
        reason: a short text safe to log and return (no secret, no signature).
    """

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _digest(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()


def _any_match(candidates: Sequence[bytes], secrets: Sequence[str], message: bytes) -> bool:
    matched = False
    for secret in secrets:
        expected = _digest(secret, message)
        for candidate in candidates:
            # No early exit: every comparison runs, each in constant time.
            matched |= hmac.compare_digest(expected, candidate)
    return matched


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    return value


def verify_stripe(
    headers: Mapping[str, str], body: bytes, secrets: Sequence[str],
    tolerance_seconds: float = 300, now: float | None = None,
) -> None:
    value = _header(headers, "Stripe-Signature")
    if not value:
        raise SignatureError(401, "missing Stripe-Signature header")
    timestamp: str | None = None
    candidates: list[bytes] = []
    for item in value.split(","):
        key, _, val = item.strip().partition("=")
        if key == "t":
            timestamp = val
        elif key == "v1":
            try:
                candidates.append(bytes.fromhex(val))
            except ValueError:
                raise SignatureError(400, "malformed Stripe-Signature (v1 is not hex)") from None
    if timestamp is None or not timestamp.isdigit() or not candidates:
        raise SignatureError(400, "malformed Stripe-Signature (needs t= and v1=)")
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > tolerance_seconds:
        raise SignatureError(
            400, f"stale Stripe-Signature timestamp (outside {tolerance_seconds:g} s)"
        )
    if not _any_match(candidates, secrets, timestamp.encode() + b"." + body):
        raise SignatureError(401, "Stripe-Signature does not match")


def _verify_body_hmac(
    headers: Mapping[str, str], body: bytes, secrets: Sequence[str], header: str,
    encoding: str, prefix: str,
) -> None:
    value = _header(headers, header)
    if not value:
        raise SignatureError(401, f"missing {header} header")
    value = value.strip()
    if prefix:
        if not value.startswith(prefix):
            raise SignatureError(400, f"malformed {header} (expected the prefix {prefix!r})")
        value = value[len(prefix):]
    try:
        candidate = (
            base64.b64decode(value, validate=True) if encoding == "base64" else bytes.fromhex(value)
        )
    except (ValueError, binascii.Error):
        raise SignatureError(400, f"malformed {header} (not {encoding})") from None
    if not _any_match([candidate], secrets, body):
        raise SignatureError(401, f"{header} does not match")


def verify(
    style: str, headers: Mapping[str, str], body: bytes, secrets: Sequence[str], *,
    header: str | None = None, encoding: str = "hex", prefix: str = "",
    tolerance_seconds: float = 300, now: float | None = None,
) -> None:
    """Check one request's signature; raises :class:`SignatureError` when it fails."""
    if not secrets:
        raise SignatureError(401, "no signing secret configured")
    if style == "stripe":
        verify_stripe(headers, body, secrets, tolerance_seconds, now)
    elif style == "shopify":
        _verify_body_hmac(headers, body, secrets, "X-Shopify-Hmac-Sha256", "base64", "")
    elif style == "github":
        _verify_body_hmac(headers, body, secrets, "X-Hub-Signature-256", "hex", "sha256=")
    elif style == "hmac":
        if not header:
            raise ValueError("the hmac style needs a header name")
        _verify_body_hmac(headers, body, secrets, header, encoding, prefix)
    else:
        raise ValueError(f"unknown signature style {style!r}")


def sign(
    style: str, body: bytes, secret: str, *, header: str | None = None, encoding: str = "hex",
    prefix: str = "", timestamp: int | None = None,
) -> dict[str, str]:
    """The signature header(s) a sender of ``style`` would attach (tests and the bench)."""
    if style == "stripe":
        t = int(time.time()) if timestamp is None else int(timestamp)
        mac = _digest(secret, str(t).encode() + b"." + body).hex()
        return {"Stripe-Signature": f"t={t},v1={mac}"}
    mac_bytes = _digest(secret, body)
    if style == "shopify":
        return {"X-Shopify-Hmac-Sha256": base64.b64encode(mac_bytes).decode()}
    if style == "github":
        return {"X-Hub-Signature-256": "sha256=" + mac_bytes.hex()}
    if style == "hmac":
        text = base64.b64encode(mac_bytes).decode() if encoding == "base64" else mac_bytes.hex()
        return {str(header): prefix + text}
    raise ValueError(f"unknown signature style {style!r}")
