"""Every auth type against the demo API, and the 401 rule: refresh once, retry once, then
fail at once with a clear error."""

from __future__ import annotations

import threading
import time

import pytest

from ingestion_assets.http import RateLimiter, auth, errors, paginators
from ingestion_assets.specs import CustomAuth

from .conftest import (
    FEB1_ISO,
    FEB8_ISO,
    assert_exactly_once,
    charges_truth,
    emails_truth,
    fetch_charges,
    fetch_emails,
    payments_client,
    source_client,
)


def crm_auth(api, **kwargs) -> auth.OAuth2ClientCredentials:
    creds = api.credentials("crm")
    return auth.OAuth2ClientCredentials(
        "/oauth/v1/token", creds["client_id"], creds["client_secret"], **kwargs
    )


def test_bearer_token(api):
    stream = fetch_charges(source_client(api, "payments"))
    assert_exactly_once(stream.iter_records(), charges_truth(api))


def test_http_basic_with_key_as_user_name(api):
    basic = auth.HttpBasic(api.credentials("payments")["api_key"], "")
    stream = fetch_charges(source_client(api, "payments", auth_obj=basic))
    assert_exactly_once(stream.iter_records(), charges_truth(api))


def test_http_basic_user_and_token(api):
    creds = api.credentials("devhub")
    client = source_client(
        api, "devhub", auth_obj=auth.HttpBasic(creds["username"], creds["token"])
    )
    pages = list(client.fetch_pages("/orgs/demo-org/repos", paginator=paginators.LinkHeader()))
    assert_exactly_once(
        [r for p in pages for r in p.records], api.records("devhub", "repos", org="demo-org")
    )


def test_api_key_in_a_header(api):
    client = source_client(api, "commerce")  # X-Shopify-Access-Token
    stream = client.fetch_pages(
        "/orders.json",
        params={
            "limit": 250,
            "status": "any",
            "created_at_min": FEB1_ISO,
            "created_at_max": "2025-02-07T23:59:59Z",
        },
        paginator=paginators.LinkHeader(),
        records_path="orders",
    )
    assert_exactly_once(
        stream.iter_records(), api.records("commerce", "orders", start=FEB1_ISO, end=FEB8_ISO)
    )


def test_api_key_in_the_query_is_never_shown(api):
    token = api.credentials("devhub")["token"]
    key = auth.ApiKey(token, name="access_token", location="query")
    client = source_client(api, "devhub", auth_obj=key)
    pages = list(
        client.fetch_pages(
            "/orgs/demo-org/repos", params={"per_page": 5}, paginator=paginators.LinkHeader()
        )
    )
    assert_exactly_once(
        [r for p in pages for r in p.records], api.records("devhub", "repos", org="demo-org")
    )
    for page in pages:
        assert token not in page.url and token not in repr(page.meta())
    assert "access_token=%2A%2A%2A" in pages[0].url or "access_token=***" in pages[0].url


def test_oauth2_client_credentials_token_is_fetched_once_and_shared_by_threads(api):
    oauth = crm_auth(api)
    client = source_client(api, "crm", auth_obj=oauth)
    barrier = threading.Barrier(8)
    results = []

    def call() -> None:
        barrier.wait()
        results.append(client.get_json("/crm/v3/objects/contacts", {"limit": 1}))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and oauth.token_requests == 1
    stream = fetch_emails(client, workers=4)
    assert_exactly_once(stream.iter_records(), emails_truth(api))
    assert oauth.token_requests == 1


def test_expired_token_mid_fetch_is_refreshed_once_with_the_refresh_token(api):
    oauth = crm_auth(api)
    client = source_client(api, "crm", auth_obj=oauth)
    api.add_fault(kind="expire_tokens", source="crm", path="/marketing", after=3)
    stream = fetch_emails(client)
    assert_exactly_once(stream.iter_records(), emails_truth(api))
    assert stream.stats.retries == {"auth_refresh": 1}
    assert oauth.grants == {"client_credentials": 1, "refresh_token": 1}


def test_token_is_refreshed_ahead_of_expiry(demo_api_factory):
    api = demo_api_factory(rate_limit=False, token_ttl=2)
    oauth = crm_auth(api, refresh_ahead_seconds=60)  # capped at half the lifetime: 1 s ahead
    client = source_client(api, "crm", auth_obj=oauth)
    client.get_json("/crm/v3/objects/contacts", {"limit": 1})
    time.sleep(1.1)  # inside the refresh-ahead margin, before the server's expiry
    stream = fetch_emails(client)
    assert_exactly_once(stream.iter_records(), emails_truth(api))
    assert "auth_refresh" not in stream.stats.retries  # never saw a 401
    assert oauth.grants == {"client_credentials": 1, "refresh_token": 1}


def test_second_401_after_a_refresh_fails_at_once(api):
    oauth = crm_auth(api)
    client = source_client(api, "crm", auth_obj=oauth)
    client.get_json("/crm/v3/objects/contacts", {"limit": 1})
    api.add_fault(kind="expire_tokens", source="crm", path="/marketing", count=2)
    stream = fetch_emails(client)
    with pytest.raises(errors.AuthenticationError, match="again after refreshing") as info:
        list(stream)
    err = info.value
    assert err.status == 401 and not err.transient and err.attempts == 2
    assert "EXPIRED_AUTHENTICATION" in err.body_excerpt
    assert stream.stats.requests == 2


def test_bad_client_secret_fails_with_a_clear_error(api):
    oauth = auth.OAuth2ClientCredentials(
        "/oauth/v1/token", api.credentials("crm")["client_id"], "wrong-secret-value-123"
    )
    client = source_client(api, "crm", auth_obj=oauth)
    with pytest.raises(errors.AuthenticationError, match="token endpoint refused") as info:
        list(fetch_emails(client))
    assert info.value.status == 400 and "BAD_CLIENT_SECRET" in info.value.body_excerpt
    assert "wrong-secret-value-123" not in str(info.value)


def test_static_credentials_rejected_fail_at_once(api):
    client = payments_client(api, key="sk_test_not_a_valid_key_0000")
    stream = fetch_charges(client)
    with pytest.raises(errors.AuthenticationError, match=r"credentials rejected \(401\)") as info:
        list(stream)
    assert info.value.attempts == 1 and stream.stats.requests == 1
    assert "sk_test_not_a_valid_key_0000" not in str(info.value)


@pytest.mark.parametrize("make, message", [
    (lambda: auth.ApiKey("k", name="key", location="body"),
     "ApiKey location must be 'header' or 'query'"),
    (lambda: auth.RotatingApiKeys(["k1", "k2"], location="body"),
     "RotatingApiKeys location must be 'header' or 'query'"),
])
def test_a_key_goes_only_in_a_header_or_the_query(make, message):
    # ApiKey and RotatingApiKeys place their key the same way (_PlacedKey), and refuse alike.
    with pytest.raises(errors.ConfigurationError) as failure:
        make()
    assert str(failure.value) == message


def test_key_rotation_switches_key_on_429_without_waiting(demo_api):
    keys = list(demo_api.credentials("payments").values())
    rotation = auth.RotatingApiKeys(keys)
    client = payments_client(demo_api, auth=rotation)
    demo_api.add_fault(source="payments", kind="rate_limit", retry_after="30", after=1)
    stream = fetch_charges(client)
    assert_exactly_once(stream.iter_records(), charges_truth(demo_api))
    assert stream.stats.rate_limited == 1
    assert stream.stats.rate_limit_wait_s < 30  # did not sit out the Retry-After
    assert rotation.uses[0] >= 2 and rotation.uses[1] >= 1


def test_key_rotation_driven_by_rate_limit_headers(demo_api_factory):
    api = demo_api_factory(rate_limits={"payments": 5})  # 5 requests of burst per key
    keys = list(api.credentials("payments").values())
    rotation = auth.RotatingApiKeys(keys)
    client = payments_client(api, auth=rotation, rate_limiter=RateLimiter(None))
    stream = fetch_charges(client, limit=20)  # 9 pages: more than one key's burst
    assert_exactly_once(stream.iter_records(), charges_truth(api))
    assert rotation.uses[0] >= 3 and rotation.uses[1] >= 3
    assert stream.stats.rate_limited == 0


def test_custom_auth_by_import_path(api, monkeypatch):
    monkeypatch.setenv("CUSTOM_AUTH_TEST_TOKEN", api.credentials("commerce")["access_token"])
    custom = CustomAuth(
        type="custom", class_path="ingestion_assets_tests.http.plugins:HeaderTokenAuth",
        options={"token": {"env": "CUSTOM_AUTH_TEST_TOKEN"}, "header": "X-Shopify-Access-Token"},
    ).build("commerce")
    client = source_client(api, "commerce", auth_obj=custom)
    body = client.get_json("/orders.json", {"limit": 1, "status": "any"})
    assert len(body["orders"]) == 1
