"""payments (Stripe-like): pagination, filters, errors, auth, rate limits, determinism."""

from __future__ import annotations

import requests

from ingestion_assets.demo_api import credentials as creds

from .helpers import payments_session, ts, walk_stripe

DAY = ("2025-02-01T00:00:00Z", "2025-02-02T00:00:00Z")


def test_cursor_walk_collects_every_record_of_a_day_exactly_once(demo_api):
    url = demo_api.base_url("payments") + "/v1/charges"
    start, end = ts(DAY[0]), ts(DAY[1])
    got, pages = walk_stripe(
        payments_session(), url, {"limit": 100, "created[gte]": start, "created[lt]": end}
    )
    ids = [r["id"] for r in got]
    truth = demo_api.records("payments", "charges", start=DAY[0], end=DAY[1])
    assert len(ids) == len(set(ids)) == len(truth) > 100
    assert set(ids) == {r["id"] for r in truth}
    assert pages == -(-len(truth) // 100)
    assert all(start <= r["created"] < end for r in got)
    created = [r["created"] for r in got]
    assert created == sorted(created, reverse=True)  # newest first, like Stripe
    assert got[0] == next(r for r in truth if r["id"] == got[0]["id"])


def test_days_hold_different_records(demo_api):
    a = demo_api.records("payments", "charges", start="2025-02-01", end="2025-02-02")
    b = demo_api.records("payments", "charges", start="2025-02-02", end="2025-02-03")
    assert a and b and not ({r["id"] for r in a} & {r["id"] for r in b})


def test_ending_before_pages_backwards(demo_api):
    url = demo_api.base_url("payments") + "/v1/charges"
    s = payments_session()
    first = s.get(url, params={"limit": 5}).json()["data"]
    second = s.get(url, params={"limit": 5, "starting_after": first[-1]["id"]}).json()["data"]
    back = s.get(url, params={"limit": 5, "ending_before": second[0]["id"]}).json()
    assert [r["id"] for r in back["data"]] == [r["id"] for r in first]


def test_customers_and_refunds_reference_existing_objects(demo_api):
    s = payments_session()
    base = demo_api.base_url("payments")
    charge = s.get(base + "/v1/charges", params={"limit": 1}).json()["data"][0]
    cus = s.get(base + f"/v1/customers/{charge['customer']}")
    assert cus.status_code == 200 and cus.json()["object"] == "customer"
    refund = s.get(base + "/v1/refunds", params={"limit": 1}).json()["data"][0]
    assert s.get(base + f"/v1/charges/{refund['charge']}").status_code == 200


def test_same_seed_same_data_other_seed_other_data(demo_api_factory):
    a = demo_api_factory(seed=1)
    b = demo_api_factory(seed=1)
    c = demo_api_factory(seed=2)
    q = {"limit": 50, "created[lt]": ts("2025-02-01T00:00:00Z")}
    s = payments_session()
    bodies = [s.get(x.base_url("payments") + "/v1/charges", params=q).json() for x in (a, b, c)]
    assert bodies[0] == bodies[1]
    assert bodies[0] != bodies[2]


def test_bad_credentials_get_stripe_401(demo_api):
    url = demo_api.base_url("payments") + "/v1/charges"
    r = requests.get(url, headers={"Authorization": "Bearer sk_test_wrongwrongwrong1234"})
    assert r.status_code == 401
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert "Invalid API Key" in err["message"] and "wrongwrong" not in err["message"]
    missing = requests.get(url)
    assert missing.status_code == 401 and "did not provide an API key" in missing.json()["error"]["message"]


def test_basic_auth_and_rotated_key_work(demo_api):
    url = demo_api.base_url("payments") + "/v1/customers"
    assert requests.get(url, auth=(creds.PAYMENTS_KEY, "")).status_code == 200
    r = requests.get(url, headers={"Authorization": f"Bearer {creds.PAYMENTS_KEY_ROTATED}"})
    assert r.status_code == 200


def test_unknown_endpoint_is_stripe_404(demo_api):
    r = payments_session().get(demo_api.base_url("payments") + "/v1/nonsense")
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and "Unrecognized request URL" in err["message"]


def test_bad_cursor_is_400_with_param(demo_api):
    url = demo_api.base_url("payments") + "/v1/charges"
    r = payments_session().get(url, params={"starting_after": "ch_doesnotexist"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] == "starting_after" and err["code"] == "resource_missing"


def test_bad_date_filter_is_400(demo_api):
    url = demo_api.base_url("payments") + "/v1/charges"
    r = payments_session().get(url, params={"created[gte]": "2025-01-01"})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "created[gte]"


def test_limit_out_of_range_and_unknown_param_are_400(demo_api):
    url = demo_api.base_url("payments") + "/v1/charges"
    s = payments_session()
    for bad in ("0", "101", "abc"):
        r = s.get(url, params={"limit": bad})
        assert r.status_code == 400 and r.json()["error"]["param"] == "limit"
    r = s.get(url, params={"page": 2})
    assert r.status_code == 400 and "unknown parameter" in r.json()["error"]["message"]


def test_max_page_size_raises_the_cap(demo_api_factory):
    api = demo_api_factory(max_page_size=1000, records=5000)
    r = payments_session().get(api.base_url("payments") + "/v1/charges", params={"limit": 1000})
    assert r.status_code == 200 and len(r.json()["data"]) == 1000


def test_rate_limit_per_key(demo_api_factory):
    api = demo_api_factory(rate_limits={"payments": 3})
    url = api.base_url("payments") + "/v1/customers"
    a = payments_session()
    statuses = [a.get(url, params={"limit": 1}).status_code for _ in range(8)]
    assert statuses[:3] == [200, 200, 200] and 429 in statuses
    r = a.get(url)
    assert r.status_code == 429
    assert r.json()["error"]["type"] == "rate_limit_error"
    assert int(r.headers["Retry-After"]) >= 1
    assert r.headers["X-RateLimit-Limit"] == "3" and r.headers["X-RateLimit-Remaining"] == "0"
    # the rotated key has its own bucket
    b = requests.get(url, headers={"Authorization": f"Bearer {creds.PAYMENTS_KEY_ROTATED}"})
    assert b.status_code == 200


def test_every_response_carries_rate_limit_headers(demo_api):
    r = payments_session().get(demo_api.base_url("payments") + "/v1/charges")
    assert r.headers["X-RateLimit-Limit"] == "25"
    assert int(r.headers["X-RateLimit-Remaining"]) <= 24
    assert "X-RateLimit-Reset" in r.headers


def test_keep_alive_reuses_one_connection(demo_api):
    s = payments_session()
    url = demo_api.base_url("payments") + "/v1/charges"
    socks = set()
    for _ in range(5):
        r = s.get(url, params={"limit": 2}, stream=True)
        socks.add(id(r.raw._connection.sock))
        r.content  # noqa: B018 - read the body so the connection returns to the pool
    assert len(socks) == 1
