"""Requests the demo API is answering: how many, how many at once, and the peak.

Counts the requests to sources (never ``/`` or ``/_control``), from the moment the
request is routed to a source until its response is sent (the added latency included),
so a test can see how many requests a client really had in flight at once.
``GET /_control/stats`` reads them; ``POST /_control/reset`` (or ``/_control/stats/reset``)
sets them back to zero.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class RequestStats:
    """Thread-safe counters of the requests being answered, per source and in total."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._requests = 0
            self._in_flight = 0
            self._peak = 0
            self._by_source: dict[str, dict[str, int]] = {}

    @contextlib.contextmanager
    def track(self, source: str) -> Iterator[None]:
        """Count one request to ``source`` for the duration of the block."""
        with self._lock:
            own = self._by_source.setdefault(
                source, {"requests": 0, "in_flight": 0, "peak_in_flight": 0}
            )
            self._requests += 1
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
            own["requests"] += 1
            own["in_flight"] += 1
            own["peak_in_flight"] = max(own["peak_in_flight"], own["in_flight"])
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1
                own["in_flight"] -= 1

    def snapshot(self) -> dict:
        """``{"requests", "in_flight", "peak_in_flight", "sources": {name: {...}}}``."""
        with self._lock:
            return {
                "requests": self._requests,
                "in_flight": self._in_flight,
                "peak_in_flight": self._peak,
                "sources": {name: dict(counts) for name, counts in self._by_source.items()},
            }
