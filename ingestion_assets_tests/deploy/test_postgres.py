"""The production instance (deploy/dagster.yaml) on a real PostgreSQL server.

Demo partitions are materialized with that instance; the runs, the materializations and
their metadata are then read back through a *second* instance object built from the same
config, as the webserver and the daemon (other processes) would see them.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pyarrow.dataset as ds

from ingestion_assets.definitions import build_definitions
from ingestion_assets.factory import build_assets
from ingestion_assets.io_managers.parquet import current_parquet_files
from ingestion_assets.specs import load_sources

UTC = dt.timezone.utc
DAYS = ["2025-02-03", "2025-02-04"]
ENDPOINTS = ["charges", "customers"]


def _window(day: str) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.fromisoformat(day).replace(tzinfo=UTC)
    return start, start + dt.timedelta(days=1)


def test_the_production_instance_config_is_what_deploy_says(pg_instance):
    assert type(pg_instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(pg_instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(pg_instance.schedule_storage).__name__ == "PostgresScheduleStorage"
    assert type(pg_instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    config = pg_instance.get_concurrency_config()
    assert config.run_queue_config.max_concurrent_runs == 8
    assert {"key": "dagster/backfill", "limit": 3} in config.run_queue_config.tag_concurrency_limits
    assert config.pool_config.default_pool_limit == 1
    assert pg_instance.run_retries_enabled and pg_instance.run_retries_max_retries == 2
    assert not pg_instance.run_retries_retry_on_asset_or_op_failure  # op retries handle those
    assert pg_instance.auto_materialize_use_sensors
    assert not pg_instance.telemetry_enabled


def test_materialize_demo_partitions_and_read_them_back(
    demo_api, demo_credentials, pg_home, pg_instance, tmp_path
):
    (payments,) = [s for s in load_sources() if s.name == "payments"]
    payments = payments.model_copy(
        update={"endpoints": [e for e in payments.endpoints if e.name in ENDPOINTS]}
    )
    defs = build_definitions([payments], str(tmp_path / "data"))
    assets = build_assets([payments])
    run_ids = []
    for day in DAYS:
        result = dg.materialize(
            assets, resources=defs.resources, instance=pg_instance, partition_key=day,
            tags={"test": "deploy-postgres"},
        )
        assert result.success
        run_ids.append(result.run_id)

    # Another process's view: a new instance from the same dagster.yaml + environment.
    with dg.DagsterInstance.from_config(str(pg_home)) as reader:
        runs = reader.get_runs(dg.RunsFilter(tags={"test": "deploy-postgres"}))
        assert sorted(r.run_id for r in runs) == sorted(run_ids)
        assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
        assert sorted(r.tags["dagster/partition"] for r in runs) == DAYS

        for endpoint in ENDPOINTS:
            for prefix in ([], ["raw"]):
                key = dg.AssetKey([*prefix, "payments", endpoint])
                records = [  # (the database is shared with the other deploy tests)
                    r for r in reader.fetch_materializations(key, limit=50).records
                    if r.run_id in run_ids
                ]
                by_day = {r.partition_key: r for r in records}
                assert sorted(by_day) == DAYS, key
                assert {r.run_id for r in records} == set(run_ids)
            for day in DAYS:
                truth = demo_api.records("payments", endpoint, *_window(day))
                table_key = dg.AssetKey(["payments", endpoint])
                [record] = [
                    r for r in reader.fetch_materializations(table_key, limit=50).records
                    if r.partition_key == day and r.run_id in run_ids
                ]
                metadata = record.asset_materialization.metadata
                assert metadata["dagster/row_count"].value == len(truth)
                stored = ds.dataset(current_parquet_files(
                    tmp_path / "data" / "payments" / endpoint / f"date={day}"), format="parquet"
                ).to_table()
                assert sorted(stored.column("id").to_pylist()) == sorted(
                    str(r["id"]) for r in truth
                )

        # The per-source pool is enforced through Postgres: the raw steps claimed a slot
        # of `api_payments`, created with deploy/dagster.yaml's default limit of 1.
        pools = reader.event_log_storage.get_concurrency_keys()
        assert "api_payments" in pools and "api_crm" not in pools  # created by use
        info = reader.event_log_storage.get_concurrency_info("api_payments")
        assert info.slot_count == 1
        assert info.active_slot_count == 0  # every claimed slot was given back
