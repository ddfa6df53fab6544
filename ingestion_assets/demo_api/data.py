"""Deterministic, on-demand record storage for the demo API.

A :class:`Collection` is one list endpoint's data set. Record ``i`` never exists
as an object until a page needs it: its creation time is arithmetic in ``i``
(monotone, so time windows are found by bisection) and every other field is
derived from a 64-bit hash of ``(seed, endpoint, i)``. ``updated`` is ``created``
plus a bounded delay, so an ``updated`` window only needs the records created in
``[window_start - max_delay, window_end)``. Millions of records therefore cost
no memory, and a page costs time proportional to its size.

Mutations (inserted records, bumped ``updated`` times) live in a small in-memory
overlay that every query merges in.
"""

from __future__ import annotations

import hashlib
import heapq
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice

M64 = (1 << 64) - 1
#: Index of the first inserted (overlay) record; far above any generated index, so
#: inserted records always sort after generated ones when ordered by id.
EXTRA_BASE = 10**12

_CHUNK = 256


def stable_seed(*parts) -> int:
    """A 64-bit seed from any parts, stable across processes (unlike ``hash``)."""
    raw = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little")


def mix(x: int) -> int:
    """splitmix64 finaliser: a cheap, well-spread 64-bit hash of ``x``."""
    z = (x + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


@dataclass
class Query:
    """One list request, in the collection's terms.

    Time bounds are unix seconds; ``*_min`` inclusive, ``*_max`` exclusive.
    ``after`` is the sort key of the last record already returned (exclusive).
    ``pred(coll, idx, h)`` filters on derived fields (e.g. a status).
    """

    now: int
    created_min: int | None = None
    created_max: int | None = None
    updated_min: int | None = None
    updated_max: int | None = None
    order: str = "id"  # "id" | "created" | "updated" (updated: ascending only)
    desc: bool = False
    after: object = None
    pred: Callable | None = None


class Collection:
    """The records of one endpoint (optionally within a scope such as a repository).

    Args:
        seed: 64-bit seed for this endpoint.
        start: creation time of record 0 (unix seconds).
        interval: seconds between records (rate mode: the set grows as time passes).
        count: fixed number of records spread over ``[start, end)`` (records mode).
        end: end of the spread in records mode.
    """

    def __init__(
        self,
        seed: int,
        start: int,
        *,
        interval: float | None = None,
        count: int | None = None,
        end: int | None = None,
    ) -> None:
        self.seed = seed
        self.start = start
        self.interval = interval
        self.fixed_count = count
        if count is not None:
            span = max(1, (end or start + 1) - start)
            self.span = span
            mean = span / max(1, count)
        else:
            self.span = None
            mean = float(interval)
        # Bounded delay between created and updated: at most 6 h, and never more than
        # ~500 records' worth, so an updated-window look-up stays a small scan.
        self.max_delay = int(min(21600, max(60, mean * 500)))
        self.lock = threading.RLock()
        self.extras: dict[int, int] = {}  # idx -> created
        self.bumped: dict[int, int] = {}  # idx -> updated (overrides the generated one)
        self.extra_updated: dict[int, int] = {}

    # ---- generated part -------------------------------------------------------------

    def created_of(self, i: int) -> int:
        if i >= EXTRA_BASE:
            return self.extras[i]
        if self.fixed_count is not None:
            return self.start + (i * self.span) // self.fixed_count
        return self.start + int(i * self.interval)

    def base_count(self, now: int) -> int:
        """Number of generated records created before ``now``."""
        if self.fixed_count is not None:
            n = self.fixed_count
            if now >= self.start + self.span:
                return n
        elif now <= self.start:
            return 0
        else:
            n = int((now - self.start) / self.interval) + 2
        # created < now, found by bisection over the monotone creation time
        return bisect_left(range(n), now, key=self.created_of)

    def base_pos(self, t: int, n: int) -> int:
        """First generated index with created >= t."""
        return bisect_left(range(n), t, key=self.created_of)

    def hash_of(self, i: int) -> int:
        return mix(self.seed ^ (i * 0xD1B54A32D192ED03 & M64))

    def updated_of(self, i: int, now: int, h: int | None = None) -> int:
        b = self.bumped.get(i) if self.bumped else None
        if b is not None:
            return b
        if i >= EXTRA_BASE:
            return self.extra_updated.get(i, self.extras[i])
        c = self.created_of(i)
        if h is None:
            h = self.hash_of(i)
        # Half of the records are never updated; the rest within max_delay. An update still
        # due (after `now`) has not happened yet: the record shows its creation time until
        # then, and changes once when the clock passes it, as real data does.
        d = 0 if h & 1 else (h >> 40) % (self.max_delay + 1)
        u = c + d
        return u if u < now else c

    def times(self, i: int, now: int, h: int) -> tuple[int, int]:
        """``(created, updated)`` of record ``i`` (hot path of rendering)."""
        if i >= EXTRA_BASE or (self.bumped and i in self.bumped):
            return self.created_of(i), self.updated_of(i, now, h)
        if self.fixed_count is not None:
            c = self.start + (i * self.span) // self.fixed_count
        else:
            c = self.start + int(i * self.interval)
        u = c if h & 1 else c + (h >> 40) % (self.max_delay + 1)
        return c, (u if u < now else c)

    # ---- overlay ----------------------------------------------------------------------

    def insert(self, n: int, at: int) -> list[int]:
        """Adds ``n`` records created (and updated) at ``at``; returns their indices."""
        with self.lock:
            first = EXTRA_BASE + len(self.extras)
            new = list(range(first, first + n))
            for i in new:
                self.extras[i] = at
            return new

    def bump(self, idxs, at: int) -> None:
        with self.lock:
            for i in idxs:
                self.bumped[i] = at

    def exists(self, i: int, now: int) -> bool:
        if i >= EXTRA_BASE:
            return i in self.extras and self.extras[i] <= now
        return 0 <= i < self.base_count(now)

    def reset(self) -> None:
        with self.lock:
            self.extras.clear()
            self.bumped.clear()

    # ---- queries ----------------------------------------------------------------------

    def key_of(self, i: int, order: str, now: int):
        if order == "id":
            return i
        if order == "created":
            return (self.created_of(i), i)
        return (self.updated_of(i, now), i)

    def _matches(self, i: int, q: Query) -> bool:
        c = self.created_of(i)
        if q.created_min is not None and c < q.created_min:
            return False
        if q.created_max is not None and c >= q.created_max:
            return False
        if q.updated_min is not None or q.updated_max is not None:
            u = self.updated_of(i, q.now)
            if q.updated_min is not None and u < q.updated_min:
                return False
            if q.updated_max is not None and u >= q.updated_max:
                return False
        return q.pred is None or q.pred(self, i, self.hash_of(i))

    def _overlay(self, q: Query) -> list:
        """Inserted and bumped records matching ``q``, as sorted ``(key, idx)``."""
        with self.lock:
            cands = [i for i, c in self.extras.items() if c <= q.now]
            cands += [i for i in self.bumped if i < EXTRA_BASE]
        now_n = None
        out = []
        for i in cands:
            if i < EXTRA_BASE:
                if now_n is None:
                    now_n = self.base_count(q.now)
                if i >= now_n:
                    continue
            if self._matches(i, q):
                out.append((self.key_of(i, q.order, q.now), i))
        out.sort(reverse=q.desc)
        if q.after is not None:
            if q.desc:
                out = [x for x in out if x[0] < q.after]
            else:
                out = [x for x in out if x[0] > q.after]
        return out

    def _base_range(self, q: Query) -> tuple[int, int]:
        n = self.base_count(q.now)
        lo, hi = 0, n
        if q.created_min is not None:
            lo = max(lo, self.base_pos(q.created_min, n))
        if q.created_max is not None:
            hi = min(hi, self.base_pos(q.created_max, n))
        if q.updated_min is not None:
            lo = max(lo, self.base_pos(q.updated_min - self.max_delay, n))
        if q.updated_max is not None:
            hi = min(hi, self.base_pos(q.updated_max, n))
        return lo, max(lo, hi)

    def _base_iter(self, q: Query) -> Iterator:
        """Generated records matching ``q`` in id/created order, as ``(key, idx)``."""
        lo, hi = self._base_range(q)
        after = q.after
        if after is not None:
            if q.order == "id":
                a = after
                if q.desc:
                    hi = min(hi, max(lo, a if a < EXTRA_BASE else hi))
                else:
                    lo = max(lo, min(hi, a + 1)) if a < EXTRA_BASE else hi
            else:
                c, a = after
                if a < EXTRA_BASE:
                    if q.desc:
                        hi = min(hi, max(lo, a))
                    else:
                        lo = max(lo, min(hi, a + 1))
                else:
                    p = bisect_right(range(hi), c, lo=lo, key=self.created_of)
                    if q.desc:
                        hi = min(hi, p)
                    else:
                        lo = max(lo, p)
        check_updated = q.updated_min is not None or q.updated_max is not None
        bumped = self.bumped
        pred = q.pred
        umin, umax, now = q.updated_min, q.updated_max, q.now
        by_id = q.order == "id"
        rng = range(hi - 1, lo - 1, -1) if q.desc else range(lo, hi)
        for i in rng:
            if bumped and i in bumped:
                continue  # served from the overlay with its new updated time
            if check_updated or pred is not None:
                h = self.hash_of(i)
                if check_updated:
                    u = self.updated_of(i, now, h)
                    if (umin is not None and u < umin) or (umax is not None and u >= umax):
                        continue
                if pred is not None and not pred(self, i, h):
                    continue
            yield (i if by_id else (self.created_of(i), i)), i

    def _updated_iter(self, q: Query) -> Iterator:
        """Records in ascending (updated, idx) order: a streaming sort over the bounded delay.

        Records are visited in creation order; a record with updated < created(next) can no
        longer be overtaken, because every later record has updated >= its own created.
        """
        lo, hi = self._base_range(q)
        if q.after is not None:
            lo = max(lo, self.base_pos(q.after[0] - self.max_delay, self.base_count(q.now)))
        overlay = self._overlay(q)
        heap = list(overlay)
        heapq.heapify(heap)
        after = q.after
        bumped = self.bumped
        i = lo
        while i < hi or heap:
            if i < hi:
                j = min(hi, i + _CHUNK)
                for k in range(i, j):
                    if bumped and k in bumped:
                        continue
                    if not self._matches(k, q):
                        continue
                    key = (self.updated_of(k, q.now), k)
                    if after is None or key > after:
                        heapq.heappush(heap, (key, k))
                i = j
                bound = self.created_of(i) if i < hi else None
            else:
                bound = None
            while heap and (bound is None or heap[0][0][0] < bound):
                yield heapq.heappop(heap)

    def iter(self, q: Query) -> Iterator[int]:
        """Indices matching ``q`` in order, strictly after ``q.after``."""
        if q.order == "updated":
            for _key, i in self._updated_iter(q):
                yield i
            return
        overlay = self._overlay(q)
        base = self._base_iter(q)
        if not overlay:
            for _key, i in base:
                yield i
            return
        for _key, i in heapq.merge(base, overlay, reverse=q.desc):
            yield i

    def page(self, q: Query, limit: int, offset: int = 0) -> tuple[list[int], bool]:
        """Up to ``limit`` indices after ``offset`` matches, and whether more follow."""
        if (
            offset
            and q.after is None
            and q.pred is None
            and q.updated_min is None
            and q.updated_max is None
            and q.order in ("id", "created")
            and not self.extras
            and not self.bumped
        ):
            # Offset into a plain contiguous range: arithmetic, so deep offsets cost nothing.
            lo, hi = self._base_range(q)
            if q.desc:
                s = hi - 1 - offset
                got = list(range(s, max(lo - 1, s - limit - 1), -1)) if s >= lo else []
            else:
                s = lo + offset
                got = list(range(s, min(hi, s + limit + 1))) if s < hi else []
        else:
            got = list(islice(self.iter(q), offset, offset + limit + 1))
        return got[:limit], len(got) > limit

    def count(self, q: Query) -> int:
        """Number of records matching ``q`` (arithmetic when no per-record filter applies)."""
        if q.pred is None and q.updated_min is None and q.updated_max is None and q.after is None:
            lo, hi = self._base_range(q)
            with self.lock:
                nb = sum(1 for i in self.bumped if lo <= i < hi and i < EXTRA_BASE)
            return (hi - lo) - nb + len(self._overlay(q))
        return sum(1 for _ in self.iter(q))
