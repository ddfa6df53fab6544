"""Every default of the HTTP core, in one place.

The core's classes (``RetryPolicy``, ``Budgets``, ``ApiClient``, the paginators), the YAML
models (``specs.py``) and the Dagster resource (``resources.py``) all take their defaults
from here, so a source with no options behaves the same whichever layer built it
(``ingestion_assets_tests/test_specs.py::test_defaults_agree_across_layers`` checks it).
"""

from __future__ import annotations

MIB = 1024 * 1024

# Retries (RetryPolicy, RetrySpec, ApiResource)
MAX_ATTEMPTS = 5
"""Attempts of one request against transient failures, the first included."""
RATE_LIMIT_ATTEMPTS = 8
"""429 answers tolerated for one request (a budget apart from MAX_ATTEMPTS)."""
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
RETRY_AFTER_FLOOR_SECONDS = 0.5
"""Shortest wait after a 429, whatever Retry-After says (doubles per consecutive 429)."""

# Requests of one source open at once, across the partitions of a run (Source, ApiResource)
MAX_CONCURRENCY = 4

# Timeouts (ApiClient, TimeoutSpec, ApiResource)
CONNECT_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 60.0

# Per-request budgets (Budgets, LimitsSpec, ApiResource)
MAX_BODY_MB = 256
REQUEST_DEADLINE_SECONDS = 600.0
MAX_WAIT_SECONDS = 900.0
"""Longest Retry-After / rate-limit reset honoured; a longer one fails the fetch."""
MAX_REDIRECTS = 5
MAX_STREAM_MB = 4096
"""Largest streamed (NDJSON, CSV) body, read in pieces; one record stays within MAX_BODY_MB."""

# Pagination (paginators, pagination specs)
PAGE_SIZE = 100
"""Records asked per page by the offset and page-number styles when none is set."""
