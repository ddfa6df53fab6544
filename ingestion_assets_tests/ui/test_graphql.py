"""The UI's flows through the webserver's GraphQL API: what the pages show, checked faster.

The Dagster UI draws every page from this API. These tests ask it the same questions the
catalog, the lineage graph, the launch dialog, the backfill page, the automation page and
the checks tab ask, against a running ``dagster dev`` (with its daemon) started for this
module, and compare the answers with the YAML and with the demo API's ground truth.
"""

from __future__ import annotations

import dagster as dg
import pytest

from ingestion_assets.partitions import partitions_def
from ingestion_assets.specs import load_sources
from ingestion_assets_tests.e2e.harness import MATERIALIZATIONS, PARTITIONS_DEF
from ingestion_assets_tests.ui.support import (
    AUTOMATIONS,
    UI_PROJECT,
    add_fault,
    asset_checks,
    checks_by_asset,
    clear_faults,
    day,
    demo_automations,
    demo_endpoints,
    demo_webhook_asset_keys,
    ground_truth_count,
    ground_truth_fields,
    launch_backfill,
    materialized,
    wait_for_backfill,
)

#: Runs and backfills wait on the daemon and the run queue; on a busy machine that is slow.
#: The project is shared with the other files of ui/ (ui/conftest.py): each test here works on
#: endpoints and partitions of its own and counts from what was there before it.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), pytest.mark.xdist_group(UI_PROJECT)]
RUN_TIMEOUT = 420


def metadata(event: dict) -> dict:
    return {m["label"]: m for m in event["metadataEntries"]}


def materializations(project, key: str, partitions: list[str]) -> dict[str, dict]:
    data = project.graphql(MATERIALIZATIONS, {"path": key.split("/"), "partitions": partitions})
    events = data["assetOrError"]["assetMaterializations"]
    return {e["partition"]: e for e in events}


# --- 1 and 2: the catalog and the lineage -----------------------------------------------------


def test_catalog_holds_exactly_the_yaml_endpoints_grouped_by_source_with_raw_to_table_lineage(
    project,
):
    nodes = {"/".join(n["assetKey"]["path"]): n for n in project.asset_nodes()}
    endpoints = demo_endpoints()
    assert set(nodes) == {k for e in endpoints for k in (e.raw_key, e.table_key)} | (
        demo_webhook_asset_keys()  # push: the events assets of endpoints with `webhook:`
    )
    for e in endpoints:
        raw, table = nodes[e.raw_key], nodes[e.table_key]
        assert raw["groupName"] == table["groupName"] == e.source
        assert "api" in raw["kinds"] and "parquet" in table["kinds"]
        # lineage: the table is built from its raw asset, and the raw asset from nothing,
        # or (a child endpoint) from its parent's table
        assert table["dependencyKeys"] == [{"path": e.raw_key.split("/")}]
        assert raw["dependencyKeys"] == (
            [{"path": [e.source, e.parent]}] if e.parent else [])
        assert raw["isPartitioned"] == table["isPartitioned"] == (e.partitioning != "none")
    # the checks attached to each asset, as the lineage graph and the Checks tab list them
    for key, names in checks_by_asset().items():
        assert {c["name"] for c in asset_checks(project, key.split("/"))} == names, key


def test_partitions_are_the_ones_the_yaml_declares(project):
    for source in load_sources():
        for endpoint in source.endpoints:
            pdef = partitions_def(source, endpoint)
            for key in (f"raw/{source.name}/{endpoint.name}", f"{source.name}/{endpoint.name}"):
                before = _keys(pdef)
                node = project.graphql(PARTITIONS_DEF, {"path": key.split("/")})[
                    "assetNodeOrError"]
                after = _keys(pdef)
                if pdef is None:
                    assert node["partitionDefinition"] is None, key
                    continue
                kind = node["partitionDefinition"]["type"]
                assert kind == _kind(pdef), key
                if isinstance(pdef, dg.DynamicPartitionsDefinition):
                    continue  # its keys are discovered at run time
                # a time window may close between the two reads
                assert node["partitionKeys"] in (before, after), key


def _keys(pdef) -> list[str] | None:
    if pdef is None or isinstance(pdef, dg.DynamicPartitionsDefinition):
        return None
    return pdef.get_partition_keys()


def _kind(pdef) -> str:
    if isinstance(pdef, dg.TimeWindowPartitionsDefinition):
        return "TIME_WINDOW"
    if isinstance(pdef, dg.MultiPartitionsDefinition):
        return "MULTIPARTITIONED"
    if isinstance(pdef, dg.DynamicPartitionsDefinition):
        return "DYNAMIC"
    return "STATIC"


# --- 3: one partition -------------------------------------------------------------------------


def test_one_partition_run_shows_row_count_and_schema_of_that_partition(project):
    key = day(17)  # test_browser.py materializes day(3) of charges
    assets = ("raw/payments/charges", "payments/charges")
    before = {asset: materialized(project, asset) for asset in assets}
    run_id = project.launch([["raw", "payments", "charges"], ["payments", "charges"]], key)
    run = project.wait_for_run(run_id, timeout=RUN_TIMEOUT)
    assert run["status"] == "SUCCESS", f"run {run_id} ended {run['status']}"

    (event,) = materializations(project, "payments/charges", [key]).values()
    meta = metadata(event)
    assert event["runId"] == run_id
    assert meta["dagster/row_count"]["intValue"] == ground_truth_count(
        project, "payments", "charges", key)
    columns = {c["name"]: c["type"] for c in meta["dagster/column_schema"]["schema"]["columns"]}
    fields = ground_truth_fields(project, "payments", "charges", key)
    assert fields <= set(columns), sorted(fields - set(columns))
    assert columns["created"].startswith("timestamp") and "UTC" in columns["created"]

    assert key in materializations(project, "raw/payments/charges", [key])
    for asset in assets:
        count, ranges = before[asset]
        assert materialized(project, asset) == (count + 1, ranges | {(key, key)}), asset


# --- 4: a backfill ----------------------------------------------------------------------------


def test_backfill_of_a_range_materializes_every_partition_in_one_run(project):
    partitions = [day(24), day(23), day(22)]  # test_browser.py backfills refunds
    assets = [["raw", "payments", "customers"], ["payments", "customers"]]
    before = {"/".join(a): materialized(project, "/".join(a)) for a in assets}
    backfill_id = launch_backfill(project, assets, partitions)
    backfill = wait_for_backfill(project, backfill_id, timeout=RUN_TIMEOUT)
    assert backfill["status"] == "COMPLETED_SUCCESS", backfill
    for status in backfill["assetBackfillData"]["assetBackfillStatuses"]:
        assert (status["numPartitionsTargeted"], status["numPartitionsMaterialized"],
                status["numPartitionsFailed"]) == (3, 3, 0), status
    # the time-partitioned assets have a single-run backfill policy: one run for the range
    (run,) = backfill["runs"]
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["dagster/asset_partition_range_start"] == partitions[0]
    assert tags["dagster/asset_partition_range_end"] == partitions[-1]

    events = materializations(project, "payments/customers", partitions)
    assert set(events) == set(partitions)
    for key, event in events.items():
        assert metadata(event)["dagster/row_count"]["intValue"] == ground_truth_count(
            project, "payments", "customers", key), key
    for asset, (count, ranges) in before.items():
        assert materialized(project, asset) == (
            count + 3, ranges | {(partitions[0], partitions[-1])}), asset


# --- 5: schedules and sensors -------------------------------------------------------------------


def test_automation_lists_every_schedule_and_sensor_with_its_default_status(project):
    (repo,) = project.graphql(AUTOMATIONS)["repositoriesOrError"]["nodes"]
    shown = {s["name"]: ("schedule", s["scheduleState"]["status"] == "RUNNING")
             for s in repo["schedules"]}
    shown.update({s["name"]: ("sensor", s["sensorState"]["status"] == "RUNNING")
                  for s in repo["sensors"]})
    assert shown == demo_automations()
    for schedule in repo["schedules"]:
        # each schedule materializes its endpoint's raw asset and table together
        keys = {"/".join(k["path"]) for k in schedule["assetSelection"]["assetKeys"]}
        endpoint = schedule["name"].removesuffix("_schedule").replace("__", "/")
        assert keys == {f"raw/{endpoint}", endpoint}, schedule


# --- 6: check results ---------------------------------------------------------------------------


def test_schema_change_fails_the_schema_drift_check_of_the_next_partition(project):
    # refunds, not customers as in test_browser.py: the check compares a partition with the
    # table's materialization before it, which must have every field
    assets = [["raw", "payments", "refunds"], ["payments", "refunds"]]
    before, after = day(14), day(13)
    run = project.wait_for_run(project.launch(assets, before), timeout=RUN_TIMEOUT)
    assert run["status"] == "SUCCESS", run
    checks = {c["name"]: c for c in asset_checks(project, ["payments", "refunds"])}
    assert checks["schema_drift"]["executionForLatestMaterialization"]["status"] == "SUCCEEDED"

    add_fault(project, {"kind": "schema_change", "source": "payments", "path": "/v1/refunds",
                        "since": after, "change": "remove", "field": "reason"})
    try:
        run = project.wait_for_run(project.launch(assets, after), timeout=RUN_TIMEOUT)
    finally:
        clear_faults(project)
    assert run["status"] == "SUCCESS"  # schema_drift does not block refunds

    checks = {c["name"]: c for c in asset_checks(project, ["payments", "refunds"])}
    drift = checks["schema_drift"]["executionForLatestMaterialization"]
    assert (drift["status"], drift["partition"], drift["runId"]) == ("FAILED", after,
                                                                     run["runId"])
    evaluation = drift["evaluation"]
    assert not evaluation["success"] and evaluation["severity"] == "ERROR"
    assert evaluation["description"].startswith("removed: reason")
    meta = {m["label"]: m for m in evaluation["metadataEntries"]}
    assert meta["compared_with_partition"]["text"] == before
    for name in ("row_count", "contract"):
        assert checks[name]["executionForLatestMaterialization"]["status"] == "SUCCEEDED", name
