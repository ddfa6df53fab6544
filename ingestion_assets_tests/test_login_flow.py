"""A session-login API through Dagster: the session_login example against the demo crm.

Its ``activities`` endpoint takes a JWT from ``POST /accounts/v1/login`` and pages with a
next URL in the body (relative and absolute in turn). Every partition of a backfill is
compared with the demo API's ground truth; a backfill whose tokens live 2 s logs in again
mid-run and loses no partition.
"""

from __future__ import annotations

import datetime as dt

import requests

from ingestion_assets.demo_api import demo_env
from ingestion_assets.demo_api.server import CONTROL_HEADERS
from ingestion_assets.specs import EXAMPLES_DIR, load_sources
from ingestion_assets_tests.test_factory import ids, keys, materialize, read, window

DAYS = [(dt.date(2025, 2, 10) + dt.timedelta(days=i)).isoformat() for i in range(6)]


def _source(api, monkeypatch, **endpoint_changes):
    env = demo_env()
    monkeypatch.setenv("PARTNER_USERNAME", env["DEMO_CRM_USERNAME"])
    monkeypatch.setenv("PARTNER_PASSWORD", env["DEMO_CRM_PASSWORD"])
    (source,) = load_sources(EXAMPLES_DIR / "session_login.yaml")
    (endpoint,) = source.endpoints
    endpoint = endpoint.model_validate({**endpoint.model_dump(by_alias=True),
                                        **endpoint_changes, "automation": {}})
    return source.model_copy(update={
        "base_url": api.base_url("crm"), "endpoints": [endpoint], "rate_limit": None})


def _backfill(source, tmp_path, days):
    return materialize(source, tmp_path, tags={
        "dagster/asset_partition_range_start": days[0],
        "dagster/asset_partition_range_end": days[-1]})


def _assert_every_partition_matches(api, result, tmp_path, days):
    assert result.success
    materialized = {(e.asset_key.to_user_string(), e.partition)
                    for e in result.get_asset_materialization_events()}
    assert materialized == {(a, d) for a in ("raw/partner/activities", "partner/activities")
                            for d in days}
    for day in days:
        truth = api.records("crm", "activities", *window(day))
        assert truth, day
        table = read(tmp_path, "partner", "activities", f"date={day}")
        assert ids(table) == keys(truth), day
        stored = {r["id"]: r for r in table.select(["id", "type", "owner", "duration_s"])
                  .to_pylist()}
        assert [stored[t["id"]] for t in truth] == [
            {k: t[k] for k in ("id", "type", "owner", "duration_s")} for t in truth]


def test_every_partition_of_a_backfill_matches_the_api(demo_api, monkeypatch, tmp_path):
    # 7 records a page: every day takes several pages, linked relatively then absolutely.
    source = _source(demo_api, monkeypatch, params={"limit": 7})
    result = _backfill(source, tmp_path, DAYS[:3])
    _assert_every_partition_matches(demo_api, result, tmp_path, DAYS[:3])
    raw = [e.materialization.metadata for e in result.get_asset_materialization_events()
           if e.asset_key.to_user_string() == "raw/partner/activities"]
    assert all(m["pages"].value >= 7 for m in raw)  # 48 records a day, 7 a page
    assert demo_api.sources["crm"].logins == 1  # one login served the whole run


def test_a_token_expiring_mid_backfill_is_renewed_and_no_partition_fails(
    demo_api_factory, monkeypatch, tmp_path
):
    # 60 ms a response and 5 records a page: the run takes several seconds, every token 2 s.
    api = demo_api_factory(latency_ms=60)
    answer = requests.post(f"{api.url}/_control/settings", json={"login_token_ttl": 2},
                           headers=CONTROL_HEADERS, timeout=5)
    assert answer.json()["login_token_ttl"] == 2
    source = _source(api, monkeypatch, params={"limit": 5})
    result = _backfill(source, tmp_path, DAYS)
    _assert_every_partition_matches(api, result, tmp_path, DAYS)
    assert api.sources["crm"].logins > 1
