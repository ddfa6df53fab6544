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
* ``max_redirects``: redirects followed for one request (each one checked against the
  origin rule).
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class Budgets:
    """Per-request limits of the HTTP core (see the module docstring)."""

    max_body_bytes: int = 256 * MIB
    request_deadline_s: float = 600.0
    max_wait_s: float = 900.0
    max_redirects: int = 5
    chunk_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1 or self.request_deadline_s <= 0 or self.max_wait_s < 0:
            raise ValueError("budgets must be positive")
        if self.max_redirects < 0:
            raise ValueError("max_redirects must be >= 0")
