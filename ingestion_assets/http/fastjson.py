"""Parse a page body with orjson, without the cyclic garbage collector running meanwhile.

A page of 1,000 records creates a few thousand dicts and lists at once. Every 700 new
containers CPython runs a collection, and the records of the page survive it (they are
still being built), so they are promoted and counted towards full collections, which walk
every object of the process - in a Dagster run hundreds of thousands of them. Profiled,
that made parsing a 300 kB page 4x slower than orjson itself (8.5 ms instead of 2 ms).

JSON cannot contain reference cycles, so pausing the collector while a body is parsed
loses nothing; it runs again as soon as the parse returns. Safe across threads: the
collector is re-enabled when the last concurrent parse ends, and only if it was on.

This and the heap freeze of an endpoint's step (``io_managers/heap.py``) are the project's
only garbage-collector settings, both behind one switch: ``INGESTION_GC_TUNING=0`` turns
them off (docs/performance.md).
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
from collections.abc import Iterator
from typing import Any

import orjson

_lock = threading.Lock()
_active = 0
_was_enabled = False


#: The one switch of the project's garbage-collector settings ("0", "false", "no", "off").
SWITCH = "INGESTION_GC_TUNING"


def gc_tuning_enabled() -> bool:
    """Whether the garbage-collector settings are on (``$INGESTION_GC_TUNING``, default on)."""
    return os.environ.get(SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    global _active, _was_enabled
    if not gc_tuning_enabled():
        yield
        return
    with _lock:
        if _active == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _was_enabled:
                gc.enable()


def loads(content: bytes | bytearray | memoryview | str) -> Any:
    """``orjson.loads`` with the cyclic garbage collector paused (same errors)."""
    with _collector_paused():
        return orjson.loads(content)


def loads_each(items: list) -> list[Any]:
    """``[orjson.loads(item) for item in items]`` with the collector paused once for all."""
    with _collector_paused():
        return [orjson.loads(item) for item in items]
