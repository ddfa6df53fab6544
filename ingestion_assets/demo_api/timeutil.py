"""Timestamp parsing and fast formatting for the demo API.

All internal times are integer unix seconds (UTC). Formatting is on the hot path
(two timestamps per record, a million records per benchmark), so the date part is
cached per day and only the time of day is formatted per call.
"""

from __future__ import annotations

import email.utils
import re
import time
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache

_ISO_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|z|[+-]\d{2}:?\d{2})?$"
)


class TimeParseError(ValueError):
    """A timestamp parameter could not be parsed."""


def parse_iso(value: str, default_offset_s: int = 0) -> int:
    """Parses an ISO 8601 date or datetime into unix seconds.

    Args:
        value: e.g. ``2025-01-02``, ``2025-01-02T03:04:05Z``, ``2025-01-02T03:04:05-05:00``.
        default_offset_s: UTC offset assumed when the value carries none (Shopify
            reads naive timestamps in the shop's time zone).

    Raises:
        TimeParseError: if the value is not a valid ISO 8601 timestamp.
    """
    m = _ISO_RE.match(value.strip()) if isinstance(value, str) else None
    if not m:
        raise TimeParseError(f"invalid timestamp: {value!r}")
    y, mo, d, hh, mi, ss, frac, tz = m.groups()
    try:
        naive = datetime(int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0))
    except ValueError as exc:
        raise TimeParseError(f"invalid timestamp: {value!r}") from exc
    if tz is None:
        offset = default_offset_s
    elif tz in ("Z", "z"):
        offset = 0
    else:
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    epoch = int((naive - datetime(1970, 1, 1)).total_seconds())
    return epoch - offset


def to_epoch(value) -> int:
    """Accepts unix seconds, ISO strings or datetimes (naive = UTC) and returns unix seconds."""
    if value is None:
        raise TimeParseError("missing timestamp")
    if isinstance(value, bool):
        raise TimeParseError(f"invalid timestamp: {value!r}")
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return int(value.timestamp())
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=timezone.utc).timestamp())
    if isinstance(value, str):
        s = value.strip()
        if s.lstrip("-").isdigit():
            return int(s)
        return parse_iso(s)
    raise TimeParseError(f"invalid timestamp: {value!r}")


@lru_cache(maxsize=8192)
def _day_prefix(day: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=day)).isoformat()


class _DayCache(dict):
    """day number -> ``YYYY-MM-DD`` (a plain dict look-up on the hot path)."""

    def __missing__(self, day: int) -> str:
        v = self[day] = _day_prefix(day)
        return v


_DAYS = _DayCache()
_TOD: list[str] = []  # second of day -> "HH:MM:SS", built on first use (86,400 short strings)


def _tod() -> list[str]:
    if not _TOD:
        _TOD.extend(f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86400))
    return _TOD


def iso_z(ts: int) -> str:
    """``2025-01-02T03:04:05Z``."""
    day, sec = divmod(ts, 86400)
    return f"{_DAYS[day]}T{(_TOD or _tod())[sec]}Z"


def iso_ms_z(ts: int) -> str:
    """``2025-01-02T03:04:05.000Z`` (HubSpot style)."""
    day, sec = divmod(ts, 86400)
    return f"{_DAYS[day]}T{(_TOD or _tod())[sec]}.000Z"


def offset_suffix(offset_s: int) -> str:
    """``-05:00`` for -18000."""
    sign = "-" if offset_s < 0 else "+"
    h, m = divmod(abs(offset_s) // 60, 60)
    return f"{sign}{h:02d}:{m:02d}"


def iso_offset(ts: int, offset_s: int, suffix: str) -> str:
    """Local time with an explicit offset, e.g. ``2025-01-01T19:00:00-05:00``."""
    day, sec = divmod(ts + offset_s, 86400)
    return f"{_DAYS[day]}T{(_TOD or _tod())[sec]}{suffix}"


def day_string(ts: int) -> str:
    return _day_prefix(ts // 86400)


def http_date(ts: float) -> str:
    """RFC 7231 IMF-fixdate, as used in ``Retry-After`` and ``Date``."""
    return email.utils.formatdate(ts, usegmt=True)


def wall_now() -> int:
    return int(time.time())
