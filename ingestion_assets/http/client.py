"""The HTTP client: fetch every record of an endpoint, complete or not at all.

:class:`ApiClient` holds what one API source shares: a pooled ``requests.Session``, the
auth, the rate limiter, the retry policy and timeouts. :meth:`ApiClient.fetch_pages`
returns a :class:`PageStream`: iterating it drives the paginator, yields
:class:`~ingestion_assets.http.page.Page` objects in order, and raises a clear
:class:`~ingestion_assets.http.errors.ApiError` rather than ever ending early. Its
``stats`` (:class:`~ingestion_assets.http.page.FetchStats`) count what happened.

Each response body is parsed once with orjson; ``Page.body`` keeps the raw bytes. The
client does no per-record work beyond finding the records and the cursor.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urljoin
from urllib.request import getproxies

import requests

from ingestion_assets.http import defaults
from ingestion_assets.http.auth import ApiAuth, NoAuth
from ingestion_assets.http.budgets import Budgets
from ingestion_assets.http.classify import (
    RATE_LIMITED,
    REFRESH,
    RETRY,
    SUCCESS,
    StatusClassifier,
    Verdict,
)
from ingestion_assets.http.deadline import DeadlineAdapter, body_chunks, request_deadline
from ingestion_assets.http.errors import (
    ApiError,
    BodyTooLargeError,
    ConfigurationError,
    DeadlineExceededError,
    IncompleteFetchError,
    InvalidResponseError,
    MaxPagesExceededError,
    PaginationLoopError,
    WaitTooLongError,
)
from ingestion_assets.http.formats import JSON, BodyFormat
from ingestion_assets.http.headers import default_user_agent
from ingestion_assets.http.origins import OriginPolicy
from ingestion_assets.http.page import FetchStats, Page
from ingestion_assets.http.paginators import PageRequest, Paginator, PlannedPage, SinglePage
from ingestion_assets.http.ratelimit import RateLimiter
from ingestion_assets.http.records import records_steps
from ingestion_assets.http.redaction import get_logger, redact, redact_headers, redact_url
from ingestion_assets.http.retry import RetryPolicy
from ingestion_assets.http.streaming import StreamedBody, streamed_pages

log = get_logger()
# urllib3 logs request lines (with query strings) at DEBUG: mask secrets there too.
get_logger("urllib3.connectionpool")

USER_AGENT = default_user_agent()  # a source's `user_agent:` replaces it
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_SELECTED_HEADERS = frozenset(
    {"content-type", "date", "link", "retry-after", "etag", "x-request-id"}
)


def _selected_headers(headers: Any) -> dict[str, str]:
    keep = {}
    for name, value in headers.items():
        lowered = name.lower()
        if (
            lowered in _SELECTED_HEADERS
            or "ratelimit" in lowered
            or "rate-limit" in lowered
            or "call-limit" in lowered
        ):
            keep[name] = value
    return redact_headers(keep)


def looks_like_error(body: Any) -> bool:
    """Default check for a 200 whose JSON body is an error object (Stripe, Shopify, HubSpot)."""
    if not isinstance(body, dict):
        return False
    if body.get("error") or body.get("errors"):
        return True
    status = body.get("status")
    if isinstance(status, str) and status.lower() in {"error", "fail", "failed"}:
        return True
    if "message" in body:  # GitHub: {"message", "documentation_url", "status": "500"}
        if "documentation_url" in body:
            return True
        code = str(status) if status is not None else ""
        return code.isdigit() and int(code) >= 400
    return False


def _is_html(response: requests.Response) -> bool:
    return "html" in response.headers.get("Content-Type", "").lower()


def _mib(n: int) -> str:
    return f"{n / 1048576:g} MiB"


def _settings_from_environment(session: requests.Session, verify: bool | str) -> None:
    """Read the environment's HTTP settings once, not on every request.

    A session that trusts the environment scans all of ``os.environ`` for proxy variables
    (twice) on every request. Without any proxy variable the session stops trusting it, and
    keeps the one other setting it read from there, a CA bundle (``REQUESTS_CA_BUNDLE``,
    ``CURL_CA_BUNDLE``); with proxies it goes on reading them per request (``NO_PROXY``
    decides by URL). Nor is ``~/.netrc`` read then: it could only add credentials the source
    does not declare (secrets come from the source's auth and the environment it names).
    """
    if getproxies():
        return
    session.trust_env = False
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if verify is True and bundle:
        session.verify = bundle


@dataclass(slots=True)
class _Result:
    response: requests.Response
    content: bytes
    body: Any
    records: list
    attempts: int
    elapsed_s: float


@dataclass(slots=True)
class _Tries:
    """What one request has spent of its budgets so far."""

    attempts: int = 0
    failures: int = 0  # transient failures (the error budget)
    rate_limited: int = 0  # 429 answers (the rate-limit budget)
    refreshed: bool = False  # the credentials were refreshed after a 401


@dataclass(slots=True)
class _Attempt:
    """One attempt: its verdict, and the response it got (None when none arrived)."""

    verdict: Verdict
    response: requests.Response | None = None
    content: bytes = b""
    elapsed_s: float = 0.0


class ApiClient:
    """Client of one API source: a pooled session with auth, rate limit and retries.

    Args:
        base_url: Root of the API; endpoint paths are appended to it.
        auth: An :class:`~ingestion_assets.http.auth.ApiAuth` (default: none).
        headers: Headers sent with every request.
        rate_limiter: Shared by every thread of the source (default: no client-side rate,
            but header feedback and 429 pauses still apply).
        retry: The retry policy (default :class:`RetryPolicy()`).
        timeout: ``(connect, read)`` seconds, or one number for both; always on.
        source: Source name, used in errors, logs and stats.
        pool_size: Connections kept per host; size it for the workers.
        verify: TLS verification (on; a CA bundle path is accepted).
        error_detector: ``body -> bool`` deciding that a 200 JSON body is an error
            object (default :func:`looks_like_error`, applied when no records are found).
        allowed_origins: Origins besides the base URL's that may receive the credentials
            (next links and redirects to any other origin fail the fetch).
        budgets: Per-request limits (body size, total deadline, longest wait, redirects);
            see :class:`~ingestion_assets.http.budgets.Budgets`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: ApiAuth | None = None,
        headers: dict[str, str] | None = None,
        rate_limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | tuple[float, float] | None = (
            defaults.CONNECT_TIMEOUT_SECONDS, defaults.READ_TIMEOUT_SECONDS
        ),
        source: str | None = None,
        pool_size: int = 16,
        verify: bool | str = True,
        error_detector: Callable[[Any], bool] | None = None,
        allowed_origins: list[str] | tuple[str, ...] = (),
        budgets: Budgets | None = None,
    ) -> None:
        if not base_url or "://" not in base_url:
            raise ConfigurationError(
                f"base_url must be an absolute http(s) URL, got {redact(base_url)!r}"
            )
        if timeout is None:
            raise ConfigurationError(
                "a timeout is required (requests would otherwise wait forever)"
            )
        self.base_url = base_url.rstrip("/")
        self.origins = OriginPolicy(self.base_url, allowed_origins)
        self.budgets = budgets or Budgets()
        self.auth: ApiAuth = auth or NoAuth()
        self.rate_limiter = rate_limiter or RateLimiter(None)
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.source = source
        self.error_detector = error_detector or looks_like_error
        self.session = requests.Session()
        self.session.verify = verify
        _settings_from_environment(self.session, verify)
        self.pool_size = 0
        self._pool_lock = threading.Lock()
        self._size_pool(max(4, pool_size))
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.headers["Accept"] = "application/json"
        if headers:
            self.session.headers.update(headers)
        self.auth.bind(self.session, self.base_url, self.timeout)
        self.auth.trust(self.origins)  # token and login URLs are held to the origin rule

    def _size_pool(self, size: int) -> None:
        """(Re)mount adapters keeping ``size`` connections per host (retries are ours)."""
        with self._pool_lock:
            if size <= self.pool_size:
                return
            adapter = DeadlineAdapter(pool_connections=4, pool_maxsize=size, max_retries=0)
            self.session.mount("http://", adapter)
            self.session.mount("https://", adapter)
            self.pool_size = size

    def __repr__(self) -> str:
        return (
            f"ApiClient({redact_url(self.base_url)!r}, source={self.source!r}, auth={self.auth!r})"
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.close()

    def url_for(self, path: str) -> str:
        """Absolute URL of an endpoint path (absolute URLs pass through)."""
        if "://" in path:
            return path
        if not path:
            return self.base_url
        return f"{self.base_url}/{path.lstrip('/')}"

    # -------------------------------------------------------------------------- fetching
    def fetch_pages(
        self,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        paginator: Paginator | None = None,
        records_path: str | None = None,
        workers: int = 1,
        max_pages: int | None = None,
        on_total_mismatch: str = "error",
        endpoint: str | None = None,
        method: str = "GET",
        json: Any = None,
        headers: dict[str, str] | None = None,
        body_format: BodyFormat = JSON,
        partition: str | None = None,
    ) -> PageStream:
        """Stream every page of an endpoint (lazily: nothing is sent before iteration).

        Args:
            path: Endpoint path (appended to the base URL) or an absolute URL.
            params: Query parameters of the first request (filters, window bounds).
            paginator: Pagination style (default: a single page). Not modified: each
                fetch works on a fresh copy.
            records_path: Dotted path to the records in the body (``"data"``,
                ``"paging.items"``); None or ``""`` for a body that is itself the list.
            workers: Threads fetching pages concurrently when the style can plan its pages
                from the first one (offset/page number with a declared total, link with a
                ``rel="last"`` page number); otherwise pages are sequential, with a warning.
            max_pages: Fail (never truncate) when the API has more pages than this.
            on_total_mismatch: ``"error"`` or ``"warn"`` when the records received do not
                match the total the API declared, or the total changed during the fetch.
            endpoint: Endpoint name for errors, logs and stats.
            method: HTTP method (``"POST"`` for search endpoints).
            json: JSON body of the request.
            headers: Extra headers for this endpoint.
            body_format: ``json`` (default), or a streamed ``ndjson`` / ``csv`` body
                (:mod:`ingestion_assets.http.formats`), whose pages are pieces of a response.
            partition: The partition being fetched, named in every error.
        """
        if on_total_mismatch not in ("error", "warn"):
            raise ConfigurationError("on_total_mismatch must be 'error' or 'warn'")
        if workers < 1:
            raise ConfigurationError("workers must be >= 1")
        if workers > self.pool_size:
            self._size_pool(workers)  # a connection per worker, or urllib3 discards them
        request = PageRequest(
            url=self.url_for(path),
            params=dict(params or {}),
            method=method.upper(),
            json=json,
            headers=dict(headers or {}),
        )
        return PageStream(
            self,
            request,
            (paginator or SinglePage()).fresh(),
            records_path=records_path,
            workers=workers,
            max_pages=max_pages,
            on_total_mismatch=on_total_mismatch,
            endpoint=endpoint,
            body_format=body_format,
            partition=partition,
        )

    def get_json(
        self, path: str, params: dict[str, Any] | None = None, *, endpoint: str | None = None
    ) -> Any:
        """One GET with the full retry/auth/rate-limit treatment; returns the parsed body."""
        request = PageRequest(url=self.url_for(path), params=dict(params or {}))
        result = self._send(
            request, FetchStats(source=self.source, endpoint=endpoint), endpoint, None
        )
        return result.body

    # -------------------------------------------------------------------- one request
    def _send(
        self,
        request: PageRequest,
        stats: FetchStats,
        endpoint: str | None,
        records_steps: tuple | None,
        via: str = "the request",
        *,
        stream: bool = False,
    ) -> _Result:
        """Send one page request until it succeeds or a budget runs out."""
        where = {"source": self.source, "endpoint": endpoint}
        # Before anything is sent (or waited for): is this origin one the credentials may go to?
        self.origins.check(request.url, via=via, **where)
        classifier = StatusClassifier(
            self.retry,
            self.budgets.max_wait_s,
            where=where,
            records_steps=records_steps,
            error_detector=self.error_detector,
            remaining_header=self.rate_limiter.remaining_header,
        )
        tries = _Tries()
        while True:
            tries.attempts += 1
            attempt = self._attempt(request, stats, classifier, tries, stream)
            verdict = attempt.verdict
            if verdict.action == SUCCESS:
                return _Result(
                    attempt.response, attempt.content, verdict.body, verdict.records,
                    tries.attempts, attempt.elapsed_s,
                )
            if verdict.action == REFRESH:
                if not self.auth.refresh(attempt.response):
                    raise verdict.error
                tries.refreshed = True
                stats.add_retry("auth_refresh")
                log.info(
                    "%s: 401, credentials refreshed; retrying once",
                    redact_url(attempt.response.url),
                )
            elif verdict.action == RATE_LIMITED:
                self._wait_rate_limited(attempt, tries, stats)
            elif verdict.action == RETRY:
                self._wait_to_retry(verdict, tries, stats)
            else:
                raise verdict.error

    def _attempt(
        self,
        request: PageRequest,
        stats: FetchStats,
        classifier: StatusClassifier,
        tries: _Tries,
        stream: bool = False,
    ) -> _Attempt:
        """One request and its whole body within the request's budgets (a rate-limiter slot,
        the deadline, the body size), and what the classifier makes of it."""
        where = classifier.where
        try:
            stats.add_wait(self.rate_limiter.acquire(self.budgets.max_wait_s))
        except WaitTooLongError as exc:
            raise exc.locate(url=request.url, **where) from None
        started = time.monotonic()
        try:
            response, content = self._exchange(request, where, stream)
        except (requests.RequestException, ApiError) as exc:
            verdict = classifier.exception(exc, request.url, tries.attempts)
            if verdict.request_failed:
                stats.add_request_failure()
            return _Attempt(verdict)
        finally:
            self.rate_limiter.release()
        stats.add_response(len(content))
        rotated = self.auth.on_response(response)
        if not rotated:
            self.rate_limiter.observe(response.headers)
        verdict = classifier.response(
            response, content, tries.attempts, refreshed=tries.refreshed, rotated=rotated
        )
        return _Attempt(verdict, response, content, time.monotonic() - started)

    def _wait_rate_limited(self, attempt: _Attempt, tries: _Tries, stats: FetchStats) -> None:
        """Spend one of the rate-limit budget and pause the source (raises when spent)."""
        policy, verdict, response = self.retry, attempt.verdict, attempt.response
        stats.add_rate_limited()
        tries.rate_limited += 1
        if tries.rate_limited > policy.rate_limit_attempts:
            raise verdict.error
        stats.add_retry("rate_limited")
        if verdict.retry_now:
            return
        if verdict.wait_error is not None:
            raise verdict.wait_error
        delay = policy.rate_limit_delay(verdict.retry_after, tries.rate_limited)
        log.warning(
            "%s: %d rate limited (Retry-After=%s); waiting %.2fs (%d/%d)",
            redact_url(response.url),
            response.status_code,
            response.headers.get("Retry-After"),
            delay,
            tries.rate_limited,
            policy.rate_limit_attempts,
        )
        self.rate_limiter.pause(delay)  # every thread of the source waits

    def _wait_to_retry(self, verdict: Verdict, tries: _Tries, stats: FetchStats) -> None:
        """Spend one of the error budget and back off (raises, saying so, when spent)."""
        policy, error = self.retry, verdict.error
        tries.failures += 1
        error.attempts = tries.attempts
        if tries.failures >= policy.max_attempts:
            error.message = f"{error.message}; gave up after {tries.attempts} attempts"
            error.args = (error._render(),)
            raise error
        stats.add_retry(verdict.cause)
        delay = policy.backoff(tries.failures)
        if verdict.retry_after is not None:
            delay = max(delay, min(verdict.retry_after, policy.retry_after_max))
        log.warning(
            "%s: %s (%s), retry %d/%d in %.2fs",
            error.url,
            verdict.cause,
            error.message,
            tries.failures,
            policy.max_attempts - 1,
            delay,
        )
        time.sleep(delay)

    def _exchange(
        self, request: PageRequest, where: dict[str, Any], stream: bool = False
    ) -> tuple[requests.Response, bytes | StreamedBody]:
        """One request and its whole body, redirects followed here under the origin rule.

        ``requests`` never follows a redirect (it would carry API-key headers and query
        keys along): each hop is checked against the allowed origins before it is sent,
        and the whole exchange must end within the request deadline. With ``stream``, a 200's
        body (not an HTML page) is left unread: :mod:`~ingestion_assets.http.streaming`.
        """
        budgets = self.budgets
        deadline = time.monotonic() + budgets.request_deadline_s
        method, url = request.method, request.url
        params: dict[str, Any] | None = request.params or None
        body = request.json
        hops = 0
        while True:
            with request_deadline(deadline, budgets.request_deadline_s):
                response = self.session.request(
                    method,
                    url,
                    params=params,
                    json=body,
                    headers=request.headers or None,
                    timeout=self._timeout_within(deadline),
                    auth=self.auth,
                    allow_redirects=False,
                    stream=True,
                )
            location = response.headers.get("Location")
            if response.status_code not in _REDIRECTS or not location:
                if stream and response.status_code == 200 and not _is_html(response):
                    return response, StreamedBody(response, deadline, budgets, where)
                return response, self._read_body(response, deadline, where)
            response.close()
            hops += 1
            here = response.url
            target = urljoin(here, location)
            if hops > budgets.max_redirects:
                raise InvalidResponseError(
                    f"more than {budgets.max_redirects} redirects (limits.max_redirects)",
                    url=here,
                    status=response.status_code,
                    transient=False,
                    **where,
                )
            self.origins.check(
                target, via=f"a redirect ({response.status_code})", came_from=here, **where
            )
            if response.status_code == 303 or (
                response.status_code in (301, 302) and method == "POST"
            ):
                method, body = "GET", None
            url, params = target, None  # the Location carries its own query

    def _timeout_within(self, deadline: float) -> tuple[float, float]:
        connect, read = (
            self.timeout if isinstance(self.timeout, tuple) else (self.timeout, self.timeout)
        )
        left = max(0.001, deadline - time.monotonic())
        return (min(connect, left), min(read, left))

    def _read_body(
        self, response: requests.Response, deadline: float, where: dict[str, Any]
    ) -> bytes:
        """Read and decode the body, within the size and time budgets (:func:`body_chunks`)."""
        limit = self.budgets.max_body_bytes
        located = {"url": response.url, "status": response.status_code, **where}
        return b"".join(body_chunks(
            response, deadline, chunk_bytes=self.budgets.chunk_bytes, limit=limit,
            too_large=lambda: BodyTooLargeError(
                f"response body larger than {_mib(limit)} once decoded "
                f"(Content-Encoding: {response.headers.get('Content-Encoding') or 'none'}"
                "); stopped reading (limits.max_body_mb); not retried", **located,
            ),
            late=lambda size: DeadlineExceededError(
                f"the response did not complete within the request deadline of "
                f"{self.budgets.request_deadline_s:g} s (limits.request_deadline_seconds); "
                f"{size} decoded bytes had arrived", **located,
            ),
        ))


@dataclass(eq=False, repr=False)
class PageStream:
    """The pages of one fetch, in order; iterate once. ``stats`` fills as it goes.

    Raises (while iterating) an :class:`~ingestion_assets.http.errors.ApiError` whenever
    the result could be incomplete: a caller that sees the iteration end normally has
    every record.
    """

    client: ApiClient
    request: PageRequest
    paginator: Paginator
    _: KW_ONLY
    records_path: str | None
    workers: int
    max_pages: int | None
    on_total_mismatch: str
    endpoint: str | None
    body_format: BodyFormat = JSON
    partition: str | None = None
    stats: FetchStats = field(init=False)

    def __post_init__(self) -> None:
        self.stats = FetchStats(source=self.client.source, endpoint=self.endpoint, workers=1)
        self._steps = records_steps(self.records_path)
        self._started = False
        self._totals: list[int] = []
        self._where = {"source": self.client.source, "endpoint": self.endpoint}
        self._first_url = self.request.url  # the paginator may move request.url along

    def __iter__(self) -> Iterator[Page]:
        if self._started:
            raise RuntimeError("a PageStream can be iterated only once")
        self._started = True
        return self._run()

    def iter_records(self) -> Iterator[Any]:
        """Every record of every page, in order."""
        for page in self:
            yield from page.records

    # ------------------------------------------------------------------------------
    def _page(self, index: int, request: PageRequest, result: _Result) -> Page:
        self.stats.add_page(len(result.records))
        self.stats.tick()
        return Page(
            index=index,
            url=redact_url(result.response.url),
            params=redact(dict(request.params)),
            status=result.response.status_code,
            body=result.content,
            records=result.records,
            headers=_selected_headers(result.response.headers),
            fetched_at=datetime.now(timezone.utc),
            elapsed_s=result.elapsed_s,
            attempts=result.attempts,
            source=self.client.source,
            endpoint=self.endpoint,
        )

    def _note_total(self) -> None:
        total = self.paginator.total
        if total is not None:
            if self.stats.declared_total is None:
                self.stats.declared_total = total
            if not self._totals or self._totals[-1] != total:
                self._totals.append(total)
                if len(self._totals) > 1 and self.on_total_mismatch == "error":
                    self._mismatch(self._drift_message())  # fail now, not after every page

    def _drift_message(self) -> str:
        return (
            f"the declared total changed during the fetch ({' -> '.join(map(str, self._totals))}): "
            "records were inserted or deleted while paginating, so pages may overlap or skip"
        )

    def _mismatch(self, message: str) -> None:
        if self.on_total_mismatch == "warn":
            log.warning("%s: %s", self.endpoint or redact_url(self._first_url), message)
            return
        raise IncompleteFetchError(message, url=self._first_url, **self._where)

    def _run(self) -> Iterator[Page]:
        try:
            yield from streamed_pages(self) if self.body_format.streamed else self._pages()
        except ApiError as exc:
            exc.locate(partition=self.partition)
            raise
        finally:
            self.stats.tick()  # also when the fetch fails or the caller stops early

    def _pages(self) -> Iterator[Page]:
        paginator = self.paginator
        request = self.request
        stats = self.stats
        log.debug("fetch %s %s (%s)", request.method, redact_url(request.url), paginator.describe())
        paginator.init_request(request)
        seen: set[int] = set()
        index = 0
        while True:
            self._check_next(request, seen, index)
            via = "the request" if index == 0 else f"the next page ({paginator.describe().get('style')})"
            result = self.client._send(request, stats, self.endpoint, self._steps, via)
            paginator.read_headers(result.response)
            paginator.update_state(result.response, result.body, result.records)
            if paginator.stop_after_empty_page and not result.records:
                paginator.has_next = False
            self._note_total()
            page = self._page(index, request, result)
            index += 1
            plan = None
            if index == 1 and self.workers > 1 and paginator.random_access and paginator.has_next:
                plan = paginator.plan(request, len(result.records))
            if index == 1 and self.workers > 1 and plan is None and paginator.has_next:
                log.warning(
                    "%s: workers=%d but the pages cannot be planned (no declared total or "
                    "last page in the first response): fetching one page at a time",
                    self.endpoint or redact_url(self._first_url),
                    self.workers,
                )
            yield page
            # The caller is done with the page: its records (a Python object each, ~1.4 MB
            # for 1,000 records) go before the next request, not after its parse.
            page = result = None
            if plan is not None:
                yield from self._run_concurrent(plan, index)
                break
            if not paginator.has_next:
                break
            paginator.update_request(request)
        self._finish()

    def _check_next(self, request: PageRequest, seen: set[int], sent: int) -> None:
        """The loop guard and ``max_pages``, before the next request (``sent`` so far)."""
        key = hash(request.key())
        if key in seen:
            raise PaginationLoopError(
                "the next page request repeats an earlier one (cursor or next link seen twice)",
                url=request.url,
                **self._where,
            )
        seen.add(key)
        if self.max_pages is not None and sent >= self.max_pages:
            raise MaxPagesExceededError(
                f"more than max_pages={self.max_pages} pages; refusing to return a partial result",
                url=request.url,
                **self._where,
            )

    def _run_concurrent(self, plan: Iterator[PlannedPage], index: int) -> Iterator[Page]:
        """Fetch planned pages on worker threads, yield in order, ~2x workers in flight."""
        workers = self.workers
        self.stats.workers = workers
        window = 2 * workers
        client = self.client
        pending: deque[tuple[PlannedPage, Future]] = deque()
        pool = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=f"fetch-{self.endpoint or 'pages'}"
        )
        planned_iter = iter(plan)

        def submit() -> bool:
            planned = next(planned_iter, None)
            if planned is None:
                return False
            if self.max_pages is not None and index + len(pending) >= self.max_pages:
                raise MaxPagesExceededError(
                    f"more than max_pages={self.max_pages} pages; refusing to return a partial result",
                    url=self.request.url,
                    **self._where,
                )
            pending.append(
                (
                    planned,
                    pool.submit(
                        client._send, planned.request, self.stats, self.endpoint, self._steps,
                        "a planned page",
                    ),
                )
            )
            return True

        try:
            while len(pending) < window and submit():
                pass
            while pending:
                planned, future = pending.popleft()
                result = future.result()
                self.paginator.read_headers(result.response)
                self.paginator.update_state(result.response, result.body, result.records)
                self._note_total()
                count = len(result.records)
                # Link pages carry everything in the URL; other styles in their params.
                at = redact(planned.request.params) or redact_url(planned.request.url)
                if planned.expected is not None and count != planned.expected:
                    self._mismatch(
                        f"page at {at} returned {count} records, expected {planned.expected} "
                        "from the declared total or page count"
                    )
                elif planned.expected is None and count == 0:
                    self._mismatch(f"page at {at} is empty before the declared end")
                page = self._page(index, planned.request, result)
                index += 1
                submit()
                yield page
                page = result = None  # its records go before the next page's parse
        finally:
            for _, future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def _finish(self) -> None:
        stats = self.stats
        stats.tick()
        if len(self._totals) > 1:
            self._mismatch(self._drift_message())
        expected = self.paginator.expected_records() if stats.declared_total is not None else None
        if expected is not None and stats.records != expected:
            self._mismatch(f"received {stats.records} records but the API declared {expected}")
        pages = self.paginator.total_pages
        if pages is not None and stats.pages != max(pages, 1):
            self._mismatch(f"received {stats.pages} pages but the API declared {pages}")
        log.info("fetched %s: %s", self.endpoint or redact_url(self._first_url), stats.to_dict())
