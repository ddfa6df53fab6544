"""The exports demo source through Dagster: NDJSON, CSV, one-object and windows-1252 bodies.

Each endpoint's partitions are materialized (raw + table in one step), read back from
Parquet and compared with the demo API's ground truth, value for value; the table rebuilt
from the stored raw pieces is the same; a body not in its charset fails the run naming the
source, endpoint and partition; a body that never ends fails at its budget in bounded memory.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pyarrow as pa
import pytest

from ingestion_assets.demo_api import demo_env
from ingestion_assets_tests.test_factory import materialize, only_endpoint, read, window

DAYS = ("2025-02-10", "2025-02-11")


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _table_rows(table: pa.Table, columns, times: tuple[str, ...]) -> list[dict]:
    rows = table.select(list(columns)).to_pylist()
    for row in rows:
        for t in times:
            row[t] = _iso(row[t])
    return rows


@pytest.mark.parametrize(
    ("endpoint", "truth_name", "key", "times"),
    [("events", "events", "id", ("created_at",)),
     ("sales", "sales", "sale_id", ("sold_at",)),
     ("daily_summary", "summary", "window_start", ("window_start",)),
     ("ledger", "ledger", "entry_id", ("booked_at",))],
)
def test_every_partition_matches_the_api(demo_api, demo_sources, tmp_path, endpoint,
                                         truth_name, key, times):
    source = only_endpoint(demo_sources["exports"], endpoint)
    for day in DAYS:
        result = materialize(source, tmp_path, partition_key=day)
        assert result.success
        truth = demo_api.records("exports", truth_name, *window(day))
        table = read(tmp_path, "exports", endpoint, f"date={day}")
        got = sorted(_table_rows(table, truth[0].keys(), times), key=lambda r: str(r[key]))
        assert got == sorted(truth, key=lambda r: str(r[key])), (endpoint, day)
        raw = {e.asset_key.to_user_string(): e.materialization.metadata
               for e in result.get_asset_materialization_events()}[f"raw/exports/{endpoint}"]
        assert raw["records"].value == len(truth)
    if endpoint == "sales":  # inferred from the CSV text where not declared
        assert table.schema.field("zip").type == pa.string()  # "01234" stays text
        assert table.schema.field("quantity").type == pa.int64()


def test_a_large_export_is_archived_in_pieces_and_rebuilt_from_them(demo_api, tmp_path,
                                                                    monkeypatch):
    import dagster as dg

    from ingestion_assets.io_managers.raw import RawPartition
    from ingestion_assets.specs import load_sources

    monkeypatch.setenv("DEMO_EXPORTS_KEY", demo_env()["DEMO_EXPORTS_KEY"])
    (tmp_path / "bulk.yaml").write_text(BULK.format(url=demo_api.base_url("exports")))
    (source,) = load_sources([tmp_path / "bulk.yaml"])
    instance = dg.DagsterInstance.ephemeral()
    assert materialize(source, tmp_path, instance).success
    truth = demo_api.records("exports", "bulk", rows=12_000, pad=300)  # about 4 MB
    stored = RawPartition.open(tmp_path / "raw" / "exports" / "bulk" / "snapshot")
    assert stored.page_count >= 3 and stored.record_count == len(truth)
    assert stored.manifest["stats"]["requests"] == 1  # one response, several pieces
    first = read(tmp_path, "exports", "bulk")
    assert first.select(["id", "group", "value", "text"]).to_pylist() == truth
    rebuilt = materialize(source, tmp_path, instance, run_config={
        "ops": {"exports__bulk": {"config": {"rebuild_from_raw": True}}}})
    assert rebuilt.success
    again = read(tmp_path, "exports", "bulk")
    assert again.select(["id", "group", "value", "text"]).to_pylist() == truth
    assert set(again.column("_run_id").to_pylist()) == {rebuilt.run_id}


BULK = """
sources:
  - name: exports
    base_url: {url}
    auth: {{type: api_key, name: X-Api-Key, key: {{env: DEMO_EXPORTS_KEY}}}}
    endpoints:
      - name: bulk
        path: /v1/bulk.ndjson
        format: ndjson
        params: {{rows: 12000, pad: 300}}
        primary_key: id
"""


def test_a_body_not_in_its_charset_fails_naming_source_endpoint_and_partition(
        demo_api, demo_sources, tmp_path):
    source = only_endpoint(demo_sources["exports"], "ledger", params={"label": "utf-8"})
    result = materialize(source, tmp_path, partition_key="2025-02-10", raise_on_error=False)
    assert not result.success
    (failure,) = [e.event_specific_data.error for e in result.all_events if e.is_step_failure]
    text = failure.message + "".join(c.message for c in [failure.cause] if c)
    assert "[exports/ledger]" in text and "partition=2025-02-10" in text
    assert "not valid utf-8" in text and "not retried" in text
    assert not (tmp_path / "exports" / "ledger").exists() or not any(
        (tmp_path / "exports" / "ledger").rglob("*.parquet"))


def test_a_never_ending_export_fails_at_its_budget_in_bounded_memory(demo_api, tmp_path):
    sources = tmp_path / "sources.yaml"
    sources.write_text(f"""
sources:
  - name: exports
    base_url: {demo_api.base_url("exports")}
    auth: {{type: api_key, name: X-Api-Key, key: {{env: DEMO_EXPORTS_KEY}}}}
    retry: {{op_retries: 0}}
    limits: {{max_stream_mb: 64}}
    endpoints:
      - name: endless
        path: /v1/endless.ndjson
        format: ndjson
        primary_key: id
""")
    done = subprocess.run(
        [sys.executable, "-m", "ingestion_assets_tests.budget_run", str(sources),
         str(tmp_path / "data")],
        capture_output=True, text=True, timeout=300, check=False,
        env={**__import__("os").environ, **demo_env()},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\nendless ndjson, max_stream_mb 64: {report}")
    assert not report["success"]
    (message,) = report["failures"]
    assert "larger than 64 MiB" in message and "limits.max_stream_mb" in message
    assert report["peak_rss_mb"] < 600  # the budget test_budgets.py allows a hostile run
