"""Every fault kind of the demo API: the fetch still returns every record exactly once,
or fails with a clear error; never a silent partial result."""

from __future__ import annotations

import contextlib

import pytest

from ingestion_assets.http import RetryPolicy, errors

from .conftest import (
    assert_exactly_once,
    charges_truth,
    fetch_charges,
    payments_client,
    source_client,
)

# (fault, expected retry cause). ``after=2`` makes the fault hit in the middle of the
# pagination, not on the first page.
TRANSIENT_FAULTS = [
    ({"kind": "server_error", "status": 503, "count": 2}, "server_error"),
    ({"kind": "server_error", "status": 500}, "server_error"),
    ({"kind": "rate_limit", "retry_after": "0", "count": 3}, "rate_limited"),
    ({"kind": "rate_limit", "retry_after": None}, "rate_limited"),
    ({"kind": "drop_connection", "mode": "before_response"}, "connection"),
    ({"kind": "drop_connection", "mode": "mid_body"}, None),  # connection or truncated
    ({"kind": "truncated_json", "count": 2}, "invalid_body"),
    ({"kind": "error_body"}, "error_body"),
    ({"kind": "html"}, "invalid_body"),
    ({"kind": "slow", "delay": 1.0}, "timeout"),
]


@pytest.mark.parametrize(("fault", "cause"), TRANSIENT_FAULTS, ids=lambda v: str(v))
def test_transient_fault_mid_pagination_is_retried_and_nothing_lost(demo_api, fault, cause):
    demo_api.add_fault(source="payments", path="/v1/charges", after=2, **fault)
    client = payments_client(demo_api, timeout=(2, 0.4))
    stream = fetch_charges(client)
    records = [r for page in stream for r in page.records]
    assert_exactly_once(records, charges_truth(demo_api))
    retries = stream.stats.retries
    assert stream.stats.retries_total >= fault.get("count", 1)
    if cause is not None:
        assert retries.get(cause, 0) >= fault.get("count", 1), retries
    else:
        assert set(retries) <= {"connection", "truncated", "invalid_body"}, retries
    assert stream.stats.requests == stream.stats.pages + stream.stats.retries_total


def test_retry_after_http_date_is_honoured(demo_api):
    demo_api.add_fault(
        source="payments", kind="rate_limit", retry_after="http-date", retry_after_s=1
    )
    client = payments_client(demo_api)
    stream = fetch_charges(client)
    assert_exactly_once(stream.iter_records(), charges_truth(demo_api))
    assert stream.stats.rate_limited == 1
    assert stream.stats.rate_limit_wait_s > 0


PERMANENT = [
    ({"kind": "server_error", "status": 503}, errors.ServerError, True),
    ({"kind": "truncated_json"}, errors.InvalidResponseError, True),
    ({"kind": "error_body"}, errors.InvalidResponseError, True),
    ({"kind": "html"}, errors.InvalidResponseError, True),
    ({"kind": "drop_connection", "mode": "before_response"}, errors.TransportError, True),
    ({"kind": "rate_limit", "retry_after": "0"}, errors.RateLimitError, True),
]


@pytest.mark.parametrize(("fault", "error", "transient"), PERMANENT, ids=lambda v: str(v))
def test_fault_that_never_clears_fails_loudly_after_the_budget(demo_api, fault, error, transient):
    demo_api.add_fault(source="payments", path="/v1/charges", after=1, count=-1, **fault)
    client = payments_client(demo_api)
    stream = fetch_charges(client)
    pages = []
    with pytest.raises(error) as info:
        for page in stream:
            pages.append(page)
    err = info.value
    assert err.transient is transient
    assert err.source == "payments" and err.endpoint == "charges"
    assert "127.0.0.1" in err.url and "/v1/charges" in err.url
    assert len(pages) == 1  # what came before the fault; the caller must discard it
    policy = client.retry
    budget = (
        policy.rate_limit_attempts + 1 if error is errors.RateLimitError else policy.max_attempts
    )
    assert err.attempts == budget


def test_other_4xx_fails_fast_with_status_and_body_excerpt(payments):
    stream = payments.fetch_pages(
        "/v1/charges", params={"limit": 1000}, records_path="data", endpoint="charges"
    )
    with pytest.raises(errors.ClientError) as info:
        list(stream)
    err = info.value
    assert err.status == 400 and not err.transient and err.attempts == 1
    assert "limit" in err.body_excerpt and "status=400" in str(err)
    assert stream.stats.requests == 1 and stream.stats.retries_total == 0


def test_unknown_url_is_a_404_client_error(payments):
    with pytest.raises(errors.ClientError, match="404"):
        list(payments.fetch_pages("/v1/nothing", records_path="data"))


def test_retry_statuses_are_configurable(demo_api):
    demo_api.add_fault(source="payments", kind="server_error", status=503)
    client = payments_client(demo_api, retry=RetryPolicy(max_attempts=1))
    with pytest.raises(errors.ServerError, match="gave up after 1 attempts"):
        list(fetch_charges(client))


VENDOR_FETCHES = {
    "commerce": ("/orders.json", {"limit": 50, "status": "any"}, "orders"),
    "crm": ("/crm/v3/objects/contacts", {"limit": 100}, "results"),
    "devhub": ("/orgs/demo-org/repos", {"per_page": 5}, None),  # records at the root
}


@pytest.mark.parametrize("source", sorted(VENDOR_FETCHES))
@pytest.mark.parametrize("kind", ["error_body", "html", "truncated_json"])
def test_every_vendors_bad_200_is_retried(api, source, kind):
    from ingestion_assets.http import paginators

    path, params, records_path = VENDOR_FETCHES[source]
    api.add_fault(source=source, path=path, kind=kind, after=1)
    client = source_client(api, source)
    paginator = (
        paginators.JsonCursor("paging.next.after", "after")
        if source == "crm"
        else paginators.LinkHeader()
    )
    stream = client.fetch_pages(
        path,
        params=params,
        paginator=paginator,
        records_path=records_path,
        max_pages=3 if source != "devhub" else None,
    )
    pages = []
    with contextlib.suppress(errors.MaxPagesExceededError):
        pages.extend(stream)
    assert len(pages) >= 2
    assert sum(stream.stats.retries.values()) == 1
    assert all(isinstance(r, dict) and "id" in r for p in pages for r in p.records)


def test_schema_change_passes_through_untouched(demo_api):
    # Validation is the table layer's job: the HTTP core hands over records as sent.
    demo_api.add_fault(
        kind="schema_change",
        source="payments",
        path="/v1/charges",
        since="2025-02-01T03:00:00Z",
        change="add",
        field="risk_score",
        value=7,
    )
    stream = fetch_charges(payments_client(demo_api))
    records = list(stream.iter_records())
    assert_exactly_once(records, charges_truth(demo_api))
    changed = [r for r in records if "risk_score" in r]
    assert changed and len(changed) < len(records)
