"""Keep the garbage collector off the objects that were alive before a step's partitions.

Writing a partition creates thousands of short-lived containers per page (the parsed
records, then their Arrow conversion). CPython's full collections walk every tracked object
of the process, and in a Dagster run most of them are Dagster's own (definitions, run
state, modules): profiled, parsing and converting a page of 1,000 records cost 2-3x more
with them scanned over and over than with them frozen. ``gc.freeze()`` moves the objects
alive now into a permanent generation the collector skips; ``gc.unfreeze()`` hands them
back when the last writer finishes, so garbage cycles among them are still collected
afterwards.

With the parse pause of ``http/fastjson.py`` it is one of the project's two
garbage-collector settings, both behind one switch: ``INGESTION_GC_TUNING=0`` turns them off
(e.g. to compare, or if a host program manages the collector itself).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ingestion_assets.http.fastjson import gc_tuning_enabled

_lock = threading.Lock()
_writers = 0



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
