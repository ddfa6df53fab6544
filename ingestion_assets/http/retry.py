"""Retry policy: which failures are retried, how often, and how long to wait.

Two separate budgets, because a 429 is not a 500: a rate limit says "come back later",
and burning the error budget on it (or, with ``Retry-After: 0``, burning every attempt
in the same millisecond) turns a slow run into a failed one.
"""

from __future__ import annotations

import datetime
import email.utils
import random
import time
from dataclasses import dataclass, field

from ingestion_assets.http import defaults

# Statuses retried with the error budget. 408/425 are transient by definition.
DEFAULT_RETRY_STATUSES = frozenset({408, 425, 500, 502, 503, 504, 520, 521, 522, 523, 524})


@dataclass(frozen=True)
class RetryPolicy:
    """How the client retries a failing request.

    Args:
        max_attempts: Total attempts for one request against transient failures (5xx,
            connection errors, timeouts, bad 200 bodies), including the first.
        rate_limit_attempts: Separate budget of 429 answers tolerated for one request.
        backoff_base: First backoff delay in seconds; doubles each attempt.
        backoff_max: Cap of a single backoff delay in seconds.
        jitter: Randomise delays (between half and the full delay) so that parallel
            workers do not retry in lockstep.
        retry_after_floor: Minimum wait after a 429, whatever ``Retry-After`` says; it
            doubles with each consecutive 429, so ``Retry-After: 0`` cannot exhaust the
            budget at once.
        retry_after_max: Longest wait honoured from a ``Retry-After`` header (a longer
            one is shortened to this). The client's ``Budgets.max_wait_s`` is the hard cap:
            a server asking for more fails the fetch.
        retry_statuses: HTTP statuses retried with the error budget.
    """

    max_attempts: int = defaults.MAX_ATTEMPTS
    rate_limit_attempts: int = defaults.RATE_LIMIT_ATTEMPTS
    backoff_base: float = defaults.BACKOFF_BASE_SECONDS
    backoff_max: float = defaults.BACKOFF_MAX_SECONDS
    jitter: bool = True
    retry_after_floor: float = defaults.RETRY_AFTER_FLOOR_SECONDS
    retry_after_max: float = defaults.MAX_WAIT_SECONDS
    retry_statuses: frozenset[int] = field(default=DEFAULT_RETRY_STATUSES)

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.rate_limit_attempts < 0:
            raise ValueError("max_attempts must be >= 1 and rate_limit_attempts >= 0")
        if min(self.backoff_base, self.backoff_max, self.retry_after_floor) < 0:
            raise ValueError("delays must not be negative")

    def _jittered(self, delay: float) -> float:
        # "Equal jitter": keeps at least half the delay, so the floor still holds.
        return delay / 2 + random.uniform(0, delay / 2) if self.jitter else delay

    def backoff(self, failures: int) -> float:
        """Delay before the next attempt after ``failures`` transient failures (>= 1)."""
        delay = min(self.backoff_max, self.backoff_base * (2 ** max(0, failures - 1)))
        return self._jittered(delay)

    def rate_limit_delay(self, retry_after: float | None, rate_limited: int) -> float:
        """Delay after the ``rate_limited``-th consecutive 429 (>= 1).

        ``Retry-After`` is honoured up to ``retry_after_max``; the floor (doubling per
        consecutive 429, capped at ``backoff_max``) applies when the header is absent,
        zero or smaller.
        """
        floor = min(
            max(self.backoff_max, self.retry_after_floor),
            self.retry_after_floor * (2 ** max(0, rate_limited - 1)),
        )
        floor = self._jittered(floor) if floor > self.retry_after_floor else floor
        if retry_after is None:
            return floor
        return max(floor, min(retry_after, self.retry_after_max))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date).

    Returns None when absent or unparsable; never negative.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        return None if number != number else max(0.0, number)  # NaN: unparsable
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # "-0000" means UTC without a zone
        when = when.replace(tzinfo=datetime.timezone.utc)
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)
