"""What a fetch yields (:class:`Page`) and what it measured (:class:`FetchStats`)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(slots=True)
class Page:
    """One page of an endpoint, exactly as the API sent it.

    Attributes:
        index: Position of the page in the fetch, from 0; pages are yielded in order.
        url: The final request URL, redacted.
        params: The query parameters the client sent for this page, redacted.
        status: HTTP status of the successful response.
        body: The raw response bytes, unparsed and unmodified (the raw layer stores them).
        records: The records found at the endpoint's records path.
        headers: Selected response headers (rate limit, content type, date, link), redacted.
        fetched_at: When the response arrived (UTC).
        elapsed_s: Wall time of the successful attempt.
        attempts: HTTP attempts it took (1 when nothing was retried).
        source: Source name, if the client has one.
        endpoint: Endpoint name, if given to the fetch.
    """

    index: int
    url: str
    params: dict[str, Any]
    status: int
    body: bytes
    records: list[Any]
    headers: dict[str, str]
    fetched_at: datetime
    elapsed_s: float = 0.0
    attempts: int = 1
    source: str | None = None
    endpoint: str | None = None

    def __repr__(self) -> str:  # the body can be megabytes: never print it
        return (
            f"Page(index={self.index}, status={self.status}, records={len(self.records)}, "
            f"bytes={len(self.body)}, url={self.url!r})"
        )

    def meta(self) -> dict[str, Any]:
        """JSON-friendly description without the body (for manifests and metadata)."""
        return {
            "index": self.index,
            "url": self.url,
            "params": self.params,
            "status": self.status,
            "records": len(self.records),
            "bytes": len(self.body),
            "headers": self.headers,
            "fetched_at": self.fetched_at.isoformat(),
            "elapsed_s": round(self.elapsed_s, 6),
            "attempts": self.attempts,
            "source": self.source,
            "endpoint": self.endpoint,
        }


@dataclass
class FetchStats:
    """Counters of one fetch; updated from every worker thread, read by the caller.

    Attributes:
        pages: Pages yielded.
        records: Records yielded.
        requests: HTTP requests sent, retries included (token requests not counted).
        retries: Retries by cause (``server_error``, ``connection``, ``timeout``,
            ``invalid_body``, ``error_body``, ``rate_limited``, ``auth_refresh``, ...).
        rate_limited: 429 answers received.
        rate_limit_wait_s: Seconds spent waiting on the client limiter or a Retry-After.
        bytes: Response body bytes received (successful and failed attempts).
        elapsed_s: Wall time of the fetch so far.
        declared_total: The record total the API declared, when it declares one.
        workers: Worker threads used for the pages.
    """

    source: str | None = None
    endpoint: str | None = None
    pages: int = 0
    records: int = 0
    requests: int = 0
    retries: dict[str, int] = field(default_factory=dict)
    rate_limited: int = 0
    rate_limit_wait_s: float = 0.0
    bytes: int = 0
    elapsed_s: float = 0.0
    declared_total: int | None = None
    workers: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _started: float = field(default_factory=time.monotonic, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def retries_total(self) -> int:
        """All retries, whatever the cause."""
        return sum(self.retries.values())

    def add_response(self, nbytes: int) -> None:
        with self._lock:
            self.requests += 1
            self.bytes += nbytes

    def add_bytes(self, nbytes: int) -> None:
        """Body bytes of a streamed response, counted as they arrive."""
        with self._lock:
            self.bytes += nbytes

    def add_request_failure(self) -> None:
        with self._lock:
            self.requests += 1

    def add_retry(self, cause: str) -> None:
        with self._lock:
            self.retries[cause] = self.retries.get(cause, 0) + 1

    def add_rate_limited(self) -> None:
        with self._lock:
            self.rate_limited += 1

    def add_wait(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self.rate_limit_wait_s += seconds

    def add_page(self, records: int) -> None:
        with self._lock:
            self.pages += 1
            self.records += records

    def tick(self) -> None:
        """Refresh ``elapsed_s`` from the fetch's start."""
        self.elapsed_s = time.monotonic() - self._started

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly dict (shown as Dagster metadata later)."""
        with self._lock:
            return {
                "source": self.source,
                "endpoint": self.endpoint,
                "pages": self.pages,
                "records": self.records,
                "requests": self.requests,
                "retries": dict(sorted(self.retries.items())),
                "retries_total": sum(self.retries.values()),
                "rate_limited": self.rate_limited,
                "rate_limit_wait_s": round(self.rate_limit_wait_s, 3),
                "bytes": self.bytes,
                "elapsed_s": round(self.elapsed_s, 3),
                "declared_total": self.declared_total,
                "workers": self.workers,
            }
