"""The checks as the UI shows them: ``dagster dev`` + demo API, read over GraphQL.

The UI's asset page (Checks tab) reads exactly these fields: each check's executions per
partition, with status, severity, description and metadata entries.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import requests
import yaml

from ingestion_assets.demo_api import CONTROL_HEADERS
from ingestion_assets.specs import DEFAULT_SOURCES_DIR
from ingestion_assets_tests.e2e.harness import METADATA_ENTRIES, running_project

pytestmark = pytest.mark.slow

CHECK_EXECUTIONS = """
query($path: [String!]!, $check: String!, $partition: String) {
  assetCheckExecutions(assetKey: {path: $path}, checkName: $check, partition: $partition,
                       limit: 5) {
    runId
    status
    partition
    evaluation {
      severity
      success
      description
      targetMaterialization { runId }
      metadataEntries { ...MetadataEntries }
    }
  }
}
""" + METADATA_ENTRIES

CHECKS_OF_ASSET = """
query($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode {
      assetChecksOrError { ... on AssetChecks { checks { name blocking description } } }
      internalFreshnessPolicy { ... on TimeWindowFreshnessPolicy { failWindowSeconds warnWindowSeconds } }
    }
  }
}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    # Only the payments source: the other demo sources' sensors would queue runs of their
    # own that the runs of this test wait behind.
    tmp = tmp_path_factory.mktemp("project")
    sources = tmp / "sources"
    sources.mkdir()
    # Refunds keep records outside their window (counted by the `window` check) for
    # test_window_and_uniqueness_counts_in_the_checks_tab.
    config = yaml.safe_load((DEFAULT_SOURCES_DIR / "payments" / "defs.yaml").read_text())
    [refunds] = [e for e in config["attributes"]["endpoints"] if e["name"] == "refunds"]
    refunds["window"]["out_of_window"] = "keep"
    (sources / "payments.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    # Steps in the run's own process, as in ui/conftest.py: the subject is what the checks tab
    # shows, and a process start per step cost more than the small partitions fetched.
    env = {"INGESTION_SOURCES": str(sources), "INGESTION_EXECUTOR": "in_process"}
    with running_project(tmp, env) as running:
        yield running


REFUNDS = ["payments", "refunds"]


def _execution(project, check: str, partition: str, path=("payments", "charges")) -> dict:
    data = project.graphql(CHECK_EXECUTIONS, {"path": list(path), "check": check,
                                              "partition": partition})
    executions = data["assetCheckExecutions"]
    assert executions, f"no execution of {check} for {partition}"
    return executions[0]


def _entries(execution: dict) -> dict[str, dict]:
    return {m["label"]: m for m in execution["evaluation"]["metadataEntries"]}


def test_asset_page_lists_the_checks_and_the_freshness_policy(project):
    node = project.graphql(CHECKS_OF_ASSET, {"path": ["payments", "charges"]})["assetNodeOrError"]
    checks = {c["name"]: c for c in node["assetChecksOrError"]["checks"]}
    assert set(checks) == {"row_count", "schema_drift", "contract", "window", "uniqueness"}
    assert checks["row_count"]["blocking"] and checks["contract"]["blocking"]
    assert checks["window"]["blocking"] and not checks["uniqueness"]["blocking"]
    policy = node["internalFreshnessPolicy"]
    assert policy["failWindowSeconds"] == 30 * 3600 and policy["warnWindowSeconds"] == 26 * 3600


@pytest.mark.timeout(900)  # two runs through the daemon's queue on a busy machine
def test_check_results_with_their_metadata_per_partition(project):
    today = dt.datetime.now(dt.timezone.utc).date()
    before, day = (today - dt.timedelta(days=4)).isoformat(), (today - dt.timedelta(days=3)).isoformat()
    assets = [["raw", "payments", "charges"], ["payments", "charges"]]
    first = project.launch(assets, before)
    assert project.wait_for_run(first, timeout=600)["status"] == "SUCCESS"

    # The API adds a field from `day` on: the drift check warns, naming it.
    requests.post(f"{project.api_url}/_control/faults", timeout=10, headers=CONTROL_HEADERS, json={
        "kind": "schema_change", "source": "payments", "change": "add",
        "field": "risk_score", "value": 7, "since": day,
    }).raise_for_status()
    run_id = project.launch(assets, day)
    assert project.wait_for_run(run_id, timeout=600)["status"] == "SUCCESS"  # a warning does not block

    rows = _execution(project, "row_count", day)
    assert rows["runId"] == run_id and rows["status"] == "SUCCEEDED"
    assert rows["evaluation"]["targetMaterialization"]["runId"] == run_id
    meta = _entries(rows)
    assert meta["rows"]["intValue"] == meta["raw_records"]["intValue"] > 0
    assert meta["dead_letters"]["intValue"] == 0

    drift = _execution(project, "schema_drift", day)
    assert drift["status"] == "FAILED" and drift["evaluation"]["severity"] == "WARN"
    assert "risk_score" in drift["evaluation"]["description"]
    table = _entries(drift)["differences"]
    assert table["__typename"] == "TableMetadataEntry"
    records = [json.loads(r) for r in table["table"]["records"]]
    assert {"column": "risk_score", "change": "added", "before": "-", "now": "int64",
            "against": "previous materialization", "severity": "warn"} in records

    contract = _execution(project, "contract", day)
    assert contract["status"] == "SUCCEEDED"
    assert _entries(contract)["dead_letters"]["intValue"] == 0

    # The window guard's count and the cross-partition key comparison, per partition.
    window = _execution(project, "window", day)
    assert window["status"] == "SUCCEEDED", window["evaluation"]["description"]
    entries = _entries(window)
    assert entries["out_of_window"]["intValue"] == 0
    assert entries["checked"]["intValue"] == meta["rows"]["intValue"]
    assert entries["field"]["text"] == "created"
    unique = _execution(project, "uniqueness", day)
    assert unique["status"] == "SUCCEEDED", unique["evaluation"]["description"]
    entries = _entries(unique)
    assert entries["repeated_keys"]["intValue"] == 0
    assert entries["keys"]["intValue"] == meta["rows"]["intValue"]
    assert entries["partitions_compared"]["intValue"] >= 1  # the day before, at least


@pytest.mark.timeout(900)  # two runs through the daemon's queue on a busy machine
def test_window_and_uniqueness_counts_in_the_checks_tab(project):
    # The API stops honouring the end of the window (`created[lt]`): each refunds partition
    # gets every refund from its day up to now. This project's refunds keep such records
    # (`out_of_window: keep`), so the counts show in the Checks tab.
    requests.post(f"{project.api_url}/_control/faults", timeout=10, headers=CONTROL_HEADERS, json={
        "kind": "ignore_params", "source": "payments", "path": "/v1/refunds",
        "params": ["created[lt]"],
    }).raise_for_status()
    today = dt.datetime.now(dt.timezone.utc).date()
    days = [(today - dt.timedelta(days=n)).isoformat() for n in (6, 5)]
    assets = [["raw", "payments", "refunds"], ["payments", "refunds"]]
    try:
        for day in days:
            run_id = project.launch(assets, day)
            # The window check is blocking and fails: the run reports it.
            assert project.wait_for_run(run_id, timeout=600)["status"] in ("SUCCESS", "FAILURE")
    finally:
        requests.delete(
            f"{project.api_url}/_control/faults", headers=CONTROL_HEADERS, timeout=10
        ).raise_for_status()

    window = _execution(project, "window", days[1], REFUNDS)
    assert window["status"] == "FAILED" and window["evaluation"]["severity"] == "ERROR"
    entries = _entries(window)
    outside, checked = entries["out_of_window"]["intValue"], entries["checked"]["intValue"]
    assert 0 < outside < checked
    assert f"{outside} of {checked} record(s)" in window["evaluation"]["description"]
    assert entries["policy"]["text"] == "keep"

    unique = _execution(project, "uniqueness", days[1], REFUNDS)
    assert unique["status"] == "FAILED" and unique["evaluation"]["severity"] == "WARN"
    assert days[0] in unique["evaluation"]["description"]
    table = _entries(unique)["partitions"]
    records = [json.loads(r) for r in table["table"]["records"]]
    # The day before, and any later day the schedules materialized meanwhile.
    shared = {r["partition"]: r["shared_keys"] for r in records}
    assert 0 < shared[days[0]] <= checked
    assert _entries(unique)["repeated_keys"]["intValue"] == sum(shared.values())

CHECK_PARTITION_STATUSES = """
query($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode {
      assetChecksOrError { ... on AssetChecks { checks {
        name
        partitionStatuses {
          ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } }
        }
      } } }
    }
  }
}
"""


def _check_status_of_partition(project, path: list[str], partition: str) -> dict[str, str]:
    """Each check's status for one partition, as the Checks tab colours it."""
    data = project.graphql(CHECK_PARTITION_STATUSES, {"path": path})
    statuses = {}
    for check in data["assetNodeOrError"]["assetChecksOrError"]["checks"]:
        for r in (check["partitionStatuses"] or {}).get("ranges", []):
            if r["startKey"] <= partition <= r["endKey"]:
                statuses[check["name"]] = r["status"]
    return statuses


def test_a_check_left_unrun_by_a_failed_step_is_not_failed_once_a_later_run_passes(project):
    # Customers: no other test of this module materializes them, so no earlier partition
    # for the drift and uniqueness checks to compare with.
    day = (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=9)).isoformat()
    table = ["payments", "customers"]
    assets = [["raw", *table], table]
    # The API refuses the endpoint for good (404: not retried): the endpoint's step fails,
    # so its checks never run for that partition.
    requests.post(f"{project.api_url}/_control/faults", timeout=10, headers=CONTROL_HEADERS, json={
        "kind": "server_error", "source": "payments", "path": "/v1/customers", "status": 404,
        "count": -1,
    }).raise_for_status()
    try:
        failed = project.launch(assets, day)
        assert project.wait_for_run(failed, timeout=600)["status"] == "FAILURE"
    finally:
        requests.delete(
            f"{project.api_url}/_control/faults", headers=CONTROL_HEADERS, timeout=10
        ).raise_for_status()
    after_failure = _check_status_of_partition(project, table, day)
    assert "SUCCEEDED" not in after_failure.values(), after_failure

    passed = project.launch(assets, day)
    assert project.wait_for_run(passed, timeout=600)["status"] == "SUCCESS"
    statuses = _check_status_of_partition(project, table, day)
    assert {"row_count", "schema_drift", "contract"} <= set(statuses), statuses
    assert set(statuses.values()) == {"SUCCEEDED"}, statuses
    for name in statuses:
        data = project.graphql(CHECK_EXECUTIONS, {"path": table, "check": name, "partition": day})
        latest = data["assetCheckExecutions"][0]
        assert latest["runId"] == passed and latest["status"] == "SUCCEEDED", latest
