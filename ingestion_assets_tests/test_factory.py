"""Endpoints as partitioned assets, materialized through Dagster against the demo API.

Each test materializes real partitions (raw + table) over loopback HTTP, reads the Parquet
back and compares it with what the demo API holds for that window: same primary keys, no
duplicates, no gaps.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.dataset as ds

from ingestion_assets.definitions import build_definitions
from ingestion_assets.demo_api import demo_env
from ingestion_assets.factory import build_assets
from ingestion_assets.io_managers.parquet import current_parquet_files
from ingestion_assets.io_managers.storage import resolve_partition
from ingestion_assets.partitions import dynamic_partitions_name
from ingestion_assets.specs import Source, load_sources

UTC = dt.timezone.utc


def only_endpoint(source: Source, endpoint: str, **changes) -> Source:
    """The source with one endpoint, optionally changed (the Python API of the specs)."""
    ep = next(e for e in source.endpoints if e.name == endpoint)
    if "partitioning" in changes:
        # Schedules and sensors are built for the shipped partitioning; a test that
        # repartitions an endpoint tests the assets alone.
        changes.setdefault("automation", {})
    if changes:
        ep = ep.model_validate({**ep.model_dump(by_alias=True), **changes})
    return source.model_copy(update={"endpoints": [ep]})


def materialize(source: Source, data: Path, instance=None, *, only=None, **kwargs):
    """Materialize the source's assets (or only the given keys) with the project's resources."""
    defs = build_definitions([source], str(data))
    assets = build_assets([source])
    selection = only or [k for a in assets for k in a.keys]
    return dg.materialize(
        assets,
        selection=selection,
        resources=defs.resources,
        instance=instance or dg.DagsterInstance.ephemeral(),
        **kwargs,
    )


def read(data: Path, *parts: str) -> pa.Table:
    """The current version of a table partition (or every partition under a folder)."""
    return ds.dataset(current_parquet_files(data.joinpath(*parts)), format="parquet").to_table()


def raw_manifest_bytes(folder: Path) -> bytes:
    """The manifest of the current version of a raw partition, byte for byte."""
    return (resolve_partition(folder, "manifest.json") / "manifest.json").read_bytes()


def keys(records, pk="id"):
    return sorted(str(r[pk]) for r in records)


def ids(table: pa.Table, pk="id"):
    """Primary keys in a stored partition (an empty partition may lack undeclared columns)."""
    return sorted(map(str, table.column(pk).to_pylist())) if pk in table.column_names else []


def window(day: str) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.fromisoformat(day).replace(tzinfo=UTC)
    return start, start + dt.timedelta(days=1)


def test_daily_partition_matches_the_api(demo_api, demo_sources, tmp_path):
    result = materialize(only_endpoint(demo_sources["payments"], "charges"), tmp_path,
                         partition_key="2025-02-10")
    assert result.success
    table = read(tmp_path, "payments", "charges", "date=2025-02-10")
    truth = demo_api.records("payments", "charges", *window("2025-02-10"))
    assert sorted(table.column("id").to_pylist()) == keys(truth)
    assert table.column("created").type == pa.timestamp("us", tz="UTC")
    assert set(table.column("_partition").to_pylist()) == {"2025-02-10"}
    # What the UI shows on the two materializations.
    events = {e.asset_key.to_user_string(): e.materialization.metadata
              for e in result.get_asset_materialization_events()}
    table_meta, raw_meta = events["payments/charges"], events["raw/payments/charges"]
    assert table_meta["dagster/row_count"].value == len(truth)
    columns = {c.name for c in table_meta["dagster/column_schema"].value.columns}
    assert {"id", "amount", "created", "_ingested_at", "_run_id"} <= columns
    assert "preview" in table_meta and "dagster/uri" in table_meta
    assert raw_meta["records"].value == len(truth)
    assert raw_meta["http/requests"].value == raw_meta["pages"].value >= 2
    assert raw_meta["http/records_per_second"].value > 0


def test_weekly_partition_on_update_time(demo_api, demo_sources, tmp_path):
    result = materialize(only_endpoint(demo_sources["crm"], "contacts"), tmp_path,
                         partition_key="2025-02-03")
    assert result.success
    table = read(tmp_path, "crm", "contacts", "week=2025-02-03")
    start = dt.datetime(2025, 2, 3, tzinfo=UTC)
    truth = demo_api.records("crm", "contacts", start, start + dt.timedelta(days=7),
                             field="updated")
    assert sorted(table.column("id").to_pylist()) == keys(truth)
    assert table.num_rows == len(set(table.column("id").to_pylist()))


def test_hourly_partition(demo_api, demo_sources, tmp_path):
    source = only_endpoint(demo_sources["payments"], "refunds",
                           partitioning={"type": "hourly", "start": "2025-02-01-00:00"})
    result = materialize(source, tmp_path, partition_key="2025-02-10-13:00")
    assert result.success
    table = read(tmp_path, "payments", "refunds", "hour=2025-02-10-13%3A00")
    start = dt.datetime(2025, 2, 10, 13, tzinfo=UTC)
    truth = demo_api.records("payments", "refunds", start, start + dt.timedelta(hours=1))
    assert truth and sorted(table.column("id").to_pylist()) == keys(truth)


def test_monthly_partition(demo_api, demo_sources, tmp_path):
    source = only_endpoint(demo_sources["payments"], "refunds",
                           partitioning={"type": "monthly", "start": "2025-01-01"})
    assert materialize(source, tmp_path, partition_key="2025-01-01").success
    table = read(tmp_path, "payments", "refunds", "month=2025-01-01")
    truth = demo_api.records("payments", "refunds", dt.datetime(2025, 1, 1, tzinfo=UTC),
                             dt.datetime(2025, 2, 1, tzinfo=UTC))
    assert len(truth) > 1000 and ids(table) == keys(truth)  # 31 days, many pages


def test_static_partitions_reach_the_path(demo_api, demo_sources, tmp_path):
    repos = [r["name"] for r in demo_api.records("devhub", "repos", org="demo-org")][:2]
    source = only_endpoint(
        demo_sources["devhub"], "issues",
        partitioning={"type": "static", "dimension": "repo", "values": repos,
                      "path_placeholder": "repo"},
    )
    for repo in repos:
        assert materialize(source, tmp_path, partition_key=repo).success
        table = read(tmp_path, "devhub", "issues", f"repo={repo}")
        truth = demo_api.records("devhub", "issues", repo=f"demo-org/{repo}")
        assert truth and sorted(map(str, table.column("id").to_pylist())) == keys(truth)


def test_dynamic_partitions_discovered_at_run_time(demo_api, demo_sources, tmp_path):
    source = only_endpoint(demo_sources["devhub"], "issues")
    repo = demo_api.records("devhub", "repos", org="demo-org")[-1]["name"]
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(dynamic_partitions_name(source, source.endpoints[0]), [repo])
    assert materialize(source, tmp_path, instance, partition_key=repo).success
    table = read(tmp_path, "devhub", "issues", f"repo={repo}")
    truth = demo_api.records("devhub", "issues", repo=f"demo-org/{repo}")
    assert truth and sorted(map(str, table.column("id").to_pylist())) == keys(truth)


def test_multi_partitions_time_by_static(demo_api, demo_sources, tmp_path):
    source = only_endpoint(
        demo_sources["commerce"], "orders",
        params={"limit": 250},
        partitioning={
            "type": "multi",
            "time": {"type": "daily", "start": "2025-01-01"},
            "static": {"type": "static", "dimension": "status",
                       "values": ["open", "closed", "cancelled"], "param": "status"},
        },
    )
    truth = demo_api.records("commerce", "orders", *window("2025-02-10"))

    def status(order):
        if order["cancelled_at"]:
            return "cancelled"
        return "closed" if order["closed_at"] else "open"

    seen = []
    for state in ("open", "closed", "cancelled"):
        key = dg.MultiPartitionKey({"date": "2025-02-10", "status": state})
        assert materialize(source, tmp_path, partition_key=key).success
        table = read(tmp_path, "commerce", "orders", "date=2025-02-10", f"status={state}")
        ids = sorted(map(str, table.column("id").to_pylist()))
        assert ids == keys([o for o in truth if status(o) == state])
        seen += ids
    assert sorted(seen) == keys(truth)  # the three statuses tile the day


def test_unpartitioned_snapshot(demo_api, demo_sources, tmp_path):
    assert materialize(only_endpoint(demo_sources["commerce"], "products"), tmp_path).success
    table = read(tmp_path, "commerce", "products", "snapshot")
    assert sorted(map(str, table.column("id").to_pylist())) == keys(
        demo_api.records("commerce", "products"))


def test_failure_midway_leaves_the_previous_partition_and_rerun_is_exact(
    demo_api, demo_sources, tmp_path, monkeypatch
):
    source = only_endpoint(demo_sources["payments"], "charges", params={"limit": 50})
    # The shipped attempts and op retries, without their waits (about 25 s of sleeping).
    source = source.model_copy(update={"retry": source.retry.model_copy(
        update={"backoff_base_seconds": 0.01, "backoff_max_seconds": 0.01})})
    monkeypatch.setenv("INGESTION_OP_RETRY_DELAY_SECONDS", "0")
    instance = dg.DagsterInstance.ephemeral()
    first = materialize(source, tmp_path, instance, partition_key="2025-02-10")
    before = read(tmp_path, "payments", "charges", "date=2025-02-10")
    raw_manifest = raw_manifest_bytes(tmp_path / "raw/payments/charges/date=2025-02-10")

    # The API fails for good after 4 pages of the next run: the run must fail, and nothing
    # of the partition already stored may change.
    demo_api.add_fault(kind="server_error", source="payments", path="/v1/charges",
                       status=503, count=-1, after=4)
    failed = materialize(source, tmp_path, instance, partition_key="2025-02-10",
                         raise_on_error=False)
    assert not failed.success
    after = read(tmp_path, "payments", "charges", "date=2025-02-10")
    assert after.equals(before)
    assert set(after.column("_run_id").to_pylist()) == {first.run_id}
    assert raw_manifest_bytes(tmp_path / "raw/payments/charges/date=2025-02-10") == raw_manifest

    demo_api.clear_faults()
    rerun = materialize(source, tmp_path, instance, partition_key="2025-02-10")
    assert rerun.success
    table = read(tmp_path, "payments", "charges", "date=2025-02-10")
    truth = demo_api.records("payments", "charges", *window("2025-02-10"))
    assert sorted(table.column("id").to_pylist()) == keys(truth)  # exactly, nothing doubled
    assert set(table.column("_run_id").to_pylist()) == {rerun.run_id}


def test_table_is_rebuilt_from_raw_with_the_api_stopped(
    demo_api_factory, monkeypatch, tmp_path
):
    api = demo_api_factory()
    for name, value in demo_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DEMO_API_URL", api.url)
    source = only_endpoint({s.name: s for s in load_sources()}["payments"], "charges")
    instance = dg.DagsterInstance.ephemeral()
    assert materialize(source, tmp_path, instance, partition_key="2025-02-10").success
    nested = read(tmp_path, "payments", "charges", "date=2025-02-10")
    assert "billing_details" in nested.column_names
    api.stop()

    raw_manifest = raw_manifest_bytes(tmp_path / "raw/payments/charges/date=2025-02-10")

    # A change of normalization: nested objects flattened. The step runs with
    # `rebuild_from_raw` (the launchpad's run config): it reads the archived pages, so the
    # stopped API is never called, and only the table is materialized.
    flat = only_endpoint(source, "charges", nested="flatten")
    result = materialize(
        flat, tmp_path, instance, partition_key="2025-02-10",
        run_config={"ops": {"payments__charges": {"config": {"rebuild_from_raw": True}}}},
    )
    assert result.success
    assert {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()} == {
        "payments/charges"}
    table = read(tmp_path, "payments", "charges", "date=2025-02-10")
    assert "billing_details" not in table.column_names
    assert any(c.startswith("billing_details__") for c in table.column_names)
    assert sorted(table.column("id").to_pylist()) == sorted(nested.column("id").to_pylist())
    assert set(table.column("_run_id").to_pylist()) == {result.run_id}
    # the raw archive is untouched
    assert raw_manifest_bytes(tmp_path / "raw/payments/charges/date=2025-02-10") == raw_manifest

    # A partition that was never fetched cannot be rebuilt: a clear error, no API call.
    missing = materialize(
        flat, tmp_path, instance, partition_key="2025-02-11", raise_on_error=False,
        run_config={"ops": {"payments__charges": {"config": {"rebuild_from_raw": True}}}},
    )
    assert not missing.success
    (failure,) = [e for e in missing.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.message
    assert "no stored raw pages for raw/payments/charges partition '2025-02-11'" in message
    assert not (tmp_path / "payments/charges/date=2025-02-11").exists()


def test_one_step_materializes_raw_and_table_together(demo_api, demo_sources, tmp_path):
    """Raw and table of an endpoint are one step: one run, both materialized, same partition."""
    source = only_endpoint(demo_sources["payments"], "charges", params={"limit": 20})
    (step,) = build_assets([source])
    assert set(step.keys) == {dg.AssetKey(["raw", "payments", "charges"]),
                              dg.AssetKey(["payments", "charges"])}
    assert not step.can_subset  # Materialize on either asset in the UI runs both
    assert step.op.name == "payments__charges"
    result = materialize(source, tmp_path, partition_key="2025-02-10")
    steps = {e.step_key for e in result.all_events if e.is_step_success}
    assert steps == {"payments__charges"}  # one step, not raw + table
    meta = {e.asset_key.to_user_string(): e.materialization.metadata
            for e in result.get_asset_materialization_events()}
    truth = demo_api.records("payments", "charges", *window("2025-02-10"))
    assert meta["raw/payments/charges"]["records"].value == len(truth)
    assert meta["raw/payments/charges"]["pages"].value == -(-len(truth) // 20)
    assert meta["payments/charges"]["dagster/row_count"].value == len(truth)
    assert ids(read(tmp_path, "payments", "charges", "date=2025-02-10")) == keys(truth)


def test_a_normalizer_failure_leaves_raw_and_table_as_they_were(
    demo_api, demo_sources, tmp_path
):
    source = only_endpoint(demo_sources["payments"], "charges", params={"limit": 100})
    instance = dg.DagsterInstance.ephemeral()
    # Two days before the demo's clock stops: ignoring the window's end brings the records of
    # the days after it, and each page of them waits its turn at the source's rate limit.
    day = "2025-02-27"
    assert materialize(source, tmp_path, instance, partition_key=day).success
    before = read(tmp_path, "payments", "charges", f"date={day}")
    raw_manifest = raw_manifest_bytes(tmp_path / f"raw/payments/charges/date={day}")
    folders = [tmp_path / f"raw/payments/charges/date={day}",
               tmp_path / f"payments/charges/date={day}"]
    entries = [sorted(p.name for p in f.iterdir()) for f in folders]

    # The API stops honouring the end of the window: the fetch succeeds (every page is
    # archived in staging), but the window guard fails the normalized partition (records
    # after the day). The step must fail and neither stored partition may change: the
    # complete raw staging is discarded too.
    demo_api.add_fault(kind="ignore_params", source="payments", path="/v1/charges",
                       params=["created[lt]"])
    failed = materialize(source, tmp_path, instance, partition_key=day, raise_on_error=False)
    assert not failed.success
    (failure,) = [e for e in failed.all_events if e.is_step_failure]
    assert "OutOfWindowError" in failure.step_failure_data.error.to_string()
    assert read(tmp_path, "payments", "charges", f"date={day}").equals(before)
    assert raw_manifest_bytes(tmp_path / f"raw/payments/charges/date={day}") == raw_manifest
    # no uncommitted version left behind, raw or table
    assert [sorted(p.name for p in f.iterdir()) for f in folders] == entries


def test_backfill_of_60_daily_partitions_runs_once_and_lands_60_partitions(
    demo_api, demo_sources, tmp_path
):
    source = only_endpoint(demo_sources["payments"], "refunds")
    result = materialize(
        source, tmp_path,
        tags={"dagster/asset_partition_range_start": "2025-01-01",
              "dagster/asset_partition_range_end": "2025-03-01"},
    )
    assert result.success
    materialized = {(e.asset_key.to_user_string(), e.partition)
                    for e in result.get_asset_materialization_events()}
    days = [(dt.date(2025, 1, 1) + dt.timedelta(days=i)).isoformat() for i in range(60)]
    assert materialized == {(a, d) for a in ("raw/payments/refunds", "payments/refunds")
                            for d in days}
    non_empty = 0
    for day in days:
        table = read(tmp_path, "payments", "refunds", f"date={day}")
        truth = demo_api.records("payments", "refunds", *window(day))
        assert ids(table) == keys(truth), day
        assert set(table.column("_partition").to_pylist()) <= {day}
        non_empty += bool(truth)
    assert non_empty == 59  # the API's clock stops at 2025-03-01T00:00Z: the last day is empty


def test_definitions_load_as_the_ui_loads_them(demo_sources):
    from ingestion_assets import definitions

    defs = definitions.defs
    graph = defs.resolve_asset_graph()
    for source in demo_sources.values():
        for endpoint in source.endpoints:
            raw = dg.AssetKey(["raw", source.name, endpoint.name])
            table = dg.AssetKey([source.name, endpoint.name])
            raw_node, table_node = graph.get(raw), graph.get(table)
            assert raw_node.group_name == table_node.group_name == source.name
            assert raw in table_node.parent_keys
            assert "dagster/kind/api" in raw_node.tags and "dagster/kind/parquet" in table_node.tags
            assert raw_node.owners == source.owners
            # what the UI shows: the two told apart from their first words, and no doubled
            # punctuation where the YAML's description ends with a full stop
            assert raw_node.description.startswith("Raw API pages — ")
            assert table_node.description.startswith("Typed table — ")
            for text in (raw_node.description, table_node.description):
                assert not re.search(r"[.,;:]\s*[.,;:]", text), text
            assert (raw_node.partitions_def is None) == (endpoint.partitioning.type == "none")


def test_offset_pages_shifted_by_inserts_are_deduplicated_and_the_drift_reported(
    demo_api, demo_sources, tmp_path
):
    # Offset pagination with no declared total: the API inserts records at the head while
    # the client pages, so later offsets repeat records already fetched.
    source = only_endpoint(
        demo_sources["crm"], "emails",
        params={"includeTotal": "false"},
        pagination={"type": "offset", "limit": 5},
        workers=1,
    )
    demo_api.add_fault(kind="insert_during_pagination", source="crm",
                       path="/marketing/v3/emails", after=2, records=3, count=1)
    result = materialize(source, tmp_path, partition_key="2025-02-10")
    assert result.success
    raw_meta, table_meta = (
        {e.asset_key.to_user_string(): e.materialization.metadata
         for e in result.get_asset_materialization_events()}[k]
        for k in ("raw/crm/emails", "crm/emails")
    )
    table = read(tmp_path, "crm", "emails", "date=2025-02-10")
    assert table.num_rows == len(set(table.column("id").to_pylist()))  # no duplicates stored
    dropped = table_meta["drift/repeated_records_dropped"].value
    assert dropped > 0  # the drift is reported, not hidden
    assert table.num_rows + dropped == raw_meta["records"].value
