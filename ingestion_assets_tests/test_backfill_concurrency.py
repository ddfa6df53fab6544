"""A single-run backfill fetches several partitions at once and commits each on its own.

Against the demo API over loopback: the demo API counts the requests it is answering
(``GET /_control/stats``), so the test sees how many the backfill really had in flight;
every partition is compared with the API's ground truth.
"""

from __future__ import annotations

import dagster as dg
import requests

from ingestion_assets.dagster_shim import partition_status
from ingestion_assets.demo_api import CONTROL_HEADERS, demo_env
from ingestion_assets.partitions import partitions_def
from ingestion_assets.specs import RetrySpec, load_sources
from ingestion_assets_tests.test_factory import (
    ids,
    keys,
    materialize,
    only_endpoint,
    read,
    window,
)

DAYS = [f"2025-02-{d:02d}" for d in range(10, 18)]  # 8 daily partitions
RANGE = {"dagster/asset_partition_range_start": DAYS[0],
         "dagster/asset_partition_range_end": DAYS[-1]}


def _charges(api, monkeypatch, **source_changes):
    for name, value in demo_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DEMO_API_URL", api.url)
    payments = {s.name: s for s in load_sources()}["payments"]
    # A cursor endpoint (pages of 100): it cannot fetch the pages of one day in parallel.
    source = only_endpoint(payments, "charges")
    return source.model_copy(update={"rate_limit": None, **source_changes})


def _stats(api) -> dict:
    response = requests.get(f"{api.url}/_control/stats", headers=CONTROL_HEADERS, timeout=10)
    response.raise_for_status()
    return response.json()


def test_a_backfill_has_max_concurrency_requests_in_flight_and_lands_every_partition(
    demo_api_factory, monkeypatch, tmp_path
):
    # Every answer takes 150 ms, so requests sent side by side overlap at the server.
    api = demo_api_factory(latency_ms=150, rate_limit=False)
    source = _charges(api, monkeypatch, max_concurrency=4)
    requests.post(f"{api.url}/_control/stats/reset", headers=CONTROL_HEADERS, timeout=10)

    result = materialize(source, tmp_path, tags=RANGE)

    assert result.success
    stats = _stats(api)["sources"]["payments"]
    assert stats["peak_in_flight"] == 4  # 4 partitions at once, never more
    assert stats["in_flight"] == 0
    materialized = {(e.asset_key.to_user_string(), e.partition)
                    for e in result.get_asset_materialization_events()}
    assert materialized == {(a, d) for a in ("raw/payments/charges", "payments/charges")
                            for d in DAYS}
    pages = 0
    for day in DAYS:
        truth = api.records("payments", "charges", *window(day))
        assert truth, day
        assert ids(read(tmp_path, "payments", "charges", f"date={day}")) == keys(truth), day
        pages += -(-len(truth) // 100)
    assert stats["requests"] >= pages  # every page of every day was asked for


def test_a_failing_partition_leaves_the_others_committed_and_is_named(
    demo_api_factory, monkeypatch, tmp_path
):
    api = demo_api_factory(rate_limit=False)
    # One partition at a time, so the fault below hits the first partition's first page,
    # and every attempt of it: that partition fails, the next ones do not.
    source = _charges(api, monkeypatch, max_concurrency=1, retry=RetrySpec(
        max_attempts=2, op_retries=0, backoff_base_seconds=0.01, backoff_max_seconds=0.01))
    api.add_fault(kind="server_error", source="payments", path="/v1/charges", status=503,
                  count=2)
    instance = dg.DagsterInstance.ephemeral()

    result = materialize(source, tmp_path, instance, tags=RANGE, raise_on_error=False)

    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.message
    assert f"1 of 8 partition(s) failed: {DAYS[0]}" in message
    assert "503" in message
    # The others are committed, equal to the API, and recorded as materialized.
    materialized = {(e.asset_key.to_user_string(), e.partition)
                    for e in result.get_asset_materialization_events()}
    assert materialized == {(a, d) for a in ("raw/payments/charges", "payments/charges")
                            for d in DAYS[1:]}
    for day in DAYS[1:]:
        truth = api.records("payments", "charges", *window(day))
        assert ids(read(tmp_path, "payments", "charges", f"date={day}")) == keys(truth), day
    for folder in ("payments/charges", "raw/payments/charges"):  # nothing of it left behind
        assert not [p for p in (tmp_path / folder / f"date={DAYS[0]}").rglob("*") if p.is_file()]
    # What the UI's partition bar shows for the table: 7 materialized, the first one failed.
    done, failed = partition_status(
        instance, dg.AssetKey(["payments", "charges"]),
        partitions_def(source, source.endpoints[0]),
    )
    assert done == set(DAYS[1:])
    assert failed == {DAYS[0]}
