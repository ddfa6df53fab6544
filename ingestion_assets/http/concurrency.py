"""A bound on the requests of one source that are open at once.

A single-run backfill fetches several partitions side by side (``max_concurrency`` of the
source, see ``factory.py``), and an offset endpoint may fetch several pages of one partition
at once (``workers``). Both go through the source's one `RateLimiter`, which holds one
`ConcurrencyGate`: whatever the number of partitions and workers, no more than
``max_concurrency`` requests of the source are on the wire at any moment, and the rate limit
still spaces them.
"""

from __future__ import annotations

import threading


class ConcurrencyGate:
    """A counting gate: ``enter`` waits for a free slot, ``leave`` frees it.

    Unlike a bare semaphore it never grows past its size when ``leave`` is called once too
    often, and it remembers the most slots ever taken at once (``peak``), for diagnostics.
    """

    def __init__(self, size: int | None) -> None:
        if size is not None and size < 1:
            raise ValueError("max_concurrency must be at least 1 (or None for no bound)")
        self.size = size
        self._open = 0
        self.peak = 0
        self._changed = threading.Condition()

    def __repr__(self) -> str:
        return f"ConcurrencyGate(size={self.size}, open={self._open})"

    @property
    def open(self) -> int:
        """Slots taken now."""
        return self._open

    def enter(self) -> None:
        """Wait until fewer than ``size`` slots are taken, then take one."""
        with self._changed:
            if self.size is not None:
                self._changed.wait_for(lambda: self._open < self.size)
            self._open += 1
            self.peak = max(self.peak, self._open)

    def leave(self) -> None:
        """Free a slot taken by `enter` (extra calls are ignored)."""
        with self._changed:
            if self._open > 0:
                self._open -= 1
                self._changed.notify()
