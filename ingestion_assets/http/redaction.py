"""Redaction of secrets from URLs, headers, log lines, exceptions and returned objects.

Two complementary mechanisms, because neither alone is enough:

* **By name**: values of headers and query/form parameters whose name marks them as
  secret (``Authorization``, ``api_key``, ``access_token``, ...) are replaced, whatever
  the value is. This catches secrets the core never saw, such as a token a server echoes
  back in a ``Link`` header.
* **By value**: every auth object registers the secret values it holds
  (:func:`register_secret`); :func:`redact` replaces any occurrence of them, also in
  their URL-encoded and base64 (HTTP basic) forms, anywhere in a string. This catches a
  secret in an unexpected place, such as an error body quoting the key back.

:func:`redact` is applied to everything the core logs, raises or returns, and a
:class:`RedactingFilter` on the ``ingestion_assets.http`` logger is the last safety net.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

MASK = "***"

# Header and parameter names whose value is always a secret (compared lowercased).
SENSITIVE_NAMES = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "api_key",
        "apikey",
        "key",
        "access_token",
        "refresh_token",
        "id_token",
        "token",
        "client_secret",
        "password",
        "passwd",
        "secret",
        "signature",
        "sig",
        "x-shopify-access-token",
        "x-auth-token",
        "x-access-token",
        "private-token",
        "hapikey",
    }
)
# Substrings that mark a name as secret-bearing (``X-Custom-Api-Key``, ``my_token``).
_SENSITIVE_PARTS = ("token", "secret", "password", "api-key", "api_key", "apikey", "auth")

# Record fields (columns) whose values are credentials. Narrower than the header rule:
# "author", "key" or "signature_date" columns are data, not secrets.
_SENSITIVE_COLUMN_NAMES = SENSITIVE_NAMES - {"key", "sig", "signature"}
_SENSITIVE_COLUMN_PARTS = (
    "token", "secret", "password", "passwd", "api_key", "api-key", "apikey", "authorization",
    "credential", "cookie", "private_key", "private-key",
)

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None

# "Bearer abc", "token abc", "Basic abc=" inside free text (e.g. a repr of headers).
_SCHEME_RE = re.compile(
    r"\b(Bearer|bearer|Basic|basic)\s+([A-Za-z0-9._~+/=\-]{6,})"
    # GitHub's "token <pat>": only a credential-looking word (has a digit, 12+ chars),
    # so prose like "token endpoint" stays readable.
    r"|\b(token|Token)\s+((?=[A-Za-z0-9._~+/=\-]*\d)[A-Za-z0-9._~+/=\-]{12,})"
)
_URL_RE = re.compile(r"https?://[^\s'\"<>]+")


def is_sensitive_name(name: str) -> bool:
    """True when a header or parameter of this name carries a secret."""
    lowered = name.lower()
    if lowered in SENSITIVE_NAMES:
        return True
    return any(part in lowered for part in _SENSITIVE_PARTS)


def is_sensitive_column(name: str) -> bool:
    """True when a record field (a table column) of this name holds a credential.

    Nested and flattened names count by any part: ``headers.Authorization``,
    ``request__api_key``.
    """
    lowered = str(name).lower()
    if lowered in _SENSITIVE_COLUMN_NAMES:
        return True
    return any(part in lowered for part in _SENSITIVE_COLUMN_PARTS)


def redact_record(value: Any) -> Any:
    """A copy of a record (or any JSON-like value) safe to show: the values of fields named
    like credentials are masked, registered secrets masked everywhere else."""
    if isinstance(value, Mapping):
        return {
            k: (MASK if is_sensitive_column(str(k)) and v is not None else redact_record(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_record(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return redact_text(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, str):
        return redact_text(value)
    return value


def register_secret(*values: str | bytes | None) -> None:
    """Remember secret values so that :func:`redact` masks them wherever they appear.

    The URL-encoded forms are registered too. Empty values are ignored.
    """
    global _pattern
    added = False
    with _lock:
        for value in values:
            if value is None:
                continue
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            value = str(value)
            if not value:
                continue
            for form in {value, quote(value, safe=""), quote_plus(value)}:
                if form not in _secrets:
                    _secrets.add(form)
                    added = True
        if added:
            # Longest first, so a secret containing another is masked whole.
            ordered = sorted(_secrets, key=len, reverse=True)
            _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def register_basic_credentials(username: str, password: str) -> None:
    """Register an HTTP basic pair: both parts and the base64 header value."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    register_secret(password, token)


def registered_secret_count() -> int:
    """How many secret forms are registered (for tests and diagnostics)."""
    with _lock:
        return len(_secrets)


def _mask_values(text: str) -> str:
    pattern = _pattern
    if pattern is not None and text:
        text = pattern.sub(MASK, text)
    return text


def redact_url(url: str) -> str:
    """Mask user info and secret query parameters of a URL, then any registered secret."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return _mask_values(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_sensitive_name(k) for k, _ in pairs):
            query = urlencode(
                [(k, MASK if is_sensitive_name(k) else v) for k, v in pairs], safe="*[]:,"
            )
    rebuilt = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return _mask_values(rebuilt)


def redact_headers(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    """A plain dict copy of headers with secret values masked."""
    if not headers:
        return {}
    return {k: (MASK if is_sensitive_name(str(k)) else redact(v)) for k, v in headers.items()}


def redact_text(text: str) -> str:
    """Mask registered secrets, auth schemes and secret URL parameters in free text."""
    if not text:
        return text
    if "://" in text:
        text = _URL_RE.sub(lambda m: redact_url(m.group(0)), text)
    text = _mask_values(text)
    if "earer" in text or "asic" in text or "oken" in text:
        text = _SCHEME_RE.sub(lambda m: f"{m.group(1) or m.group(3)} {MASK}", text)
    return text


def redact(value: Any) -> Any:
    """Return a copy of ``value`` with every secret masked.

    Strings are scanned for registered secrets, ``Bearer``/``Basic`` credentials and
    secret URL parameters; mappings have the values of secret-named keys masked and the
    rest redacted recursively; sequences are redacted element-wise; bytes are decoded.
    Other objects are returned unchanged.
    """
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes | bytearray):
        return redact_text(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, Mapping):
        return {
            k: (MASK if isinstance(k, str) and is_sensitive_name(k) else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        items = [redact(v) for v in value]
        return type(value)(items) if not isinstance(value, list) else items
    return value


def contains_secret(text: str, secrets: Iterable[str]) -> bool:
    """True when any of ``secrets`` (or its URL-encoded form) occurs in ``text``."""
    for secret in secrets:
        if not secret:
            continue
        for form in (secret, quote(secret, safe=""), quote_plus(secret)):
            if form in text:
                return True
    return False


class RedactingFilter(logging.Filter):
    """Logging filter that renders the message and masks every secret in it.

    Installed on the ``ingestion_assets.http`` logger, so even a careless log call in the
    core cannot leak a secret to any handler.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not break the caller
            message = str(record.msg)
        record.msg = redact_text(message)
        record.args = None
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


def get_logger(name: str = "ingestion_assets.http") -> logging.Logger:
    """The core's logger, with the redacting filter installed once."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    return logger
