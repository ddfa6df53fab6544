"""What one attempt's answer means: the status classifier of the HTTP client.

:class:`StatusClassifier` turns what one attempt got, a response with its whole body or the
exception raised before the body was read, into a :class:`Verdict`: success (with the parsed
body and records), retry after a wait, rate limited, refresh the credentials once, or fail.
Every verdict but success carries the error the user sees when the request ends there. The
classifier sends nothing, waits for nothing and counts nothing: the client's retry loop
(:meth:`ApiClient._send <ingestion_assets.http.client.ApiClient>`) applies the budgets.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import requests

from ingestion_assets.http.errors import (
    ApiError,
    ApiTimeoutError,
    AuthenticationError,
    ClientError,
    ConfigurationError,
    DeadlineExceededError,
    InvalidResponseError,
    RateLimitError,
    ServerError,
    TransportError,
    WaitTooLongError,
)
from ingestion_assets.http.formats import BodyFormatError
from ingestion_assets.http.records import (
    ErrorBodyFound,
    RecordsNotFound,
    extract_records,
    page_body,
)
from ingestion_assets.http.redaction import redact
from ingestion_assets.http.retry import RetryPolicy, parse_retry_after
from ingestion_assets.http.streaming import StreamedBody

#: The request succeeded: ``body`` and ``records`` hold what it returned.
SUCCESS = "success"
#: A transient failure: retry with the error budget, after a backoff of at least ``retry_after``.
RETRY = "retry"
#: 429 (or a spent 403): retry with the rate-limit budget, after ``retry_after`` (or at once
#: when ``retry_now``); ``wait_error`` is raised instead when that wait passes the cap.
RATE_LIMITED = "rate_limited"
#: 401: refresh the credentials and retry once; ``error`` when they cannot be refreshed.
REFRESH = "refresh"
#: Retrying cannot help: ``error`` ends the request.
FATAL = "fatal"

_INVALID_REQUEST = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidHeader,
)


@dataclass(slots=True)
class Verdict:
    """What one attempt means for its request.

    Attributes:
        action: :data:`SUCCESS`, :data:`RETRY`, :data:`RATE_LIMITED`, :data:`REFRESH` or
            :data:`FATAL`.
        error: The error raised when the request ends here (None on success).
        cause: Why it is retried, as counted in ``FetchStats.retries``.
        retry_after: The server's ``Retry-After`` in seconds (None without one).
        retry_now: Rate limited, but the auth rotated to a key with headroom: no wait.
        wait_error: Raised instead of waiting ``retry_after`` when that passes the cap.
        request_failed: No usable response arrived (counted as a request failure).
        body: The parsed body (success).
        records: The records found in the body (success).
    """

    action: str
    error: ApiError | None = None
    cause: str | None = None
    retry_after: float | None = None
    retry_now: bool = False
    wait_error: ApiError | None = None
    request_failed: bool = False
    body: Any = None
    records: list = field(default_factory=list)


class StatusClassifier:
    """Classifies the answers to the requests of one endpoint.

    Args:
        policy: The retry policy (which statuses are retried; the rate-limit budget named in
            its error).
        max_wait_s: The longest ``Retry-After`` honoured (``limits.max_wait_seconds``).
        where: ``source`` and ``endpoint``, named in every error.
        records_steps: The compiled records path, or None when the records are not wanted.
        error_detector: ``body -> bool``: is a 2xx body without records an error object?
        remaining_header: The header saying how many requests are left (a 403 with 0 left
            is a spent rate limit, as GitHub answers).
    """

    def __init__(
        self,
        policy: RetryPolicy,
        max_wait_s: float,
        *,
        where: dict[str, Any] | None = None,
        records_steps: tuple | None = None,
        error_detector: Callable[[Any], bool] | None = None,
        remaining_header: str | None = None,
    ) -> None:
        self.policy = policy
        self.max_wait_s = max_wait_s
        self.where = dict(where or {})
        self.records_steps = records_steps
        self.error_detector = error_detector
        self.remaining_header = remaining_header or "X-RateLimit-Remaining"

    # ---------------------------------------------------------------------- exceptions
    def exception(self, exc: Exception, url: str, attempts: int) -> Verdict:
        """What an exception raised while sending or reading means (an `ApiError` of the
        exchange itself, such as a body over the size budget, is final as it is)."""
        where, name = self.where, type(exc).__name__
        if isinstance(exc, DeadlineExceededError):
            return _retry("deadline", exc.locate(url=url, **where), request_failed=True)
        if isinstance(exc, ApiError):
            return Verdict(FATAL, exc)
        if isinstance(exc, requests.Timeout):
            error = ApiTimeoutError(f"request timed out ({name})", url=url, **where)
            return _retry("timeout", error, request_failed=True)
        if isinstance(exc, _INVALID_REQUEST):
            return Verdict(FATAL, ConfigurationError(
                f"invalid request: {name}: {redact(str(exc))}", url=url, **where
            ))
        if isinstance(exc, requests.exceptions.ContentDecodingError):
            # A body that cannot be decompressed will not decompress next time either.
            return Verdict(FATAL, InvalidResponseError(
                f"response body cannot be decoded ({name}); not retried",
                url=url, transient=False, attempts=attempts, **where,
            ), request_failed=True)
        if isinstance(exc, requests.exceptions.ChunkedEncodingError):
            error = TransportError(f"response body cut short ({name})", url=url, **where)
            return _retry("truncated", error, request_failed=True)
        if isinstance(exc, requests.RequestException):
            error = TransportError(f"connection failed ({name})", url=url, **where)
            return _retry("connection", error, request_failed=True)
        raise exc

    # ----------------------------------------------------------------------- responses
    def response(
        self,
        response: requests.Response,
        content: bytes,
        attempts: int,
        *,
        refreshed: bool = False,
        rotated: bool = False,
    ) -> Verdict:
        """What a response with its whole body means.

        ``refreshed``: the credentials were refreshed after an earlier 401 of this request.
        ``rotated``: the auth switched to another key on seeing this response.
        """
        status = response.status_code
        said = {"url": response.url, "status": status, "body": content, **self.where}
        if status == 401:
            if refreshed:
                return Verdict(FATAL, AuthenticationError(
                    "credentials rejected (401) again after refreshing them",
                    attempts=attempts, **said,
                ))
            return Verdict(REFRESH, AuthenticationError(
                "credentials rejected (401)", attempts=attempts, **said
            ))
        if status == 429 or (status == 403 and self._exhausted(response)):
            return self._rate_limited(response, content, attempts, rotated)
        if status in self.policy.retry_statuses or status >= 500:
            wait, too_long = self._server_wait(response)
            if too_long is not None:
                return Verdict(FATAL, too_long)
            return _retry("server_error", ServerError(f"server error {status}", **said), wait)
        if status >= 400:
            cls = AuthenticationError if status == 403 else ClientError
            return Verdict(FATAL, cls(f"request refused ({status})", attempts=attempts, **said))
        if status == 204:  # no content: no records (records.page_body's rule)
            return Verdict(SUCCESS)
        if status >= 300:
            return Verdict(FATAL, InvalidResponseError(
                f"unexpected status {status}", transient=False, **said
            ))
        return self._body(response, content)

    def _exhausted(self, response: requests.Response) -> bool:
        return (response.headers.get(self.remaining_header) or "").strip() == "0"

    def _rate_limited(
        self, response: requests.Response, content: bytes, attempts: int, rotated: bool
    ) -> Verdict:
        error = RateLimitError(
            f"still rate limited after {self.policy.rate_limit_attempts} retries",
            url=response.url, status=response.status_code, body=content, attempts=attempts,
            **self.where,
        )
        if rotated:  # the auth rotated to a key with headroom: go now
            return Verdict(RATE_LIMITED, error, "rate_limited", retry_now=True)
        wait, too_long = self._server_wait(response)
        return Verdict(RATE_LIMITED, error, "rate_limited", wait, wait_error=too_long)

    def _server_wait(
        self, response: requests.Response
    ) -> tuple[float | None, WaitTooLongError | None]:
        """The ``Retry-After`` wait, and the error to raise if it passes the cap."""
        raw = response.headers.get("Retry-After")
        wait = parse_retry_after(raw)
        cap = self.max_wait_s
        if wait is None or wait <= cap:
            return wait, None
        return wait, WaitTooLongError(
            f"the server asks to wait Retry-After: {raw!r} "
            f"({'forever' if math.isinf(wait) else f'{wait:.0f} s'}), longer than the "
            f"{cap:g} s cap (limits.max_wait_seconds)",
            url=response.url,
            status=response.status_code,
            **self.where,
        )

    def _body(self, response: requests.Response, content: bytes) -> Verdict:
        """A 2xx: its JSON body and records, or why they are not usable."""
        status = response.status_code
        said = {"url": response.url, "status": status, "body": content, **self.where}
        content_type = response.headers.get("Content-Type", "")
        if "html" in content_type.lower():
            return _retry("invalid_body", InvalidResponseError(
                f"expected JSON, got {content_type.split(';')[0]}", **said
            ))
        if isinstance(content, StreamedBody):  # read piece by piece: streaming.streamed_pages
            return Verdict(SUCCESS)
        try:
            body = page_body(content, status, content_type)
        except BodyFormatError as exc:  # a body not in its declared charset
            return Verdict(FATAL, InvalidResponseError(f"{exc}; not retried", transient=False,
                                                       **said))
        except orjson.JSONDecodeError as exc:
            return _retry("invalid_body", InvalidResponseError(
                f"body is not valid JSON ({exc.msg} at byte {exc.pos} of {len(content)})", **said
            ))
        if self.records_steps is None:
            return Verdict(SUCCESS, body=body)
        try:
            records = extract_records(body, self.records_steps, error_detector=self.error_detector)
        except ErrorBodyFound as exc:
            return _retry("error_body", InvalidResponseError(str(exc), **said))
        except RecordsNotFound as exc:
            return Verdict(FATAL, InvalidResponseError(str(exc), transient=False, **said))
        return Verdict(SUCCESS, body=body, records=records)


def _retry(
    cause: str, error: ApiError, retry_after: float | None = None, *, request_failed: bool = False
) -> Verdict:
    return Verdict(RETRY, error, cause, retry_after, request_failed=request_failed)
