"""commerce (Shopify-like): Link/page_info pagination, keyset, filters, errors, rate limit."""

from __future__ import annotations

import requests

from .helpers import commerce_session, walk_links

WINDOW = {"updated_at_min": "2025-02-01T00:00:00Z", "updated_at_max": "2025-02-01T23:59:59Z"}


def test_link_walk_collects_every_order_of_an_updated_window(demo_api):
    url = demo_api.base_url("commerce") + "/orders.json"
    got, pages = walk_links(commerce_session(), url, {"limit": 50, "status": "any", **WINDOW})
    ids = [o["id"] for o in got]
    truth = demo_api.records("commerce", "orders", start="2025-02-01", end="2025-02-02", field="updated")
    assert len(ids) == len(set(ids)) == len(truth) > 50
    assert set(ids) == {o["id"] for o in truth}
    assert ids == sorted(ids)  # id ascending
    assert pages == -(-len(truth) // 50)
    # records created before the window but updated in it are there (updated != created)
    assert any(o["created_at"] < "2025-01-31T19:00:00-05:00" for o in got)


def test_count_endpoint_matches_the_walk(demo_api):
    url = demo_api.base_url("commerce") + "/orders/count.json"
    r = commerce_session().get(url, params={"status": "any", **WINDOW})
    truth = demo_api.records("commerce", "orders", start="2025-02-01", end="2025-02-02", field="updated")
    assert r.json() == {"count": len(truth)}


def test_default_status_is_open_only_like_shopify(demo_api):
    url = demo_api.base_url("commerce") + "/orders.json"
    s = commerce_session()
    open_ = walk_links(s, url, {"limit": 250, **WINDOW})[0]
    every = walk_links(s, url, {"limit": 250, "status": "any", **WINDOW})[0]
    assert 0 < len(open_) < len(every)
    assert all(o["closed_at"] is None and o["cancelled_at"] is None for o in open_)


def test_previous_link_returns_the_previous_page(demo_api):
    url = demo_api.base_url("commerce") + "/products.json"
    s = commerce_session()
    first = s.get(url, params={"limit": 3})
    assert 'rel="previous"' not in first.headers["Link"]
    second = s.get(first.links["next"]["url"])
    back = s.get(second.links["previous"]["url"])
    assert back.json() == first.json()


def test_keyset_updated_at_and_since_id_walk(demo_api):
    url = demo_api.base_url("commerce") + "/orders.json"
    s = commerce_session()
    params = {"limit": 40, "status": "any", "order": "updated_at asc", **WINDOW}
    got = []
    while True:
        page = s.get(url, params=params).json()["orders"]
        if not page:
            break
        got += page
        params.update(updated_at_min=page[-1]["updated_at"], since_id=page[-1]["id"])
    keys = [(o["updated_at"], o["id"]) for o in got]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    truth = demo_api.records("commerce", "orders", start="2025-02-01", end="2025-02-02", field="updated")
    assert {o["id"] for o in got} == {o["id"] for o in truth}


def test_timestamps_carry_the_shop_offset_and_naive_filters_use_shop_time(demo_api):
    url = demo_api.base_url("commerce") + "/customers.json"
    s = commerce_session()
    doc = s.get(url, params={"limit": 1}).json()["customers"][0]
    assert doc["created_at"].endswith("-05:00")
    utc = s.get(url, params={"created_at_min": "2025-02-01T00:00:00Z", "limit": 1}).json()
    naive = s.get(url, params={"created_at_min": "2025-02-01T00:00:00", "limit": 1}).json()
    assert utc != naive  # naive = 05:00 UTC in the shop's zone


def test_page_info_with_other_params_is_400(demo_api):
    url = demo_api.base_url("commerce") + "/orders.json"
    s = commerce_session()
    nxt = s.get(url, params={"limit": 2, "status": "any"}).links["next"]["url"]
    r = s.get(nxt, params={"status": "any"})
    assert r.status_code == 400 and "page_info" in r.json()["errors"]


def test_bad_inputs_get_shopify_errors(demo_api):
    base = demo_api.base_url("commerce")
    s = commerce_session()
    r = s.get(base + "/nothing.json")
    assert r.status_code == 404 and r.json() == {"errors": "Not Found"}
    r = s.get(base + "/orders.json", params={"page_info": "garbage!!"})
    assert r.status_code == 400 and r.json()["errors"]["page_info"] == ["Invalid value."]
    r = s.get(base + "/orders.json", params={"updated_at_min": "last tuesday"})
    assert r.status_code == 400 and r.json()["errors"] == {"updated_at_min": ["is invalid"]}
    r = s.get(base + "/orders.json", params={"limit": 251})
    assert r.status_code == 400 and "limit" in r.json()["errors"]
    r = requests.get(base + "/orders.json", headers={"X-Shopify-Access-Token": "shpat_wrong"})
    assert r.status_code == 401 and "Invalid API key or access token" in r.json()["errors"]


def test_leaky_bucket_per_token(demo_api_factory):
    from ingestion_assets.demo_api import credentials as creds

    api = demo_api_factory(rate_limits={"commerce": 4})
    url = api.base_url("commerce") + "/products.json"
    s = commerce_session()
    rs = [s.get(url, params={"limit": 1}) for _ in range(8)]
    assert [r.status_code for r in rs[:4]] == [200] * 4
    limited = [r for r in rs if r.status_code == 429]
    assert limited
    r = limited[0]
    assert float(r.headers["Retry-After"]) > 0 and "." in r.headers["Retry-After"]  # "2.0"
    assert r.headers["X-Shopify-Shop-Api-Call-Limit"] == "4/4"
    assert "Exceeded" in r.json()["errors"]
    other = requests.get(url, headers={"X-Shopify-Access-Token": creds.COMMERCE_TOKEN_2})
    assert other.status_code == 200 and other.headers["X-Shopify-Shop-Api-Call-Limit"] == "1/4"
