"""The exceptions of the HTTP core.

Every error says what failed and where: the source, the endpoint, the (redacted) URL, the
HTTP status and a short (redacted) excerpt of the body. ``transient`` tells the caller
whether running the same fetch again later may succeed (a 503, a 429, a dropped
connection) or not (a 400, a bad key, a pagination loop); the Dagster layer maps it to a
retry policy.

Hierarchy::

    ApiError
    ├── TransportError            connection refused/reset, DNS, TLS   (transient)
    │   └── ApiTimeoutError       connect or read timeout              (transient)
    │       └── DeadlineExceededError  the request's total deadline passed (transient)
    ├── HttpStatusError           the API answered with an error status
    │   ├── ClientError           4xx other than 401/403/429           (permanent)
    │   ├── AuthenticationError   401/403, token endpoint failures     (permanent)
    │   ├── RateLimitError        429 after the rate-limit budget      (transient)
    │   │   └── WaitTooLongError  the server asks to wait past the cap (permanent)
    │   └── ServerError           5xx after the retry budget           (transient)
    ├── InvalidResponseError      200 with an error body, HTML, truncated or unparsable JSON
    │   └── BodyTooLargeError     decoded body over the size budget    (permanent)
    ├── CrossOriginError          a next link or redirect leaves the source's origins (permanent)
    ├── PaginationError           the pages do not add up              (permanent)
    │   ├── PaginationLoopError   a cursor or next link seen twice
    │   └── MaxPagesExceededError more pages than the configured maximum
    ├── IncompleteFetchError      record count differs from the API's declared total
    └── ConfigurationError        bad paginator/auth arguments or plugin path
"""

from __future__ import annotations

from ingestion_assets.http.redaction import redact

_EXCERPT_CHARS = 300


def body_excerpt(body: bytes | str | None, limit: int = _EXCERPT_CHARS) -> str | None:
    """A short, redacted, single-line excerpt of a response body for error messages."""
    if body is None:
        return None
    text = body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else str(body)
    text = " ".join(text[: limit * 2].split())
    text = redact(text)
    return text[:limit] + ("..." if len(text) > limit else "")


class ApiError(Exception):
    """Base class of every error raised by the HTTP core.

    Attributes:
        source: Name of the API source (e.g. ``"payments"``), if known.
        endpoint: Name of the endpoint being fetched, if known.
        url: The request URL, redacted.
        status: HTTP status code, if a response was received.
        body_excerpt: A short redacted excerpt of the response body.
        transient: True when trying again later may succeed.
        attempts: Number of HTTP attempts made for the failing request.
        partition: The partition being fetched, when the caller named one.
    """

    transient: bool = False
    partition: str | None = None

    def __init_subclass__(cls, transient: bool | None = None, **kwargs: object) -> None:
        # ``class ServerError(HttpStatusError, transient=True)``: whether trying again later
        # may succeed is said where the class is declared.
        super().__init_subclass__(**kwargs)
        if transient is not None:
            cls.transient = transient

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        endpoint: str | None = None,
        url: str | None = None,
        status: int | None = None,
        body: bytes | str | None = None,
        transient: bool | None = None,
        attempts: int | None = None,
    ) -> None:
        self.message = redact(message)
        self.source = source
        self.endpoint = endpoint
        self.url = redact(url) if url else url
        self.status = status
        self.body_excerpt = body_excerpt(body)
        if transient is not None:
            self.transient = transient
        self.attempts = attempts
        super().__init__(self._render())

    def _render(self) -> str:
        where = "/".join(p for p in (self.source, self.endpoint) if p)
        parts = [f"[{where}] {self.message}" if where else self.message]
        if self.partition is not None:
            parts.append(f"partition={self.partition}")
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.url:
            parts.append(f"url={self.url}")
        if self.attempts:
            parts.append(f"attempts={self.attempts}")
        if self.body_excerpt:
            parts.append(f"body={self.body_excerpt!r}")
        return "; ".join(parts)

    def locate(self, **where: object) -> ApiError:
        """Fill in where the error happened (``url``, ``status``, ``source``, ...); returns it."""
        for name, value in where.items():
            if getattr(self, name, None) is None and value is not None:
                setattr(self, name, redact(value) if name == "url" else value)
        self.args = (self._render(),)
        return self

    def to_dict(self) -> dict:
        """A JSON-friendly, redacted description (for logs and metadata)."""
        return {
            "type": type(self).__name__,
            "message": self.message,
            "source": self.source,
            "endpoint": self.endpoint,
            "url": self.url,
            "status": self.status,
            "body_excerpt": self.body_excerpt,
            "transient": self.transient,
            "attempts": self.attempts,
            "partition": self.partition,
        }


class TransportError(ApiError, transient=True):
    """No usable response: connection refused or reset, DNS or TLS failure."""


class ApiTimeoutError(TransportError):
    """The connect or read timeout expired."""


class HttpStatusError(ApiError):
    """The API answered with an error status."""


class ClientError(HttpStatusError, transient=False):
    """A 4xx the client must fix (bad parameter, unknown URL): retrying cannot help."""


class AuthenticationError(HttpStatusError, transient=False):
    """Credentials rejected (401/403), also after one refresh, or the token endpoint failed."""


class RateLimitError(HttpStatusError, transient=True):
    """Still rate limited (429) after the rate-limit retry budget."""


class ServerError(HttpStatusError, transient=True):
    """5xx answers until the retry budget ran out."""


class InvalidResponseError(ApiError, transient=True):
    """A 2xx whose body is not usable data: an error object, HTML, truncated or bad JSON."""


class PaginationError(ApiError, transient=False):
    """The pagination does not add up (for example a cursor that does not move)."""


class PaginationLoopError(PaginationError):
    """A cursor or next link was seen twice: following it would loop forever."""


class MaxPagesExceededError(PaginationError):
    """The API still had more pages after the configured maximum page count."""


class IncompleteFetchError(ApiError, transient=True):
    """The records received do not match the total the API declared.

    Usually records were inserted or deleted while paginating by offset; running the
    fetch again (or switching to cursor/keyset pagination) fixes it.
    """


class ConfigurationError(ApiError, transient=False):
    """Invalid paginator or auth configuration, or a plugin path that does not resolve."""


class DeadlineExceededError(ApiTimeoutError):
    """The request's total deadline (connect + the whole body) passed: a trickling server."""


class WaitTooLongError(RateLimitError, transient=False):
    """The server asked to wait (Retry-After, rate-limit reset) longer than the cap allows."""


class BodyTooLargeError(InvalidResponseError, transient=False):
    """The decoded body passed the size budget (a decompression bomb or a runaway listing).

    Sending the same request again would fail the same way, so it is not retried.
    """


class CrossOriginError(ApiError, transient=False):
    """A next link, body next URL or redirect leads outside the source's allowed origins.

    Credentials belong to the source's origin; rather than follow the link without them (and
    store a silently half-fetched partition) the fetch fails. List a trusted origin under the
    source's ``allowed_origins`` to follow it with credentials.
    """
