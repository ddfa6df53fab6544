"""One test per fault kind: the raw response a plain ``requests`` call sees."""

from __future__ import annotations

import email.utils

import pytest
import requests

from ingestion_assets.demo_api import CONTROL_HEADERS

from .helpers import crm_session, devhub_session, payments_session, ts

CHARGES = "/v1/charges"


@pytest.fixture
def charges(demo_api):
    return demo_api.base_url("payments") + CHARGES


def test_server_error_burst_then_recovery(demo_api, charges):
    demo_api.add_fault(kind="server_error", source="payments", count=2, status=502)
    s = payments_session()
    codes = [s.get(charges).status_code for _ in range(3)]
    assert codes == [502, 502, 200]
    fault = demo_api.list_faults()[0]
    assert fault["fired"] == 2 and fault["seen"] == 3


def test_server_error_default_is_503_with_vendor_body(demo_api, charges):
    demo_api.add_fault(kind="server_error")
    r = payments_session().get(charges)
    assert r.status_code == 503 and "error" in r.json()


@pytest.mark.parametrize("form", ["2", "0"])
def test_rate_limit_burst_with_retry_after_seconds(demo_api, charges, form):
    demo_api.add_fault(kind="rate_limit", source="payments", count=2, retry_after=form)
    s = payments_session()
    r = s.get(charges)
    assert r.status_code == 429
    assert r.headers["Retry-After"] == form
    assert r.headers["X-RateLimit-Remaining"] == "0"
    assert r.json()["error"]["type"] == "rate_limit_error"
    assert s.get(charges).status_code == 429
    assert s.get(charges).status_code == 200


def test_rate_limit_with_http_date_retry_after(demo_api, charges):
    demo_api.add_fault(kind="rate_limit", retry_after="http-date", retry_after_s=3)
    r = payments_session().get(charges)
    assert r.status_code == 429
    when = email.utils.parsedate_to_datetime(r.headers["Retry-After"])
    assert when.tzinfo is not None  # an IMF-fixdate in GMT


def test_rate_limit_without_retry_after(demo_api, charges):
    demo_api.add_fault(kind="rate_limit", retry_after=None)
    r = payments_session().get(charges)
    assert r.status_code == 429 and "Retry-After" not in r.headers


def test_slow_response_times_out_the_client(demo_api, charges):
    demo_api.add_fault(kind="slow", delay=2.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        payments_session().get(charges, timeout=0.3)
    # the next request is not slowed
    assert payments_session().get(charges, timeout=5).status_code == 200


def test_latency_delays_every_matching_request(demo_api, charges):
    f = demo_api.add_fault(kind="latency", ms=50, path=CHARGES)
    s = payments_session()
    for _ in range(3):
        assert s.get(charges).status_code == 200
    assert f.count == -1 and f.fired == 3
    other = demo_api.base_url("payments") + "/v1/customers"
    assert s.get(other).status_code == 200 and f.fired == 3


def test_drop_connection_before_response(demo_api, charges):
    demo_api.add_fault(kind="drop_connection", mode="before_response")
    with pytest.raises(requests.exceptions.ConnectionError):
        payments_session().get(charges)
    assert payments_session().get(charges).status_code == 200


def test_drop_connection_mid_body(demo_api, charges):
    demo_api.add_fault(kind="drop_connection", mode="mid_body")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        payments_session().get(charges, params={"limit": 100})


def test_truncated_json(demo_api, charges):
    demo_api.add_fault(kind="truncated_json")
    r = payments_session().get(charges, params={"limit": 20})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    with pytest.raises(requests.exceptions.JSONDecodeError):
        r.json()


def test_error_body_with_200(demo_api, charges):
    demo_api.add_fault(kind="error_body")
    r = payments_session().get(charges)
    assert r.status_code == 200
    assert "data" not in r.json() and r.json()["error"]["type"] == "api_error"


def test_html_maintenance_page_with_200(demo_api, charges):
    demo_api.add_fault(kind="html")
    r = payments_session().get(charges)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert "<html>" in r.text
    with pytest.raises(requests.exceptions.JSONDecodeError):
        r.json()


def test_after_lets_requests_through_first(demo_api, charges):
    demo_api.add_fault(kind="server_error", after=2, count=1)
    s = payments_session()
    assert [s.get(charges).status_code for _ in range(4)] == [200, 200, 503, 200]


def test_fault_scoped_to_other_source_does_not_fire(demo_api, charges):
    demo_api.add_fault(kind="server_error", source="commerce", count=-1)
    assert payments_session().get(charges).status_code == 200


def test_insert_during_pagination_shifts_the_head(demo_api, charges):
    s = payments_session()
    before = s.get(charges, params={"limit": 5}).json()["data"]
    demo_api.add_fault(kind="insert_during_pagination", source="payments", path=CHARGES, records=3)
    after = s.get(charges, params={"limit": 5}).json()["data"]
    # three new charges now head the newest-first list; the old head moved down
    assert [r["id"] for r in after[3:]] == [r["id"] for r in before[:2]]
    assert not {r["id"] for r in after[:3]} & {r["id"] for r in before}


def test_schema_change_from_a_date_on(demo_api, charges):
    demo_api.add_fault(
        kind="schema_change", source="payments", since="2025-02-01", change="retype",
        field="amount", type="string",
    )
    demo_api.add_fault(kind="schema_change", since="2025-02-01", change="add", field="risk_score", value=7)
    demo_api.add_fault(kind="schema_change", since="2025-02-01", change="remove", field="description")
    s = payments_session()
    new = s.get(charges, params={"limit": 3, "created[gte]": ts("2025-02-10T00:00:00Z")}).json()["data"]
    old = s.get(charges, params={"limit": 3, "created[lt]": ts("2025-01-20T00:00:00Z")}).json()["data"]
    assert all(isinstance(r["amount"], str) and r["risk_score"] == 7 for r in new)
    assert all("description" not in r for r in new)
    assert all(isinstance(r["amount"], int) and "risk_score" not in r for r in old)
    assert all("description" in r for r in old)
    truth = demo_api.records("payments", "charges", start="2025-02-10", end="2025-02-10T01:00:00Z")
    assert truth and all(isinstance(r["amount"], str) for r in truth)


def test_faults_over_http_control(demo_api, charges):
    ctl = demo_api.url + "/_control/faults"
    faults = [{"kind": "server_error", "count": 1}, {"kind": "html", "count": 1}]
    r = requests.post(ctl, json=faults, headers=CONTROL_HEADERS)
    assert r.status_code == 201 and len(r.json()["added"]) == 2
    assert len(requests.get(ctl, headers=CONTROL_HEADERS).json()["faults"]) == 2
    s = payments_session()
    assert s.get(charges).status_code == 503
    assert s.get(charges).headers["Content-Type"].startswith("text/html")
    assert requests.delete(ctl, headers=CONTROL_HEADERS).json() == {"faults": []}
    bad = requests.post(ctl, json={"kind": "nope"}, headers=CONTROL_HEADERS)
    assert bad.status_code == 400 and "unknown fault kind" in bad.json()["message"]


def test_a_session_recovers_after_dropped_connections(demo_api, charges):
    s = payments_session()
    assert s.get(charges).status_code == 200  # a pooled keep-alive connection exists
    demo_api.add_fault(kind="drop_connection", mode="mid_body")
    demo_api.add_fault(kind="drop_connection", mode="before_response", after=1)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        s.get(charges, params={"limit": 50})
    with pytest.raises(requests.exceptions.ConnectionError):
        s.get(charges)
    assert s.get(charges).status_code == 200


def test_cli_fault_syntax():
    from ingestion_assets.demo_api.faults import parse_cli_fault

    f = parse_cli_fault("rate_limit:source=payments,count=3,retry_after=0")
    assert (f.kind, f.source, f.count, f.retry_after) == ("rate_limit", "payments", 3, "0")
    f = parse_cli_fault("schema_change:since=2025-02-01,change=retype,field=amount,type=string")
    assert (f.count, f.since, f.type) == (-1, "2025-02-01", "string")
    assert parse_cli_fault("latency:ms=25").ms == 25.0
    with pytest.raises(ValueError):
        parse_cli_fault("drop_connection:mode=sideways")


# ---- quirks: behaviours of real APIs that the project must not be fooled by ----------------


def test_null_when_empty_sends_null_for_an_empty_list(demo_api, charges):
    s = payments_session()
    window = {"created[gte]": ts("2024-06-01T00:00:00Z"), "created[lt]": ts("2024-06-02T00:00:00Z")}
    assert s.get(charges, params=window).json()["data"] == []
    demo_api.add_fault(kind="null_when_empty", source="payments")
    body = s.get(charges, params=window).json()
    assert body["data"] is None and body["has_more"] is False
    assert len(s.get(charges, params={"limit": 3}).json()["data"]) == 3  # data days unchanged
    assert demo_api.list_faults()[0]["count"] == -1  # a quirk lasts until cleared


def test_string_time_filter_compares_the_parameters_text(demo_api):
    session = crm_session(demo_api)
    url = demo_api.base_url("crm") + "/crm/v3/objects/contacts"

    def created(start, end):
        body = session.get(url, params={"created_gte": start, "created_lt": end, "limit": 100}).json()
        return [r["createdAt"] for r in body["results"]]

    seconds = ("2025-01-02T00:00:00Z", "2025-01-02T00:10:00Z")
    millis = ("2025-01-02T00:00:00.000Z", "2025-01-02T00:10:00.000Z")
    assert created(*seconds) == created(*millis) == [
        "2025-01-02T00:00:00.000Z", "2025-01-02T00:05:00.000Z"
    ]
    demo_api.add_fault(kind="string_time_filter", source="crm")
    # "…00:00:00.000Z" < "…00:00:00Z" as text: midnight falls out, 00:10 comes in.
    assert created(*seconds) == ["2025-01-02T00:05:00.000Z", "2025-01-02T00:10:00.000Z"]
    assert created(*millis) == ["2025-01-02T00:00:00.000Z", "2025-01-02T00:05:00.000Z"]


def test_link_needs_page_and_the_total_count_header(demo_api):
    session = devhub_session()
    repo = demo_api.records("devhub", "repos", org="demo-org")[0]["name"]
    url = f"{demo_api.base_url('devhub')}/repos/demo-org/{repo}/issues"
    total = len(demo_api.records("devhub", "issues", repo=f"demo-org/{repo}"))
    params = {"state": "all", "per_page": 2}
    first = session.get(url, params=params)
    assert first.headers["X-Total-Count"] == str(total) and total > 2
    assert 'rel="next"' in first.headers["Link"] and 'rel="last"' in first.headers["Link"]
    demo_api.add_fault(kind="link_needs_page", source="devhub")
    bare = session.get(url, params=params)
    assert len(bare.json()) == 2 and "Link" not in bare.headers
    assert bare.headers["X-Total-Count"] == str(total)
    named = session.get(url, params={**params, "page": 1})
    assert 'rel="next"' in named.headers["Link"]


def test_ignore_params_makes_the_api_ignore_its_window_filter(demo_api, charges):
    s = payments_session()
    window = {"limit": 100, "created[gte]": ts("2025-02-10T00:00:00Z"),
              "created[lt]": ts("2025-02-10T01:00:00Z")}
    honest = s.get(charges, params=window).json()["data"]
    assert honest and all(window["created[gte]"] <= r["created"] < window["created[lt]"]
                          for r in honest)
    demo_api.add_fault(kind="ignore_params", source="payments", path=CHARGES,
                       params=["created[gte]", "created[lt]"])
    ignored = s.get(charges, params=window).json()["data"]
    # Every charge up to now, newest first: none of the first page is in the window.
    assert len(ignored) == 100
    assert all(r["created"] >= window["created[lt]"] for r in ignored)
    assert demo_api.list_faults()[0]["fired"] == 1
    # The limit (not listed) is still honoured; the other parameters reach the API.
    assert len(s.get(charges, params={**window, "limit": 3}).json()["data"]) == 3


def test_ignore_params_needs_the_parameter_names():
    from ingestion_assets.demo_api.faults import Fault, FaultError, parse_cli_fault

    with pytest.raises(FaultError, match="params"):
        Fault.from_dict({"kind": "ignore_params"})
    fault = parse_cli_fault("ignore_params:source=commerce,params=created_at_min|created_at_max")
    assert fault.params == ["created_at_min", "created_at_max"] and fault.count == -1
