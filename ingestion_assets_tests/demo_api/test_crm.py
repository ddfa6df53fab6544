"""crm (HubSpot-like): OAuth2 tokens, after cursor, offset + total, daily report, errors."""

from __future__ import annotations

import time

import pytest
import requests

from ingestion_assets.demo_api import credentials as creds

from .helpers import crm_session, crm_token

WINDOW = {"updated_gte": "2025-02-01T00:00:00Z", "updated_lt": "2025-02-02T00:00:00Z"}


def test_after_cursor_walk_matches_ground_truth(demo_api):
    url = demo_api.base_url("crm") + "/crm/v3/objects/contacts"
    s = crm_session(demo_api)
    params, got, pages = {"limit": 100, **WINDOW}, [], 0
    while True:
        body = s.get(url, params=params).json()
        got += body["results"]
        pages += 1
        if "paging" not in body:
            break
        params["after"] = body["paging"]["next"]["after"]
    truth = demo_api.records("crm", "contacts", start=WINDOW["updated_gte"], end=WINDOW["updated_lt"], field="updated")
    ids = [r["id"] for r in got]
    assert len(ids) == len(set(ids)) == len(truth) > 100 and pages > 1
    assert set(ids) == {r["id"] for r in truth}
    assert all("2025-02-01" <= r["updatedAt"] < "2025-02-02" for r in got)
    assert all(isinstance(v, str) for v in got[0]["properties"].values())


def test_paging_next_link_is_followable(demo_api):
    s = crm_session(demo_api)
    first = s.get(demo_api.base_url("crm") + "/crm/v3/objects/deals", params={"limit": 5}).json()
    second = s.get(first["paging"]["next"]["link"]).json()
    assert {r["id"] for r in first["results"]}.isdisjoint(r["id"] for r in second["results"])


def test_offset_pagination_with_total(demo_api):
    url = demo_api.base_url("crm") + "/marketing/v3/emails"
    s = crm_session(demo_api)
    window = {"updated_gte": "2025-01-10T00:00:00Z", "updated_lt": "2025-01-20T00:00:00Z"}
    got, offset, total = [], 0, None
    while total is None or offset < total:
        body = s.get(url, params={"limit": 25, "offset": offset, **window}).json()
        total = body["total"]
        got += body["results"]
        offset += 25
    truth = demo_api.records("crm", "emails", start=window["updated_gte"], end=window["updated_lt"], field="updated")
    assert len(got) == total == len(truth) and {e["id"] for e in got} == {e["id"] for e in truth}


def test_offset_without_total_ends_on_empty_page(demo_api):
    url = demo_api.base_url("crm") + "/marketing/v3/emails"
    s = crm_session(demo_api)
    body = s.get(url, params={"limit": 10, "includeTotal": "false"}).json()
    assert "total" not in body and len(body["results"]) == 10
    assert s.get(url, params={"offset": 10**6, "includeTotal": "false"}).json() == {"results": []}


def test_offsets_shift_when_records_are_inserted(demo_api):
    url = demo_api.base_url("crm") + "/marketing/v3/emails"
    s = crm_session(demo_api)
    page1 = s.get(url, params={"limit": 10, "offset": 0}).json()["results"]
    demo_api.add_fault(kind="insert_during_pagination", source="crm", path="emails", records=2)
    page2 = s.get(url, params={"limit": 10, "offset": 10}).json()["results"]
    # two inserts at the head pushed the last two of page 1 onto page 2: duplicates
    assert [e["id"] for e in page2[:2]] == [e["id"] for e in page1[-2:]]


def test_daily_report(demo_api):
    url = demo_api.base_url("crm") + "/analytics/v2/reports/daily"
    s = crm_session(demo_api)
    a = s.get(url, params={"date": "2025-02-03"}).json()
    b = s.get(url, params={"date": "2025-02-04"}).json()
    assert a["date"] == "2025-02-03" and len(a["rows"]) == 6 and a["rows"] != b["rows"]
    assert a["rows"] == demo_api.records("crm", "daily_report", start="2025-02-03", end="2025-02-04")
    assert s.get(url, params={"date": "2025-3-1"}).status_code == 400
    assert s.get(url, params={"date": "2025-03-05"}).status_code == 400  # future
    assert s.get(url).status_code == 400


def test_token_expires_and_refresh_token_grants_a_new_one(demo_api_factory):
    api = demo_api_factory(token_ttl=1)
    tok = crm_token(api)
    assert tok["expires_in"] == 1 and tok["token_type"] == "bearer"
    url = api.base_url("crm") + "/crm/v3/objects/companies"
    auth = {"Authorization": f"Bearer {tok['access_token']}"}
    assert requests.get(url, headers=auth).status_code == 200
    time.sleep(1.1)
    r = requests.get(url, headers=auth)
    assert r.status_code == 401 and r.json()["category"] == "EXPIRED_AUTHENTICATION"
    new = requests.post(api.base_url("crm") + "/oauth/v1/token", data={
        "grant_type": "refresh_token", "refresh_token": tok["refresh_token"],
        "client_id": creds.CRM_CLIENT_ID, "client_secret": creds.CRM_CLIENT_SECRET,
    }).json()
    assert new["access_token"] != tok["access_token"]
    assert requests.get(url, headers={"Authorization": f"Bearer {new['access_token']}"}).status_code == 200


def test_expire_tokens_fault_mid_run(demo_api):
    s = crm_session(demo_api)
    url = demo_api.base_url("crm") + "/crm/v3/objects/contacts"
    demo_api.add_fault(kind="expire_tokens", source="crm", after=2)
    assert [s.get(url).status_code for _ in range(2)] == [200, 200]
    r = s.get(url)
    assert r.status_code == 401 and r.json()["category"] == "EXPIRED_AUTHENTICATION"
    assert s.get(url).status_code == 401  # stays expired until the client refreshes
    s.headers["Authorization"] = f"Bearer {crm_token(demo_api)['access_token']}"
    assert s.get(url).status_code == 200


@pytest.mark.parametrize(
    ("form", "status"),
    [
        ({"grant_type": "client_credentials", "client_id": "nope", "client_secret": "x"}, "BAD_CLIENT_ID"),
        ({"grant_type": "client_credentials", "client_id": creds.CRM_CLIENT_ID, "client_secret": "x"}, "BAD_CLIENT_SECRET"),
        ({"grant_type": "refresh_token", "refresh_token": "nope"}, "BAD_REFRESH_TOKEN"),
        ({"grant_type": "password"}, "BAD_GRANT_TYPE"),
    ],
)
def test_token_endpoint_rejects_bad_grants(demo_api, form, status):
    r = requests.post(demo_api.base_url("crm") + "/oauth/v1/token", data=form)
    assert r.status_code == 400 and r.json()["status"] == status


def test_bad_inputs_get_hubspot_errors(demo_api):
    base = demo_api.base_url("crm")
    s = crm_session(demo_api)
    r = s.get(base + "/crm/v3/nothing")
    assert r.status_code == 404 and r.json()["category"] == "OBJECT_NOT_FOUND"
    r = s.get(base + "/crm/v3/objects/contacts", params={"after": "%%%not-a-cursor"})
    assert r.status_code == 400 and r.json()["category"] == "VALIDATION_ERROR"
    r = s.get(base + "/crm/v3/objects/contacts", params={"updated_gte": "02/01/2025"})
    assert r.status_code == 400 and "updated_gte" in r.json()["message"]
    r = s.get(base + "/crm/v3/objects/contacts", params={"limit": 101})
    assert r.status_code == 400
    r = requests.get(base + "/crm/v3/objects/contacts", headers={"Authorization": "Bearer made-up"})
    assert r.status_code == 401 and r.json()["category"] == "INVALID_AUTHENTICATION"
    r = requests.get(base + "/crm/v3/objects/contacts")
    assert r.status_code == 401 and r.json()["status"] == "error"


def test_rate_limit_per_ten_seconds(demo_api_factory):
    api = demo_api_factory(rate_limits={"crm": 3})
    s = crm_session(api)
    url = api.base_url("crm") + "/crm/v3/objects/deals"
    rs = [s.get(url, params={"limit": 1}) for _ in range(5)]
    assert [r.status_code for r in rs] == [200, 200, 200, 429, 429]
    assert rs[0].headers["X-HubSpot-RateLimit-Max"] == "3"
    assert rs[3].json()["errorType"] == "RATE_LIMIT" and int(rs[3].headers["Retry-After"]) >= 1
