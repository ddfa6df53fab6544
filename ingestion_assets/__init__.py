"""REST API endpoints as partitioned Dagster assets (see README.md)."""

import os as _os
import sys as _sys

# Arrow's allocator for the tables a step builds: the system allocator. With pyarrow's default
# (mimalloc) a 1M-record step peaked about 13 MB higher (229-231 MB against 217 MB, three
# runs each, docs/performance.md) at the same speed: its per-thread heaps keep what the
# fetch, archive and table threads freed. Arrow reads this once, when pyarrow is first
# imported; a value the user set wins, and a process that imported pyarrow first keeps its pool.
if "pyarrow" not in _sys.modules:
    _os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
