"""The project's one garbage-collector setting: the heap of a step frozen while it writes.

Writing a partition creates thousands of short-lived containers per page (the records the
HTTP client parses to paginate, the Arrow conversions). CPython's full collections walk
every tracked object of the process, and in a Dagster run most of them are Dagster's own
(definitions, run state, modules): scanned again and again, they made the fetch thread's
CPU about 1.4x what it is with them frozen (300k records in pages of 1,000; see
docs/performance.md). ``gc.freeze()`` moves the objects alive now into a permanent
generation the collector skips; ``gc.unfreeze()`` hands them back when the last writer
finishes, so garbage cycles among them are still collected afterwards.

One switch: ``INGESTION_GC_TUNING=0`` (or ``false``, ``no``, ``off``) turns it off, e.g. to
compare, or when a host program manages the collector itself. (Pausing the collector while
a page is parsed was measured too: with the heap frozen it saved nothing measurable, and the
collection it deferred came due right after each parse.)
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: The switch of the garbage-collector setting ("0", "false", "no", "off": off).
SWITCH = "INGESTION_GC_TUNING"

_lock = threading.Lock()
_writers = 0


def gc_tuning_enabled() -> bool:
    """Whether the garbage-collector setting is on (``$INGESTION_GC_TUNING``, default on)."""
    return os.environ.get(SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Freeze the current heap for the duration of the block (nestable, thread-safe)."""
    global _writers
    if not gc_tuning_enabled():
        yield
        return
    with _lock:
        if _writers == 0:
            gc.freeze()
        _writers += 1
    try:
        yield
    finally:
        with _lock:
            _writers -= 1
            if _writers == 0:
                gc.unfreeze()
