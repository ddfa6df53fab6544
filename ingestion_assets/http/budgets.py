"""Budgets: what one response may cost, whatever the server does.

A server controls the size of a body (and how much it inflates), how fast it sends it and
how long it asks the client to wait. Each of those is bounded here, with defaults nobody
should need to change, and a clear error when a server goes past one:

* ``max_body_bytes``: the decoded body is read in chunks and the read stops as soon as it
  passes this size (a 1 MB gzip body inflating to 1 GiB never sits in memory whole);
* ``request_deadline_s``: connect, headers and the whole body of one request; a server
  trickling a byte per second is cut off here, although no single read times out
  (:mod:`ingestion_assets.http.deadline`);
* ``max_wait_s``: the longest wait a server may ask for (``Retry-After``,
  ``X-RateLimit-Reset``); past it the fetch fails, quoting the server's value;
* ``max_stream_bytes``: a streamed (NDJSON, CSV) body is read piece by piece, so it may be
  larger than ``max_body_bytes`` (which then bounds one record); this bounds the whole of it,
  so a body that never ends fails here (:mod:`ingestion_assets.http.streaming`);
* ``max_redirects``: redirects followed for one request (each one checked against the
  origin rule).
"""

from __future__ import annotations

from dataclasses import dataclass

from ingestion_assets.http import defaults
from ingestion_assets.http.defaults import MIB


@dataclass(frozen=True)
class Budgets:
    """Per-request limits of the HTTP core (see the module docstring)."""

    max_body_bytes: int = defaults.MAX_BODY_MB * MIB
    request_deadline_s: float = defaults.REQUEST_DEADLINE_SECONDS
    max_wait_s: float = defaults.MAX_WAIT_SECONDS
    max_redirects: int = defaults.MAX_REDIRECTS
    max_stream_bytes: int = defaults.MAX_STREAM_MB * MIB
    chunk_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        if min(self.max_body_bytes, self.max_stream_bytes) < 1 or self.request_deadline_s <= 0 \
                or self.max_wait_s < 0:
            raise ValueError("budgets must be positive")
        if self.max_redirects < 0:
            raise ValueError("max_redirects must be >= 0")
