"""The README's path, end to end: demo API + ``dagster dev``, then one partition from the UI.

The UI talks to the webserver's GraphQL API; this test drives the same API: it lists the
assets as the catalog shows them, launches a materialization of one partition of
``raw/payments/charges`` and ``payments/charges``, waits for the run, and reads the row
count the asset page shows and the Parquet the run wrote.
"""

from __future__ import annotations

import datetime as dt

import pyarrow.dataset as ds
import pytest

from ingestion_assets.io_managers.parquet import current_parquet_files
from ingestion_assets_tests.e2e.harness import MATERIALIZATIONS, running_project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    with running_project(tmp_path_factory.mktemp("project")) as running:
        yield running


def test_ui_shows_every_demo_endpoint_grouped_by_source(project):
    nodes = {tuple(n["assetKey"]["path"]): n for n in project.asset_nodes()}
    for source, endpoint in [("payments", "charges"), ("commerce", "orders"),
                             ("crm", "contacts"), ("devhub", "issues")]:
        raw, table = nodes[("raw", source, endpoint)], nodes[(source, endpoint)]
        assert raw["groupName"] == table["groupName"] == source
        assert "api" in raw["kinds"] and "parquet" in table["kinds"]
        # lineage: the table is built from the raw asset
        assert {"path": ["raw", source, endpoint]} in table["dependencyKeys"]
    charges = nodes[("payments", "charges")]
    assert charges["isPartitioned"]
    assert project.partition_keys(["payments", "charges"])[0] == "2025-01-01"
    assert {"team": "payments"} in charges["owners"]


def test_materialize_one_partition_like_the_ui(project):
    day = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)).date().isoformat()
    run_id = project.launch([["raw", "payments", "charges"], ["payments", "charges"]], day)
    run = project.wait_for_run(run_id)
    assert run["status"] == "SUCCESS", f"run {run_id} ended {run['status']}"

    data = project.graphql(MATERIALIZATIONS, {"path": ["payments", "charges"], "partitions": [day]})
    (event,) = data["assetOrError"]["assetMaterializations"]
    meta = {m["label"]: m for m in event["metadataEntries"]}
    rows = meta["dagster/row_count"]["intValue"]
    assert rows > 0
    columns = {c["name"] for c in meta["dagster/column_schema"]["schema"]["columns"]}
    assert {"id", "amount", "created", "_partition", "_run_id"} <= columns

    table = ds.dataset(
        current_parquet_files(project.data_dir / "payments" / "charges" / f"date={day}")
    ).to_table()
    assert table.num_rows == rows
    assert len(set(table.column("id").to_pylist())) == rows  # no duplicates
    assert set(table.column("_run_id").to_pylist()) == {run_id}
