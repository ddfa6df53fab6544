"""Per-credential rate limiters, one algorithm per imitated vendor.

Each ``hit`` returns ``(allowed, info)``; ``info`` carries what the vendor puts in
its headers: ``limit``, ``remaining``, ``reset_s`` (seconds until the limit is
fully available again), ``retry_after_s`` (when refused) and ``used``.
Time is the real monotonic/wall clock, not the frozen data clock: limits are
about how fast a client calls, not about the data's dates.
"""

from __future__ import annotations

import math
import threading
import time


class _PerCredential:
    """Limiter state kept per credential, updated under one lock."""

    def __init__(self) -> None:
        self._state: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._state.clear()


class TokenBucket(_PerCredential):
    """Stripe-like: ``capacity`` requests of burst, refilled at ``rate`` per second."""

    def __init__(self, capacity: float, rate: float) -> None:
        super().__init__()
        self.capacity, self.rate = capacity, rate

    def _take(self, key: str) -> tuple[bool, float]:
        """Take one token if there is one; returns (allowed, tokens left)."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._state.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            allowed = tokens >= 1
            if allowed:
                tokens -= 1
            self._state[key] = (tokens, now)
        return allowed, tokens

    def hit(self, key: str) -> tuple[bool, dict]:
        allowed, tokens = self._take(key)
        info = {
            "limit": int(self.capacity),
            "remaining": int(tokens),
            "reset_s": math.ceil((self.capacity - tokens) / self.rate),
            "used": int(self.capacity - tokens),
        }
        if not allowed:
            info["retry_after_s"] = max(1, math.ceil((1 - tokens) / self.rate))
        return allowed, info


class LeakyBucket(TokenBucket):
    """Shopify-like: a bucket of ``capacity`` calls that leaks ``rate`` calls per second.

    The same arithmetic as a token bucket seen from the other side: the bucket's level is
    the capacity minus the tokens left. Only what the headers report differs.
    """

    def hit(self, key: str) -> tuple[bool, dict]:
        allowed, tokens = self._take(key)
        level = self.capacity - tokens
        info = {
            "limit": int(self.capacity),
            "remaining": max(0, int(tokens)),
            "reset_s": math.ceil(level / self.rate),
            "used": math.ceil(level),
        }
        if not allowed:
            # Shopify answers with a float, e.g. "Retry-After: 2.0"
            info["retry_after_s"] = max(1.0, round((level + 1 - self.capacity) / self.rate, 1))
        return allowed, info


class FixedWindow(_PerCredential):
    """HubSpot/GitHub-like: ``limit`` requests per ``window`` seconds, windows on wall time."""

    def __init__(self, limit: float, window: float) -> None:
        super().__init__()
        self.limit, self.window = max(1, int(limit)), window

    def hit(self, key: str) -> tuple[bool, dict]:
        now = time.time()
        with self._lock:
            start, used = self._state.get(key, (now, 0))
            if now - start >= self.window:
                start, used = now, 0
            allowed = used < self.limit
            if allowed:
                used += 1
            self._state[key] = (start, used)
        reset_at = start + self.window
        info = {
            "limit": self.limit,
            "remaining": self.limit - used,
            "reset_s": max(0, math.ceil(reset_at - now)),
            "reset_epoch": math.ceil(reset_at),
            "used": used,
        }
        if not allowed:
            info["retry_after_s"] = max(1, math.ceil(reset_at - now))
        return allowed, info
