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


class TokenBucket:
    """Stripe-like: ``capacity`` requests of burst, refilled at ``rate`` per second."""

    def __init__(self, capacity: float, rate: float) -> None:
        self.capacity, self.rate = capacity, rate
        self._state: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> tuple[bool, dict]:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._state.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            allowed = tokens >= 1
            if allowed:
                tokens -= 1
            self._state[key] = (tokens, now)
        info = {
            "limit": int(self.capacity),
            "remaining": int(tokens),
            "reset_s": math.ceil((self.capacity - tokens) / self.rate),
            "used": int(self.capacity - tokens),
        }
        if not allowed:
            info["retry_after_s"] = max(1, math.ceil((1 - tokens) / self.rate))
        return allowed, info

    def reset(self) -> None:
        with self._lock:
            self._state.clear()


class LeakyBucket:
    """Shopify-like: a bucket of ``capacity`` calls that leaks ``rate`` calls per second."""

    def __init__(self, capacity: float, rate: float) -> None:
        self.capacity, self.rate = capacity, rate
        self._state: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> tuple[bool, dict]:
        now = time.monotonic()
        with self._lock:
            level, last = self._state.get(key, (0.0, now))
            level = max(0.0, level - (now - last) * self.rate)
            allowed = level + 1 <= self.capacity
            if allowed:
                level += 1
            self._state[key] = (level, now)
        info = {
            "limit": int(self.capacity),
            "remaining": max(0, int(self.capacity - level)),
            "reset_s": math.ceil(level / self.rate),
            "used": math.ceil(level),
        }
        if not allowed:
            # Shopify answers with a float, e.g. "Retry-After: 2.0"
            info["retry_after_s"] = max(1.0, round((level + 1 - self.capacity) / self.rate, 1))
        return allowed, info

    def reset(self) -> None:
        with self._lock:
            self._state.clear()


class FixedWindow:
    """HubSpot/GitHub-like: ``limit`` requests per ``window`` seconds, windows on wall time."""

    def __init__(self, limit: float, window: float) -> None:
        self.limit, self.window = max(1, int(limit)), window
        self._state: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

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

    def reset(self) -> None:
        with self._lock:
            self._state.clear()
