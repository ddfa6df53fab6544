"""Asset checks, through Dagster, against the demo API over real HTTP.

Each test materializes real partitions of a demo endpoint with its checks (as the UI runs
them: the asset and its checks in one run), provokes what APIs do to data with the demo
API's faults (schema changes, inserts during pagination, a clock that stops early), and
reads the check results and their metadata as the UI shows them.
"""

from __future__ import annotations

import datetime as dt
import shutil

import dagster as dg
import orjson
import pyarrow.dataset as ds
import pytest
from pydantic import ValidationError

from ingestion_assets.checks import (
    CONTRACT,
    ROW_COUNT,
    SCHEMA_DRIFT,
    UNIQUENESS,
    WINDOW,
    build_checks,
    check_blocking,
    check_severity,
    drift_severity,
)
from ingestion_assets.definitions import build_definitions
from ingestion_assets.demo_api import demo_env
from ingestion_assets.io_managers.parquet import DEAD_LETTERS_FILE, read_dead_letters
from ingestion_assets.io_managers.storage import resolve_partition
from ingestion_assets.specs import Endpoint, Source, load_sources
from ingestion_assets_tests.materialize import run

UTC = dt.timezone.utc
CHARGES = dg.AssetKey(["payments", "charges"])
WARN, ERROR = dg.AssetCheckSeverity.WARN, dg.AssetCheckSeverity.ERROR


@pytest.fixture
def sources(demo_sources):
    """The demo sources against the ``demo_api`` fixture (conftest's ``demo_sources``)."""
    return demo_sources


def endpoint_of(source: Source, endpoint: str, **changes) -> Source:
    """The source with one endpoint, optionally changed as in its YAML.

    Tests state the contract they test: the demo YAML's declared schema of payments
    charges is dropped unless a test sets one.
    """
    ep = next(e for e in source.endpoints if e.name == endpoint)
    if endpoint == "charges":
        changes.setdefault("schema", None)
        changes.setdefault("required", [])
    if changes:
        ep = Endpoint.model_validate({**ep.model_dump(by_alias=True), **changes})
    return source.model_copy(update={"endpoints": [ep]})


def evaluation(result, name: str, partition: str | None = None):
    found = [e for e in result.get_asset_check_evaluations()
             if e.check_name == name and (partition is None or e.partition == partition)]
    assert len(found) == 1, [(e.check_name, e.partition) for e in result.get_asset_check_evaluations()]
    return found[0]


def differences(evaluation) -> list[dict]:
    return [r.data for r in evaluation.metadata["differences"].records]


def window(day: str) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.fromisoformat(day).replace(tzinfo=UTC)
    return start, start + dt.timedelta(days=1)


# --------------------------------------------------------------------------- schema drift


def test_field_added_warns_with_the_new_column_named(demo_api, sources, tmp_path):
    source = endpoint_of(sources["payments"], "charges")
    instance = dg.DagsterInstance.ephemeral()
    baseline = run(source, tmp_path, instance, "2025-01-30")
    assert baseline.success
    assert evaluation(baseline, SCHEMA_DRIFT).passed

    demo_api.add_fault(kind="schema_change", source="payments", change="add",
                       field="risk_score", value=42, since="2025-02-01")
    result = run(source, tmp_path, instance, "2025-02-03")
    drift = evaluation(result, SCHEMA_DRIFT)
    assert not drift.passed and drift.severity == WARN
    assert drift.partition == "2025-02-03"
    assert "risk_score" in drift.description
    assert {"column": "risk_score", "change": "added", "before": "-", "now": "int64",
            "against": "previous materialization", "severity": "warn"} in differences(drift)
    # A warning does not block: the run succeeds and the other checks pass.
    assert result.success
    assert evaluation(result, ROW_COUNT).passed and evaluation(result, CONTRACT).passed


def test_field_removed_is_an_error(demo_api, sources, tmp_path):
    source = endpoint_of(sources["payments"], "charges")
    instance = dg.DagsterInstance.ephemeral()
    assert run(source, tmp_path, instance, "2025-01-30").success
    demo_api.add_fault(kind="schema_change", source="payments", change="remove",
                       field="currency", since="2025-02-01")
    drift = evaluation(run(source, tmp_path, instance, "2025-02-03"), SCHEMA_DRIFT)
    assert not drift.passed and drift.severity == ERROR
    rows = differences(drift)
    assert [(r["column"], r["change"], r["before"]) for r in rows] == [
        ("currency", "removed", "string")
    ]
    assert drift.metadata["compared_with_partition"].value == "2025-01-30"


def test_field_changing_type_is_an_error(demo_api, sources, tmp_path):
    source = endpoint_of(sources["payments"], "charges")
    instance = dg.DagsterInstance.ephemeral()
    assert run(source, tmp_path, instance, "2025-01-30").success
    demo_api.add_fault(kind="schema_change", source="payments", change="retype",
                       field="amount", type="string", since="2025-02-01")
    drift = evaluation(run(source, tmp_path, instance, "2025-02-03"), SCHEMA_DRIFT)
    assert not drift.passed and drift.severity == ERROR
    assert {(r["column"], r["change"], r["before"], r["now"]) for r in differences(drift)} == {
        ("amount", "type_changed", "int64", "string")
    }


def test_declared_column_emptied_by_the_api_is_reported_as_removed(demo_api, sources,
                                                                   tmp_path):
    # Declared (not required) columns are always present: a removed field would show as a
    # column of nulls. The check names it instead of letting it pass as "no change".
    source = endpoint_of(sources["payments"], "charges",
                         schema={"id": "string", "currency": "string"})
    instance = dg.DagsterInstance.ephemeral()
    assert run(source, tmp_path, instance, "2025-01-30").success
    demo_api.add_fault(kind="schema_change", source="payments", change="remove",
                       field="currency", since="2025-02-01")
    drift = evaluation(run(source, tmp_path, instance, "2025-02-03"), SCHEMA_DRIFT)
    assert not drift.passed and drift.severity == ERROR
    assert [(r["column"], r["change"], r["now"]) for r in differences(drift)] == [
        ("currency", "removed", "no values in this partition")
    ]


def test_drift_against_the_declared_schema_on_the_first_materialization(sources, tmp_path):
    # No previous materialization: the declared schema is the reference. The primary key is
    # required (not null); the declared column that the records lack is reported.
    source = endpoint_of(sources["payments"], "charges",
                         schema={"id": "string", "amount": "int64"})
    result = run(source, tmp_path, dg.DagsterInstance.ephemeral(), "2025-01-30")
    drift = evaluation(result, SCHEMA_DRIFT)
    assert drift.passed, drift.description
    assert drift.metadata["compared_with_partition"].value == "(none)"
    table = next(e for e in result.get_asset_materialization_events() if e.asset_key == CHARGES)
    columns = {c.name: c for c in table.materialization.metadata["dagster/column_schema"].value.columns}
    assert columns["id"].constraints.nullable is False
    assert columns["amount"].type == "int64"


# --------------------------------------------------------------------------- contract


def test_required_field_missing_from_every_record_goes_to_dead_letters(
    demo_api, sources, tmp_path
):
    source = endpoint_of(sources["payments"], "charges",
                         schema={"id": "string", "amount": "int64"}, required=["amount"])
    instance = dg.DagsterInstance.ephemeral()
    demo_api.add_fault(kind="schema_change", source="payments", change="remove",
                       field="amount", since="2025-02-01")
    result = run(source, tmp_path, instance, "2025-02-03")
    truth = demo_api.records("payments", "charges", *window("2025-02-03"))
    assert truth

    contract = evaluation(result, CONTRACT)
    assert not contract.passed and contract.severity == ERROR
    assert contract.metadata["dead_letters"].value == len(truth)
    reasons = [r.data for r in contract.metadata["reasons"].records]
    assert reasons == [{"rule": "missing_required", "field": "amount", "count": len(truth)}]
    assert "missing_required" in contract.metadata["sample"].value

    # Never dropped: every record is in the dead letters, with the reason and as received.
    folder = tmp_path / "payments" / "charges" / "date=2025-02-03"
    dead = read_dead_letters(folder)
    assert sorted(orjson.loads(r)["id"] for r in dead.column("_record").to_pylist()) == sorted(
        r["id"] for r in truth
    )
    assert set(dead.column("_reason").to_pylist()) == {"required field 'amount' is missing or null"}
    assert set(dead.column("_partition").to_pylist()) == {"2025-02-03"}
    # Readers of the table do not see them (the file starts with "_").
    assert ds.dataset(folder, format="parquet").to_table().num_rows == 0

    # No silent empty partition: the row count check fails too, naming why.
    rows = evaluation(result, ROW_COUNT)
    assert not rows.passed and "empty" in rows.description and "dead letters" in rows.description
    # Both are blocking by default: the run is red.
    assert not result.success


def test_uncastable_values_are_dead_letters_and_the_rest_lands(demo_api, sources, tmp_path):
    source = endpoint_of(sources["payments"], "charges",
                         schema={"id": "string", "amount": "int64"},
                         checks={"contract": {"max_dead_letters": 1_000_000}})
    # From noon, `amount` arrives as an object: it cannot be cast to the declared int64.
    demo_api.add_fault(kind="schema_change", source="payments", change="retype",
                       field="amount", type="object", since="2025-02-01T12:00:00Z")
    result = run(source, tmp_path, dg.DagsterInstance.ephemeral(), "2025-02-01")
    truth = demo_api.records("payments", "charges", *window("2025-02-01"))
    noon = dt.datetime(2025, 2, 1, 12, tzinfo=UTC).timestamp()
    changed = sorted(r["id"] for r in truth if r["created"] >= noon)
    assert 0 < len(changed) < len(truth)

    folder = tmp_path / "payments" / "charges" / "date=2025-02-01"
    dead = read_dead_letters(folder)
    assert sorted(orjson.loads(r)["id"] for r in dead.column("_record").to_pylist()) == changed
    assert set(dead.column("_rule").to_pylist()) == {"uncastable"}
    assert set(dead.column("_field").to_pylist()) == {"amount"}
    table = ds.dataset(folder, format="parquet").to_table()
    # Nothing dropped, nothing nulled: the others land with their amounts.
    assert sorted(table.column("id").to_pylist() + changed) == sorted(r["id"] for r in truth)
    assert table.column("amount").null_count == 0

    contract = evaluation(result, CONTRACT)
    # Within the configured threshold: passes, but the dead letters are counted and kept.
    assert contract.passed and contract.metadata["dead_letters"].value == len(changed)
    assert evaluation(result, ROW_COUNT).passed  # rows == raw records - dead letters
    assert result.success


def test_dead_letters_are_replaced_with_their_partition(demo_api, sources, tmp_path):
    source = endpoint_of(sources["payments"], "charges",
                         schema={"id": "string", "amount": "int64"}, required=["amount"])
    instance = dg.DagsterInstance.ephemeral()
    demo_api.add_fault(kind="schema_change", source="payments", change="remove",
                       field="amount", since="2025-02-01")
    run(source, tmp_path, instance, "2025-02-03")
    folder = tmp_path / "payments" / "charges" / "date=2025-02-03"
    assert (resolve_partition(folder, "_SUCCESS") / DEAD_LETTERS_FILE).exists()

    demo_api.clear_faults()
    fixed = run(source, tmp_path, instance, "2025-02-03")
    assert fixed.success
    assert not (resolve_partition(folder, "_SUCCESS") / DEAD_LETTERS_FILE).exists()
    assert read_dead_letters(folder).num_rows == 0
    marker = orjson.loads((resolve_partition(folder, "_SUCCESS") / "_SUCCESS").read_bytes())
    assert marker["dead_letters"] == {"rows": 0, "file": None}
    assert evaluation(fixed, CONTRACT).passed


def test_extra_fields_kept_in_a_json_column(demo_api, sources, tmp_path):
    source = endpoint_of(sources["payments"], "charges",
                         schema={"id": "string", "amount": "int64"}, extra_fields="json")
    demo_api.add_fault(kind="schema_change", source="payments", change="add",
                       field="risk_score", value=42, since="2025-02-01")
    result = run(source, tmp_path, dg.DagsterInstance.ephemeral(), "2025-02-03")
    assert result.success
    table = ds.dataset(tmp_path / "payments" / "charges" / "date=2025-02-03").to_table()
    assert [c for c in table.column_names if not c.startswith("_")] == ["id", "amount", "created"]
    extra = orjson.loads(table.column("_extra")[0].as_py())
    assert extra["risk_score"] == 42 and "currency" in extra  # never dropped


# --------------------------------------------------------------------------- row count


def test_count_mismatch_with_the_api_total_fails(demo_api, sources, tmp_path):
    # Offset pages while records are inserted at the head: pages overlap, so more records
    # arrive than the API declared (the client only warns, as configured).
    source = endpoint_of(sources["crm"], "emails", on_total_mismatch="warn", workers=1,
                         pagination={"type": "offset", "limit": 5, "total_path": "total"})
    demo_api.add_fault(kind="insert_during_pagination", source="crm", path="emails",
                       count=-1, after=1)
    result = run(source, tmp_path, dg.DagsterInstance.ephemeral(), "2025-02-10")
    rows = evaluation(result, ROW_COUNT)
    assert not rows.passed and rows.severity == ERROR
    declared = rows.metadata["declared_total"].value
    received = rows.metadata["raw_records"].value
    assert received != declared
    assert f"the API declared {declared} records, {received} were received" in rows.description


def test_partition_far_below_the_usual_count_fails_with_the_median(
    demo_api_factory, monkeypatch, tmp_path
):
    # The API's clock stops at 03:00 on 2025-02-10: that day holds 3 hours of charges.
    api = demo_api_factory(now="2025-02-10T03:00:00Z")
    for name, value in demo_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DEMO_API_URL", api.url)
    source = endpoint_of({s.name: s for s in load_sources()}["payments"], "charges")
    instance = dg.DagsterInstance.ephemeral()
    usual = []
    for day in ("2025-02-06", "2025-02-07", "2025-02-08"):
        result = run(source, tmp_path, instance, day)
        assert result.success
        usual.append(evaluation(result, ROW_COUNT).metadata["rows"].value)

    result = run(source, tmp_path, instance, "2025-02-10")
    rows = evaluation(result, ROW_COUNT)
    assert not rows.passed
    median = sorted(usual)[1]
    assert rows.metadata["median_of_last_partitions"].value == median
    assert rows.metadata["median_partitions"].value == 3
    assert rows.metadata["rows"].value < 0.5 * median
    assert "median" in rows.description
    assert not result.success  # blocking by default


def test_row_count_passes_and_tells_why_the_median_is_not_applied_yet(sources, tmp_path):
    result = run(endpoint_of(sources["payments"], "charges"), tmp_path,
                 dg.DagsterInstance.ephemeral(), "2025-02-10")
    rows = evaluation(result, ROW_COUNT)
    assert rows.passed
    assert rows.metadata["rows"].value == rows.metadata["raw_records"].value > 0
    assert "not applied" in rows.metadata["median_rule"].value


def test_empty_partition_allowed_by_config(demo_api, sources, tmp_path):
    # The API's clock stops at 2025-03-01T00:00Z: that day is empty.
    source = endpoint_of(sources["payments"], "refunds")
    instance = dg.DagsterInstance.ephemeral()
    assert not evaluation(run(source, tmp_path, instance, "2025-03-01"), ROW_COUNT).passed
    allowed = endpoint_of(sources["payments"], "refunds",
                          checks={"row_count": {"allow_empty": True}})
    assert evaluation(run(allowed, tmp_path, instance, "2025-03-01"), ROW_COUNT).passed


# --------------------------------------------------------------------------- blocking


def _downstream():
    @dg.asset(key=["reports", "daily_revenue"], deps=[CHARGES],
              partitions_def=dg.DailyPartitionsDefinition(start_date="2025-01-01"),
              backfill_policy=dg.BackfillPolicy.single_run())
    def daily_revenue() -> None:
        return None

    return daily_revenue


def _ran(result, key: dg.AssetKey) -> bool:
    return any(e.asset_key == key for e in result.get_asset_materialization_events())


def test_blocking_check_failure_stops_the_downstream_asset(demo_api, sources, tmp_path):
    source = endpoint_of(sources["payments"], "charges",
                         schema={"id": "string", "amount": "int64"}, required=["amount"])
    revenue = _downstream()
    instance = dg.DagsterInstance.ephemeral()
    healthy = run(source, tmp_path, instance, "2025-01-30", extra=[revenue])
    assert healthy.success and _ran(healthy, revenue.key)

    demo_api.add_fault(kind="schema_change", source="payments", change="remove",
                       field="amount", since="2025-02-01")
    result = run(source, tmp_path, instance, "2025-02-03", extra=[revenue])
    assert not result.success
    assert _ran(result, CHARGES)  # the table and its dead letters are stored...
    assert not _ran(result, revenue.key)  # ...but nothing downstream builds on them
    failures = [e for e in result.all_events if e.is_step_failure]
    assert [e.step_key for e in failures] == ["payments__charges__checks"]


def test_non_blocking_check_lets_the_downstream_asset_run(demo_api, sources, tmp_path):
    source = endpoint_of(sources["payments"], "charges",
                         schema={"id": "string", "amount": "int64"}, required=["amount"],
                         checks={"blocking": False})
    revenue = _downstream()
    demo_api.add_fault(kind="schema_change", source="payments", change="remove",
                       field="amount", since="2025-02-01")
    result = run(source, tmp_path, dg.DagsterInstance.ephemeral(), "2025-02-03",
                 extra=[revenue])
    assert not evaluation(result, CONTRACT).passed
    assert result.success and _ran(result, revenue.key)


# --------------------------------------------------------------------------- partitions


def test_single_run_backfill_checks_each_partition(sources, tmp_path):
    source = endpoint_of(sources["payments"], "refunds")
    result = run(source, tmp_path, dg.DagsterInstance.ephemeral(),
                 tags={"dagster/asset_partition_range_start": "2025-02-01",
                       "dagster/asset_partition_range_end": "2025-02-05"})
    assert result.success
    for name in (ROW_COUNT, SCHEMA_DRIFT, CONTRACT):
        evaluations = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
        assert sorted(e.partition for e in evaluations) == [
            f"2025-02-0{i}" for i in range(1, 6)
        ]
        assert all(e.passed for e in evaluations), [e.description for e in evaluations]
        assert all(e.target_materialization_data is not None for e in evaluations)


def test_checks_need_no_other_partition_data(demo_api, sources, tmp_path):
    # The checks read the event log (and the partition's own dead letters), never the data
    # of other partitions: deleting every other stored partition changes nothing.
    source = endpoint_of(sources["payments"], "refunds")
    instance = dg.DagsterInstance.ephemeral()
    assert run(source, tmp_path, instance,
               tags={"dagster/asset_partition_range_start": "2025-02-01",
                     "dagster/asset_partition_range_end": "2025-02-04"}).success
    for day in ("2025-02-01", "2025-02-02", "2025-02-03", "2025-02-04"):
        shutil.rmtree(tmp_path / "payments" / "refunds" / f"date={day}")
    result = run(source, tmp_path, instance, "2025-02-05")
    rows = evaluation(result, ROW_COUNT)
    assert rows.passed and rows.metadata["median_partitions"].value == 4


# --------------------------------------------------------------------------- freshness


def test_freshness_policy_and_lag_metadata(sources, tmp_path):
    source = endpoint_of(sources["payments"], "charges",
                         freshness={"max_lag_hours": 30, "warn_lag_hours": 26})
    defs = build_definitions([source], str(tmp_path))
    spec = next(s for a in defs.assets for s in a.specs if s.key == CHARGES)
    policy = spec.freshness_policy
    assert isinstance(policy, dg.FreshnessPolicy)
    assert policy.fail_window.to_timedelta() == dt.timedelta(hours=30)
    assert policy.warn_window.to_timedelta() == dt.timedelta(hours=26)

    result = run(source, tmp_path, dg.DagsterInstance.ephemeral(), "2025-02-10")
    meta = next(e for e in result.get_asset_materialization_events()
                if e.asset_key == CHARGES).materialization.metadata
    newest = dt.datetime.fromtimestamp(meta["newest_record_at"].value, UTC)
    start, end = window("2025-02-10")
    assert start <= newest < end and newest > end - dt.timedelta(minutes=5)
    lag = meta["lag_hours"].value
    expected = (dt.datetime.now(UTC) - newest).total_seconds() / 3600
    assert abs(lag - expected) < 1


def test_demo_sources_declare_checks_and_freshness(sources):
    charges = next(e for e in sources["payments"].endpoints if e.name == "charges")
    assert charges.freshness is not None and charges.schema_
    defs = build_definitions(list(sources.values()), "/tmp/unused")
    keys = {k for c in defs.asset_checks for k in c.check_keys}
    assert dg.AssetCheckKey(CHARGES, CONTRACT) in keys
    endpoints = [e for s in sources.values() for e in s.endpoints]
    timed = [e for e in endpoints if e.time_partitioning is not None and e.window is not None]
    partitioned = [e for e in endpoints if e.partitioning.type != "none"]
    # row_count, schema_drift, contract everywhere; window on time partitions with a window
    # (not a child's: its parent's window chose its records); uniqueness on every
    # partitioned endpoint (all demo endpoints declare a primary key).
    assert len(keys) == 3 * len(endpoints) + len(timed) + len(partitioned)
    assert dg.AssetCheckKey(CHARGES, WINDOW) in keys and dg.AssetCheckKey(CHARGES, UNIQUENESS) in keys


# --------------------------------------------------------------------------- settings


def test_check_settings_inherit_from_the_endpoint():
    ep = Endpoint.model_validate({
        "name": "x", "path": "/x", "primary_key": "id",
        "checks": {"severity": "warn", "blocking": False,
                   "schema_drift": {"removed": "error"},
                   "contract": {"blocking": True, "max_dead_letters": 5}},
    })
    assert check_severity(ep, ROW_COUNT) == "warn"
    assert check_blocking(ep, ROW_COUNT) is False
    assert check_blocking(ep, CONTRACT) is True
    assert drift_severity(ep, "removed") == "error"
    assert drift_severity(ep, "added") == "warn"
    default = Endpoint.model_validate({"name": "x", "path": "/x", "primary_key": "id"})
    assert (check_severity(default, ROW_COUNT), check_blocking(default, ROW_COUNT)) == ("error", True)
    assert check_blocking(default, SCHEMA_DRIFT) is False
    assert [drift_severity(default, k) for k in
            ("added", "removed", "type_changed", "nullability_changed")] == [
        "warn", "error", "error", "warn"]


def test_check_settings_reject_typos_and_bad_values():
    base = {"name": "x", "path": "/x", "primary_key": "id"}
    for bad in (
        {"checks": {"row_count": {"allow_emtpy": True}}},
        {"checks": {"severity": "fatal"}},
        {"checks": {"row_count": {"min_fraction_of_median": 2}}},
        {"freshness": {"max_lag_hours": 2, "warn_lag_hours": 3}},
        {"freshness": {"max_lag_hours": 2, "timestamp_field": "created"}},
        {"extra_fields": "drop"},
    ):
        with pytest.raises(ValidationError):
            Endpoint.model_validate({**base, **bad})


def test_disabled_checks_are_not_defined(sources):
    source = endpoint_of(sources["payments"], "charges",
                         checks={"row_count": {"enabled": False},
                                 "schema_drift": {"enabled": False},
                                 "contract": {"enabled": False},
                                 "window": {"enabled": False},
                                 "uniqueness": {"enabled": False}})
    assert build_checks([source]) == []
    partial = endpoint_of(sources["payments"], "charges",
                          checks={"schema_drift": {"enabled": False}})
    [checks] = build_checks([partial])
    assert {k.name for k in checks.check_keys} == {ROW_COUNT, CONTRACT, WINDOW, UNIQUENESS}


def test_unpartitioned_snapshot_is_checked_too(demo_api, sources, tmp_path):
    source = endpoint_of(sources["crm"], "companies")
    instance = dg.DagsterInstance.ephemeral()
    first = run(source, tmp_path, instance)
    assert first.success
    for name in (ROW_COUNT, SCHEMA_DRIFT, CONTRACT):
        result = evaluation(first, name)
        assert result.passed and result.partition is None, result.description
    # The next snapshot is compared with the previous one.
    second = evaluation(run(source, tmp_path, instance), SCHEMA_DRIFT)
    assert second.passed and second.metadata["compared_with_partition"].value == "(snapshot)"
