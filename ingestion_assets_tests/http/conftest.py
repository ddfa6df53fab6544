"""Helpers of the HTTP core tests: fast retry settings and ground-truth comparison."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import pytest

from ingestion_assets.http import ApiClient, RateLimiter, RetryPolicy, auth, paginators

# Small delays keep the whole folder quick; the floors are still non-zero.
FAST_RETRY = RetryPolicy(
    max_attempts=4,
    rate_limit_attempts=6,
    backoff_base=0.01,
    backoff_max=0.05,
    retry_after_floor=0.02,
    retry_after_max=1.5,
)

FEB1 = 1738368000  # 2025-02-01T00:00:00Z
SIX_HOURS = 6 * 3600
FEB1_ISO, FEB8_ISO = "2025-02-01T00:00:00Z", "2025-02-08T00:00:00Z"


def fetch_emails(client, workers: int = 1, limit: int = 10, **kwargs):
    """The crm marketing emails of one week: offset pagination with a declared total."""
    return client.fetch_pages(
        "/marketing/v3/emails",
        params={"updated_gte": FEB1_ISO, "updated_lt": FEB8_ISO},
        paginator=paginators.OffsetPaginator(limit=limit, total_path="total"),
        records_path="results",
        workers=workers,
        endpoint="emails",
        **kwargs,
    )


def emails_truth(api):
    """What the demo API holds for :func:`fetch_emails`."""
    return api.records("crm", "emails", start=FEB1_ISO, end=FEB8_ISO, field="updated")


def record_ids(records: Iterable[dict], key: str = "id") -> list:
    return [r[key] for r in records]


def assert_exactly_once(got: Iterable[dict], truth: Iterable[dict], key: str = "id") -> None:
    """Every ground-truth record arrived, none twice, nothing extra."""
    got_ids = record_ids(got, key)
    truth_ids = record_ids(truth, key)
    dupes = [k for k, n in Counter(got_ids).items() if n > 1]
    assert not dupes, f"duplicated records: {dupes[:5]}"
    missing = set(truth_ids) - set(got_ids)
    extra = set(got_ids) - set(truth_ids)
    assert not missing, f"{len(missing)} records lost, e.g. {sorted(missing)[:5]}"
    assert not extra, f"{len(extra)} unexpected records, e.g. {sorted(extra)[:5]}"
    assert truth_ids, "the ground truth is empty: the test proves nothing"


def payments_client(api, *, key: str | None = None, **kwargs) -> ApiClient:
    kwargs.setdefault("retry", FAST_RETRY)
    # No client rate and no header feedback by default: tests of the limiter opt in, so
    # that the other tests show the retry policy alone.
    kwargs.setdefault("rate_limiter", RateLimiter(None, remaining_header=None))
    kwargs.setdefault("timeout", (2, 5))
    return ApiClient(
        api.base_url("payments"),
        auth=kwargs.pop("auth", None)
        or auth.BearerToken(key or api.credentials("payments")["api_key"]),
        source="payments",
        **kwargs,
    )


def fetch_charges(
    client: ApiClient, start: int = FEB1, end: int = FEB1 + SIX_HOURS, limit: int = 50, **kwargs
):
    """A Stripe-style fetch of one window of charges (180 records in 6 hours)."""
    return client.fetch_pages(
        "/v1/charges",
        params={"limit": limit, "created[gte]": start, "created[lt]": end},
        paginator=paginators.LastRecordCursor(),
        records_path="data",
        endpoint="charges",
        **kwargs,
    )


def charges_truth(api, start: int = FEB1, end: int = FEB1 + SIX_HOURS) -> list[dict]:
    return api.records("payments", "charges", start=start, end=end)


@pytest.fixture
def payments(demo_api):
    """A payments client on the default demo API."""
    client = payments_client(demo_api)
    yield client
    client.close()


def source_client(api, source: str, *, auth_obj=None, **kwargs) -> ApiClient:
    """A client of any demo source with its usual auth."""
    creds = api.credentials(source)
    if auth_obj is None:
        if source == "payments":
            auth_obj = auth.BearerToken(creds["api_key"])
        elif source == "commerce":
            auth_obj = auth.ApiKey(creds["access_token"], name="X-Shopify-Access-Token")
        elif source == "crm":
            auth_obj = auth.OAuth2ClientCredentials(
                "/oauth/v1/token", creds["client_id"], creds["client_secret"]
            )
        elif source == "devhub":
            auth_obj = auth.BearerToken(creds["token"], prefix="token")
        elif source == "exports":
            auth_obj = auth.ApiKey(creds["api_key"], name="X-Api-Key")
        elif source == "helpdesk":  # a named client and the app key, or the API refuses
            auth_obj = auth.BearerToken(creds["token"])
            kwargs.setdefault("headers", {"User-Agent": "tests/1.0 (+mailto:t@example.com)",
                                          "X-Helpdesk-App-Key": creds["app_key"]})
    kwargs.setdefault("retry", FAST_RETRY)
    kwargs.setdefault("rate_limiter", RateLimiter(None, remaining_header=None))
    kwargs.setdefault("timeout", (2, 5))
    return ApiClient(api.base_url(source), auth=auth_obj, source=source, **kwargs)


@pytest.fixture
def api(demo_api_factory):
    """A demo API without server-side rate limits (pagination tests make many requests)."""
    return demo_api_factory(rate_limit=False)
