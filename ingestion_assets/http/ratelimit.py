"""Client-side rate limiting: stay under the API's limit instead of bouncing off it.

A token bucket (``rate`` requests per second, ``burst`` at once) shared by every thread
of one source, plus feedback from the API's own headers: when ``X-RateLimit-Remaining``
gets close to zero before the window resets, the limiter spreads the remaining requests
over the time left (and waits for the reset at zero), so a well-configured run sees few
or no 429s. A 429 pauses every thread of the source, not just the one that got it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping

from ingestion_assets.http.concurrency import ConcurrencyGate
from ingestion_assets.http.errors import WaitTooLongError

# A reset value from this on is an epoch timestamp in seconds (GitHub), below it a delta
# (Stripe-like); from _EPOCH_MS_THRESHOLD on it is an epoch timestamp in milliseconds.
_EPOCH_THRESHOLD = 1_000_000_000
_EPOCH_MS_THRESHOLD = 100_000_000_000


def parse_reset(value: str | None, now_epoch: float | None = None) -> float | None:
    """Seconds until a rate-limit window resets.

    Reads delta-seconds (``"30"``), epoch seconds (``"1767225600"``) and epoch milliseconds
    (``"1767225600000"``). Returns None when absent or not a number; may return a very large
    (or infinite) wait for a hostile value: the caller caps it (see `RateLimiter.observe`).
    """
    if value is None:
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    if math.isnan(number):
        return None
    if number >= _EPOCH_MS_THRESHOLD and math.isfinite(number):
        number /= 1000.0
    if _EPOCH_THRESHOLD <= number < _EPOCH_MS_THRESHOLD:
        now_epoch = time.time() if now_epoch is None else now_epoch
        return max(0.0, number - now_epoch)
    return max(0.0, number)


def _header_number(headers: Mapping[str, str], name: str | None) -> float | None:
    if not name:
        return None
    value = headers.get(name)
    if value is None:
        return None
    try:
        return float(str(value).split(",")[0].strip())
    except ValueError:
        return None


class RateLimiter:
    """Thread-safe token bucket with feedback from the API's rate-limit headers.

    Args:
        rate: Requests per second allowed; None for no client-side limit (the header
            feedback and 429 pauses still apply).
        burst: Requests allowed at once after a quiet period; defaults to ``rate``
            (at least 1).
        remaining_header: Header holding the requests left in the current window.
        reset_header: Header holding when the window resets (delta or epoch seconds).
        limit_header: Header holding the window's size, used to scale the slow-down.
        low_watermark: Fraction of the limit below which the limiter starts spreading the
            remaining requests over the time left before the reset.
        max_in_flight: Requests allowed on the wire at once (a `ConcurrencyGate` taken by
            :meth:`acquire`, freed by :meth:`release`); None for no bound.
    """

    def __init__(
        self,
        rate: float | None = None,
        burst: int | None = None,
        *,
        remaining_header: str | None = "X-RateLimit-Remaining",
        reset_header: str | None = "X-RateLimit-Reset",
        limit_header: str | None = "X-RateLimit-Limit",
        low_watermark: float = 0.1,
        max_in_flight: int | None = None,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive (or None for unlimited)")
        self.rate = float(rate) if rate else None
        self.burst = max(1, int(burst if burst is not None else (rate or 1)))
        self.remaining_header = remaining_header
        self.reset_header = reset_header
        self.limit_header = limit_header
        self.low_watermark = low_watermark
        self._lock = threading.Lock()
        self._tokens = float(self.burst)
        self._last = time.monotonic()
        self._not_before = 0.0  # monotonic time before which nobody may send
        self._pause_reason: str | None = None  # the headers that imposed the latest pause
        self._in_flight = 0
        self.gate = ConcurrencyGate(max_in_flight)

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self.rate}, burst={self.burst})"

    def acquire(self, max_wait: float = math.inf) -> float:
        """Wait for permission to send one request; returns the seconds waited.

        Every call must be paired with :meth:`release` once the response (or the
        failure) is in, so the header feedback knows how many requests are in flight.

        Raises:
            WaitTooLongError: The API's headers imposed a pause longer than ``max_wait``
                seconds (nothing is acquired then, and no release is due).
        """
        self.gate.enter()  # at most `max_in_flight` requests of the source on the wire
        try:
            return self._acquire_token(max_wait)
        except BaseException:
            self.gate.leave()
            raise

    def _acquire_token(self, max_wait: float) -> float:
        started = time.monotonic()
        with self._lock:
            ahead = self._not_before - started
            if ahead > max_wait:
                raise self._too_long(ahead, max_wait)
            self._in_flight += 1
            now = started
            wait = 0.0
            if self.rate is not None:
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                self._last = now
                # Reserve a token even if it is not there yet: the deficit orders the
                # waiting threads, each sleeping until its own token is due.
                self._tokens -= 1.0
                if self._tokens < 0:
                    wait = -self._tokens / self.rate
        if wait > 0:
            time.sleep(wait)
        # A pause (429, header feedback) may have been imposed while we slept: honour it.
        while True:
            with self._lock:
                remaining = self._not_before - time.monotonic()
                if remaining > max_wait:
                    self._in_flight = max(0, self._in_flight - 1)
                    raise self._too_long(remaining, max_wait)
            if remaining <= 0:
                break
            time.sleep(remaining)
        return time.monotonic() - started if (wait > 0 or self._not_before > started) else 0.0

    def _too_long(self, wait: float, max_wait: float) -> WaitTooLongError:
        reason = self._pause_reason or "the API's answers"
        return WaitTooLongError(
            f"{reason} impose a wait of {_seconds(wait)} before the next request, longer "
            f"than the {_seconds(max_wait)} cap (limits.max_wait_seconds)"
        )

    def release(self) -> None:
        """The request of a matching :meth:`acquire` is done."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
        self.gate.leave()

    @property
    def in_flight(self) -> int:
        """Requests acquired and not yet released."""
        return self._in_flight

    def drain(self) -> None:
        """Empty the bucket: the next request waits ``1 / rate`` seconds.

        For a limiter that takes over from another one sharing the same share of the
        API's limit (a Spark task after the task before it in the same slot): a full burst
        at start would add to what the previous one just sent.
        """
        with self._lock:
            self._tokens, self._last = 0.0, time.monotonic()

    def pause(self, seconds: float) -> None:
        """Hold every request of this limiter for ``seconds`` (after a 429)."""
        if not seconds > 0:  # also NaN
            return
        with self._lock:
            self._not_before = max(self._not_before, time.monotonic() + seconds)

    def observe(self, headers: Mapping[str, str]) -> float:
        """Read the API's rate-limit headers; slows down when close to the limit.

        Returns the pause imposed (0 when there is headroom). A pause longer than the
        caller's cap is not slept: the next :meth:`acquire` refuses it (a last page needs
        no next request, so it is not failed for the server's long reset).
        """
        remaining = _header_number(headers, self.remaining_header)
        if remaining is None:
            return 0.0
        reset_in = parse_reset(headers.get(self.reset_header) if self.reset_header else None)
        if reset_in is None:
            return 0.0
        limit = _header_number(headers, self.limit_header) or float(self.burst)
        threshold = max(1.0, self.low_watermark * limit)
        # Requests already on their way will spend part of what remains.
        effective = remaining - self._in_flight
        if effective > threshold:
            return 0.0
        # Spread what is left over the time left; with nothing left, wait for the reset.
        pause = reset_in if effective <= 0 else reset_in / (effective + 1)
        with self._lock:
            self._pause_reason = (
                f"the server's rate-limit headers ({self.remaining_header}: "
                f"{headers.get(self.remaining_header)!r}, {self.reset_header}: "
                f"{headers.get(self.reset_header)!r})"
            )
        self.pause(pause)
        return pause


def _seconds(value: float) -> str:
    if not math.isfinite(value):
        return "forever"
    if value >= 86400 * 365:
        return f"{value / (86400 * 365.25):.1f} years"
    return f"{value:.0f} s"
