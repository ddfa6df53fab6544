"""The origin rule: credentials go only to the origins a source trusts.

An origin is (scheme, host, port), as browsers define it. A source trusts the origin of its
``base_url`` and the ones listed in ``allowed_origins``. The client checks every request it
is about to send (first page, next link, body next URL, planned page, redirect target)
against that set, *before* any credential is attached; a request for another origin fails
the fetch with :class:`~ingestion_assets.http.errors.CrossOriginError`, naming both.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from ingestion_assets.http.errors import ConfigurationError, CrossOriginError
from ingestion_assets.http.redaction import redact_url

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_key(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an absolute http(s) URL, or None when it has none."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = (parts.scheme or "").lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def origin_text(url: str) -> str:
    """The origin of a URL as ``scheme://host:port`` (for messages)."""
    key = origin_key(url)
    if key is None:
        return redact_url(url)
    scheme, host, port = key
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}"


class OriginPolicy:
    """The origins a source's credentials may be sent to.

    Args:
        base_url: The source's base URL; its origin is always allowed.
        allowed: More origins (``https://uploads.example.com``); a path after the origin
            is ignored, a value without a scheme or host is a configuration error.
    """

    def __init__(self, base_url: str, allowed: Iterable[str] = ()) -> None:
        home = origin_key(base_url)
        if home is None:
            raise ConfigurationError(f"base_url {redact_url(base_url)!r} has no http(s) origin")
        self.home = origin_text(base_url)
        self._allowed = {home}
        for value in allowed:
            key = origin_key(value)
            if key is None:
                raise ConfigurationError(
                    f"allowed_origins entry {value!r} is not an http(s) origin "
                    "(expected e.g. https://api.example.com)"
                )
            self._allowed.add(key)

    def allows(self, url: str) -> bool:
        return origin_key(url) in self._allowed

    def describe(self) -> list[str]:
        return sorted(
            f"{s}://{h}:{p}" for s, h, p in self._allowed
        )

    def check(self, url: str, *, via: str, came_from: str | None = None, **where) -> None:
        """Raise `CrossOriginError` when ``url`` is not on an allowed origin.

        Args:
            url: The URL about to be requested.
            via: What led there (``"next page link"``, ``"redirect (302)"``).
            came_from: The URL of the response that led there, if any.
            **where: ``source``/``endpoint`` for the error.
        """
        if self.allows(url):
            return
        origin = origin_text(url)
        frm = origin_text(came_from) if came_from else self.home
        raise CrossOriginError(
            f"{via} leads from {frm} to {origin}, which is not the source's origin "
            f"{self.home}; credentials are sent only to {', '.join(self.describe())}, so the "
            f"fetch stops here. If {origin} belongs to the same API, add it to the source's "
            "allowed_origins",
            url=url,
            **where,
        )
