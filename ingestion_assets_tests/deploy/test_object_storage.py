"""The IO managers on an S3-compatible server on loopback (moto's server mode).

Credentials and the endpoint reach s3fs the way they reach it in production: through the
standard AWS variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL_S3...),
never through the project's config. The tests show demo partitions written under an
``s3://`` base URL by the project's own definitions, read back, and replaced atomically:
while a new version is being written a reader still gets the previous one whole, a failed
write leaves it untouched and leaves no objects of its version behind.
"""

import datetime as dt

import boto3
import dagster as dg
import orjson
import pyarrow as pa
import pytest
import s3fs
from upath import UPath

from ingestion_assets.definitions import build_definitions
from ingestion_assets.factory import build_assets
from ingestion_assets.io_managers import ParquetIOManager, RawPartition, RawResponseIOManager
from ingestion_assets.io_managers.parquet import current_dataset, read_dead_letters
from ingestion_assets.io_managers.storage import current_version
from ingestion_assets.specs import load_sources
from ingestion_assets_tests.deploy.services import MOTO_SECRET_KEY
from ingestion_assets_tests.io_managers._helpers import FakePageStream

UTC = dt.timezone.utc


pytestmark = pytest.mark.slow  # object storage: a moto S3 server


def _keys(bucket: str) -> list[str]:
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def test_demo_partitions_land_in_s3_and_read_back(bucket, s3_app, demo_api, demo_credentials):
    (payments,) = [s for s in load_sources() if s.name == "payments"]
    payments = payments.model_copy(
        update={"endpoints": [e for e in payments.endpoints if e.name in ("charges", "refunds")]}
    )
    base = f"s3://{bucket}/warehouse"
    defs = build_definitions([payments], base)
    days = ["2025-02-10", "2025-02-11"]
    for day in days:
        result = dg.materialize(
            build_assets([payments]), resources=defs.resources, partition_key=day,
            instance=dg.DagsterInstance.ephemeral(),
        )
        assert result.success
        uris = {
            e.asset_key.to_user_string(): e.materialization.metadata["dagster/uri"].value
            for e in result.get_asset_materialization_events()
        }
        assert uris["payments/charges"] == f"{base}/payments/charges/date={day}"

    keys = _keys(bucket)
    for endpoint in ("charges", "refunds"):
        for day in days:
            assert f"warehouse/raw/payments/{endpoint}/date={day}/_CURRENT" in keys
            assert f"warehouse/payments/{endpoint}/date={day}/_CURRENT" in keys
            start = dt.datetime.fromisoformat(day).replace(tzinfo=UTC)
            truth = demo_api.records("payments", endpoint, start, start + dt.timedelta(days=1))
            table = current_dataset(f"{base}/payments/{endpoint}/date={day}").to_table()
            assert sorted(table.column("id").to_pylist()) == sorted(str(r["id"]) for r in truth)
            raw = RawPartition.open(f"{base}/raw/payments/{endpoint}/date={day}", day)
            assert raw.record_count == len(truth)
    # A reader in a new process (no cached listing) asks for the pointer, the manifest and
    # each file once, by GET: the pointer gives the files' sizes, so no HEAD, no listing.
    s3fs.S3FileSystem.clear_instance_cache()
    folder = f"{base}/payments/charges/date={days[0]}"
    with s3_app.recording() as seen:
        dataset = current_dataset(folder)
        table = dataset.to_table()
        dead = read_dead_letters(folder)
    version = current_version(folder, "_SUCCESS")
    listed = {f"/{bucket}/{UPath(f).path.split('/', 1)[1]}" for f in dataset.files}
    assert table.num_rows == version.rows and dead.num_rows == 0
    assert {method for method, _ in seen} == {"GET"}, seen
    prefix = f"/{bucket}/warehouse/payments/charges/date={days[0]}"
    assert sorted(path for _, path in seen) == sorted(
        [f"{prefix}/_CURRENT"] * 2 + [f"{prefix}/v={version.id}/_SUCCESS", *listed]
    )

    # One version per partition, nothing else: a pointer and the files it lists.
    assert len([k for k in keys if k.endswith("/_CURRENT")]) == 8
    assert not [k for k in keys if k.endswith(".tmp")]

    # Secrets stay in the environment: neither the AWS secret nor the API key is stored.
    s3 = boto3.client("s3")
    for key in keys:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert MOTO_SECRET_KEY.encode() not in body, key
        assert demo_credentials["DEMO_PAYMENTS_KEY"].encode() not in body, key


# -- atomic replacement, with the IO managers on their own ------------------------------------

PARTS = dg.StaticPartitionsDefinition(["a", "b"])


class _Batches:
    """A table stream whose batches are produced lazily; ``on_batch`` runs before each one."""

    def __init__(self, tag: str, n: int, on_batch=None, fail_after: int | None = None):
        self.schema = pa.schema([("id", pa.int64()), ("tag", pa.string())])
        self.tag, self.n, self.on_batch, self.fail_after = tag, n, on_batch, fail_after

    def __iter__(self):
        for i in range(self.n):
            if self.fail_after is not None and i == self.fail_after:
                raise ConnectionError(f"stream broke after batch {i}")
            if self.on_batch is not None:
                self.on_batch(i)
            yield pa.RecordBatch.from_pylist(
                [{"id": i * 10 + j, "tag": self.tag} for j in range(10)], schema=self.schema
            )


def _assets(plan: dict):
    """``raw/s/items`` and ``s/items``; ``plan`` says what this run's streams do."""

    @dg.asset(key=["raw", "s", "items"], partitions_def=PARTS, io_manager_key="raw_io")
    def raw_items(context: dg.AssetExecutionContext):
        return FakePageStream(pages=3, per_page=4, tag=plan["tag"],
                              on_page=plan.get("on_page"), fail_after=plan.get("raw_fail"))

    @dg.asset(key=["s", "items"], partitions_def=PARTS, io_manager_key="table_io")
    def items(context: dg.AssetExecutionContext):
        return _Batches(plan["tag"], 3, plan.get("on_batch"), plan.get("table_fail"))

    return [raw_items, items]


def _run(base: str, plan: dict, key: str, selection=None) -> bool:
    return dg.materialize(
        _assets(plan),
        resources={"raw_io": RawResponseIOManager(base_path=base),
                   "table_io": ParquetIOManager(base_path=base)},
        partition_key=key, selection=selection, raise_on_error=False,
        instance=dg.DagsterInstance.ephemeral(),
    ).success


def test_partitions_are_replaced_atomically_on_s3(bucket):
    base = f"s3://{bucket}/lake"
    raw_a, raw_b = (UPath(f"{base}/raw/s/items/partition={k}") for k in "ab")
    table_a, table_b = (UPath(f"{base}/s/items/partition={k}") for k in "ab")

    def raw_tags(folder):
        part = RawPartition.open(folder)
        return {r["tag"] for _, body in part.iter_pages() for r in orjson.loads(body)["data"]}

    def table_tags(folder):
        return set(current_dataset(folder).to_table().column("tag").to_pylist())

    assert _run(base, {"tag": "v1"}, "a") and _run(base, {"tag": "v1"}, "b")
    assert raw_tags(raw_a) == raw_tags(raw_b) == {"v1"}
    assert table_tags(table_a) == {"v1"} and len(current_dataset(table_a).to_table()) == 30

    # While v2 of partition a is being written, readers still get v1, complete.
    seen: list[tuple[set, set]] = []

    def look(i: int) -> None:
        if i == 2:  # some of v2 is already in its version's objects
            seen.append((raw_tags(raw_a), table_tags(table_a)))

    assert _run(base, {"tag": "v2", "on_page": look, "on_batch": look}, "a")
    # Mid raw write: both still v1. Mid table write: raw v2 is committed, table still v1.
    assert seen == [({"v1"}, {"v1"}), ({"v2"}, {"v1"})]
    assert raw_tags(raw_a) == {"v2"} and table_tags(table_a) == {"v2"}
    assert len(current_dataset(table_a).to_table()) == 30  # replaced, not appended
    assert raw_tags(raw_b) == {"v1"} and table_tags(table_b) == {"v1"}  # untouched

    # A write that fails half-way leaves the previous version as it was.
    raw_key, table_key = dg.AssetKey(["raw", "s", "items"]), dg.AssetKey(["s", "items"])
    assert not _run(base, {"tag": "v3", "raw_fail": 2}, "a", selection=[raw_key])
    assert not _run(base, {"tag": "v3", "table_fail": 2}, "a", selection=[table_key])
    assert raw_tags(raw_a) == {"v2"} and table_tags(table_a) == {"v2"}
    # The failed writes removed their own objects: v1 (within the grace period) and v2 stay.
    versions = {k.split("/v=")[1].split("/")[0] for k in _keys(bucket)
                if "/items/partition=a/v=" in k}
    assert len(versions) == 4  # raw v1, v2 and table v1, v2
