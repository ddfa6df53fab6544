"""The HTTP core: fetch every record of a REST endpoint, complete or not at all.

No Dagster import here: ``resources.py`` wraps this package for Dagster.

Example::

    from ingestion_assets.http import ApiClient, RateLimiter, RetryPolicy, auth, paginators

    client = ApiClient("https://api.example.com", auth=auth.BearerToken(token),
                       rate_limiter=RateLimiter(25, burst=25), source="payments")
    stream = client.fetch_pages("/v1/charges", params={"limit": 100},
                                paginator=paginators.LastRecordCursor(),
                                records_path="data", endpoint="charges")
    for page in stream:
        ...  # page.body (raw bytes), page.records
    stream.stats.to_dict()
"""

from ingestion_assets.http import auth, errors, paginators, redaction
from ingestion_assets.http.client import ApiClient, PageStream, looks_like_error
from ingestion_assets.http.page import FetchStats, Page
from ingestion_assets.http.paginators import PageRequest, Paginator
from ingestion_assets.http.ratelimit import RateLimiter
from ingestion_assets.http.redaction import redact
from ingestion_assets.http.retry import RetryPolicy

__all__ = [
    "ApiClient",
    "FetchStats",
    "Page",
    "PageRequest",
    "PageStream",
    "Paginator",
    "RateLimiter",
    "RetryPolicy",
    "auth",
    "errors",
    "looks_like_error",
    "paginators",
    "redact",
    "redaction",
]
