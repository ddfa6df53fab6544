"""Raw pages over real HTTP (demo API) -> raw IO manager -> normalized table -> Parquet."""

from datetime import datetime, timezone

import dagster as dg
import orjson
import pyarrow as pa
import pyarrow.dataset as ds

from ingestion_assets.http import ApiClient, RetryPolicy, auth, paginators
from ingestion_assets.io_managers import ParquetIOManager, RawPartition, RawResponseIOManager
from ingestion_assets.normalize import Normalizer, RecordBatchStream
from ingestion_assets_tests.io_managers._helpers import (
    current_folder,
    materialize,
    output_metadata,
)

DAILY = dg.DailyPartitionsDefinition(start_date="2025-01-01", end_date="2025-03-01")
FAST_RETRY = RetryPolicy(max_attempts=2, backoff_base=0.01, backoff_max=0.02, jitter=False)


def _window(day: str) -> tuple[int, int]:
    start = int(datetime.fromisoformat(day).replace(tzinfo=timezone.utc).timestamp())
    return start, start + 86_400


def _assets(api):
    @dg.asset(
        key=["raw", "payments", "charges"],
        partitions_def=DAILY,
        metadata={"ingestion/partition_dimension": "date"},
        io_manager_key="raw_io_manager",
    )
    def raw_charges(context: dg.AssetExecutionContext):
        start, end = _window(context.partition_key)
        client = ApiClient(
            api.base_url("payments"),
            auth=auth.BearerToken(api.credentials("payments")["api_key"]),
            retry=FAST_RETRY,
            source="payments",
        )
        return client.fetch_pages(
            "/v1/charges",
            params={"limit": 100, "created[gte]": start, "created[lt]": end},
            paginator=paginators.LastRecordCursor(),
            records_path="data",
            endpoint="charges",
        )

    @dg.asset(
        key=["payments", "charges"],
        partitions_def=DAILY,
        metadata={"ingestion/partition_dimension": "date"},
        ins={"raw": dg.AssetIn(key=["raw", "payments", "charges"])},
    )
    def charges(raw: RawPartition):
        # Built from the stored raw pages, never from the API: re-runnable without calling it.
        pages = (orjson.loads(body)["data"] for _, body in raw.iter_pages())
        normalizer = Normalizer(
            schema={"id": "string", "amount": "int64"}, timestamp_fields=["created"]
        )
        return RecordBatchStream.from_pages(
            pages, normalizer, source="payments", endpoint="charges"
        )

    return raw_charges, charges


def test_one_day_from_the_api_to_parquet(demo_api, tmp_path):
    raw_charges, charges = _assets(demo_api)
    resources = {
        "raw_io_manager": RawResponseIOManager(base_path=str(tmp_path / "raw")),
        "io_manager": ParquetIOManager(base_path=str(tmp_path / "tables")),
    }
    result = materialize([raw_charges, charges], resources, "2025-02-01")
    assert result.success

    start, end = _window("2025-02-01")
    truth = demo_api.records("payments", "charges", start=start, end=end)
    raw_folder = tmp_path / "raw" / "raw" / "payments" / "charges" / "date=2025-02-01"
    manifest_text = (current_folder(raw_folder, "manifest.json") / "manifest.json").read_text()
    manifest = orjson.loads(manifest_text)
    assert manifest["totals"]["records"] == len(truth)
    assert manifest["stats"]["pages"] == manifest["totals"]["pages"] > 1
    # The secret never reaches the archive (the client redacts URLs, params and headers).
    assert demo_api.credentials("payments")["api_key"] not in manifest_text

    table_folder = tmp_path / "tables" / "payments" / "charges" / "date=2025-02-01"
    table = ds.dataset(
        str(current_folder(table_folder, "_SUCCESS")), format="parquet"
    ).to_table()
    assert sorted(table.column("id").to_pylist()) == sorted(r["id"] for r in truth)
    assert table.schema.field("created").type == pa.timestamp("us", tz="UTC")
    created = table.column("created").to_pylist()
    window = (
        datetime.fromtimestamp(start, timezone.utc),
        datetime.fromtimestamp(end, timezone.utc),
    )
    assert all(window[0] <= t < window[1] for t in created)
    assert output_metadata(result, "payments/charges")["dagster/row_count"].value == len(truth)
    assert output_metadata(result, "raw/payments/charges")["records"].value == len(truth)


def test_api_failing_mid_partition_keeps_the_stored_pages(demo_api, tmp_path):
    raw_charges, _ = _assets(demo_api)
    resources = {"raw_io_manager": RawResponseIOManager(base_path=str(tmp_path))}
    assert materialize([raw_charges], resources, "2025-02-01").success
    folder = tmp_path / "raw" / "payments" / "charges" / "date=2025-02-01"
    before = (current_folder(folder, "manifest.json") / "manifest.json").read_bytes()

    # Page 3 onwards answers 503 until the retries are spent: the run fails.
    demo_api.add_fault(kind="server_error", source="payments", count=-1, after=2)
    failed = materialize([raw_charges], resources, "2025-02-01", raise_on_error=False)
    assert not failed.success
    assert (current_folder(folder, "manifest.json") / "manifest.json").read_bytes() == before
    assert RawPartition.open(folder).record_count == orjson.loads(before)["totals"]["records"]
