"""The Parquet IO manager, through Dagster: layout, metadata, streaming, atomicity, reading."""

import os
from datetime import datetime, timezone

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from upath import UPath

from ingestion_assets.io_managers import ParquetIOManager
from ingestion_assets.normalize import Normalizer, RecordBatchStream
from ingestion_assets_tests.io_managers._helpers import (
    current_folder,
    current_names,
    materialize,
    output_metadata,
)

DAILY = dg.DailyPartitionsDefinition(start_date="2025-01-01", end_date="2025-02-01")
TABLE_META = {
    "ingestion/partition_dimension": "date",
    "ingestion/source": "payments",
    "ingestion/endpoint": "charges",
}


def _pages(day: str, pages: int = 3, per_page: int = 5, fail_after: int | None = None):
    """Pages of JSON records for one day, lazily; optionally failing half-way."""
    for i in range(pages):
        if fail_after is not None and i == fail_after:
            raise ConnectionError(f"lost the API on page {i}")
        yield [
            {
                "id": f"ch_{day}_{i}_{j}",
                "amount": i * 100 + j,
                "created": f"{day}T10:00:00-05:00",
                "billing": {"country": "US", "zip": "10001"},
                "tags": ["a", "b"][: j % 3],
            }
            for j in range(per_page)
        ]


def _table_asset(**stream_kw):
    @dg.asset(key=["payments", "charges"], partitions_def=DAILY, metadata=TABLE_META)
    def charges(context: dg.AssetExecutionContext):
        normalizer = Normalizer(schema={"id": "string"}, timestamp_fields=["created"])
        return RecordBatchStream.from_pages(_pages(context.partition_key, **stream_kw), normalizer)

    return charges


def _folder(tmp_path, day):
    return tmp_path / "payments" / "charges" / f"date={day}"


def _read(folder) -> pa.Table:
    """The current version of a partition, as a plain Parquet reader of its folder sees it."""
    return ds.dataset(str(current_folder(folder, "_SUCCESS")), format="parquet").to_table()


def test_daily_partition_written_with_provenance_and_metadata(tmp_path):
    manager = ParquetIOManager(base_path=str(tmp_path))
    before = datetime.now(timezone.utc)
    result = materialize([_table_asset()], {"io_manager": manager}, "2025-01-05")
    assert result.success
    folder = _folder(tmp_path, "2025-01-05")
    assert current_names(folder, "_SUCCESS") == ["_SUCCESS", "part-00000.parquet"]
    assert os.listdir(folder.parent) == ["date=2025-01-05"]

    table = _read(folder)
    assert table.num_rows == 15
    assert table.schema.field("created").type == pa.timestamp("us", tz="UTC")
    assert table.column("created")[0].as_py() == datetime(2025, 1, 5, 15, tzinfo=timezone.utc)
    assert pa.types.is_struct(table.schema.field("billing").type)
    row = table.slice(0, 1).to_pylist()[0]
    assert row["_source"] == "payments"
    assert row["_endpoint"] == "charges"
    assert row["_partition"] == "2025-01-05"
    assert row["_run_id"] == result.run_id
    assert row["_ingested_at"] >= before

    metadata = output_metadata(result, "payments/charges")
    assert metadata["dagster/row_count"].value == 15
    columns = {c.name: c.type for c in metadata["dagster/column_schema"].value.columns}
    assert columns["id"] == "string"
    assert columns["created"] == "timestamp[us, tz=UTC]"
    assert {"_ingested_at", "_source", "_endpoint", "_partition", "_run_id"} <= set(columns)
    assert metadata["dagster/uri"].value == str(folder)
    assert metadata["uri"].value == str(folder)
    preview = metadata["preview"].value
    assert preview.startswith("| id | created | amount |") and "ch_2025-01-05_0_0" in preview


def test_writer_is_fed_batch_by_batch_one_row_group_each(tmp_path):
    """Twelve batches -> twelve row groups: no table of the whole partition is built."""
    consumed = []

    def batches():
        for i in range(12):
            consumed.append(i)
            yield pa.record_batch({"n": list(range(i * 50, i * 50 + 50))})

    @dg.asset(partitions_def=DAILY)
    def numbers():
        return RecordBatchStream(batches(), pa.schema([("n", pa.int64())]))

    manager = ParquetIOManager(base_path=str(tmp_path), row_group_size=50)
    result = materialize([numbers], {"io_manager": manager}, "2025-01-02")
    assert result.success
    folder = current_folder(tmp_path / "numbers" / "partition=2025-01-02", "_SUCCESS")
    file = folder.path + "/part-00000.parquet"
    metadata = pq.ParquetFile(file).metadata
    assert metadata.num_row_groups == 12
    assert metadata.num_rows == 600
    assert output_metadata(result, "numbers")["row_groups"].value == 12

    # Small batches are gathered into row groups of the configured size.
    manager = ParquetIOManager(base_path=str(tmp_path), row_group_size=200)
    assert materialize([numbers], {"io_manager": manager}, "2025-01-02").success
    folder = current_folder(tmp_path / "numbers" / "partition=2025-01-02", "_SUCCESS")
    assert pq.ParquetFile(folder.path + "/part-00000.parquet").metadata.num_row_groups == 3
    assert pq.ParquetFile(file).metadata.num_row_groups == 12  # the previous version, intact


def test_failed_stream_leaves_previous_partition_and_rerun_replaces_it(tmp_path):
    manager = ParquetIOManager(base_path=str(tmp_path), row_group_size=5)
    resources = {"io_manager": manager}
    instance = dg.DagsterInstance.ephemeral()
    assert materialize([_table_asset()], resources, "2025-01-04", instance=instance).success
    assert materialize([_table_asset()], resources, "2025-01-05", instance=instance).success
    before = _read(_folder(tmp_path, "2025-01-05"))

    # Fails after two pages have been written (as row groups) into the new version.
    broken = _table_asset(pages=4, fail_after=2)
    failed = materialize([broken], resources, "2025-01-05", instance=instance, raise_on_error=False)
    assert not failed.success
    assert _read(_folder(tmp_path, "2025-01-05")).equals(before)
    assert sorted(os.listdir(tmp_path / "payments" / "charges")) == [
        "date=2025-01-04",
        "date=2025-01-05",
    ]

    # A re-run replaces exactly that partition: no doubled rows, the other day untouched.
    rerun = materialize([_table_asset(pages=4)], resources, "2025-01-05", instance=instance)
    assert rerun.success
    after = _read(_folder(tmp_path, "2025-01-05"))
    assert after.num_rows == 20
    assert len(set(after.column("id").to_pylist())) == 20
    assert set(after.column("_run_id").to_pylist()) == {rerun.run_id}
    assert _read(_folder(tmp_path, "2025-01-04")).num_rows == 15


def test_schema_widening_starts_a_new_part_file_and_reads_back_unified(tmp_path):
    pages = [
        [{"id": 1, "score": 1, "note": None}],
        [{"id": 2, "score": 2.5, "note": "x", "extra": True}],
    ]

    @dg.asset
    def scores():
        return RecordBatchStream.from_pages(iter(pages))

    got = {}

    @dg.asset
    def downstream(scores: pa.Table):
        got["table"] = scores

    manager = ParquetIOManager(base_path=str(tmp_path))
    assert materialize([scores, downstream], {"io_manager": manager}).success
    folder = tmp_path / "scores" / "snapshot"
    assert [p for p in current_names(folder, "_SUCCESS") if p.endswith(".parquet")] == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    table = got["table"]
    assert table.schema.field("score").type == pa.float64()
    assert table.column("score").to_pylist() == [1.0, 2.5]
    assert table.column("note").to_pylist() == [None, "x"]
    assert table.column("extra").to_pylist() == [None, True]


def test_reading_one_partition_a_range_and_all(tmp_path):
    resources = {"io_manager": ParquetIOManager(base_path=str(tmp_path))}
    instance = dg.DagsterInstance.ephemeral()
    charges = _table_asset()
    for day in ("2025-01-03", "2025-01-04", "2025-01-05"):
        assert materialize([charges], resources, day, instance=instance).success
    got = {}

    @dg.asset(partitions_def=DAILY)
    def one_day(charges: pd.DataFrame):
        got["one"] = charges

    @dg.asset(
        partitions_def=DAILY,
        ins={
            "charges": dg.AssetIn(
                key=["payments", "charges"],
                partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-2),
            )
        },
    )
    def three_days(charges: ds.Dataset):
        got["range"] = charges

    @dg.asset(ins={"charges": dg.AssetIn(key=["payments", "charges"])})
    def all_days(charges):
        got["all"] = charges

    @dg.asset(
        partitions_def=dg.WeeklyPartitionsDefinition(start_date="2024-12-29"),
        ins={
            "charges": dg.AssetIn(
                key=["payments", "charges"], metadata={"allow_missing_partitions": True}
            )
        },
    )
    def week(charges: pa.Table):
        got["week"] = charges

    source = charges.to_source_asset()
    assert materialize([source, one_day], resources, "2025-01-04", instance=instance).success
    assert isinstance(got["one"], pd.DataFrame)
    assert set(got["one"]["_partition"]) == {"2025-01-04"}
    assert len(got["one"]) == 15

    assert materialize([source, three_days], resources, "2025-01-05", instance=instance).success
    dataset = got["range"]
    assert isinstance(dataset, ds.Dataset)
    assert dataset.count_rows() == 45
    assert set(dataset.to_table(columns=["_partition"]).column(0).to_pylist()) == {
        "2025-01-03",
        "2025-01-04",
        "2025-01-05",
    }

    # A range reaching a partition never materialized fails loudly.
    failed = materialize(
        [source, three_days], resources, "2025-01-04", instance=instance, raise_on_error=False
    )
    assert not failed.success

    # Unless the input allows missing partitions (here: the week of 2025-01-05).
    assert materialize([source, week], resources, "2025-01-05", instance=instance).success
    assert got["week"].num_rows == 15

    # An unpartitioned downstream reads every materialized partition.
    assert materialize([source, all_days], resources, instance=instance).success
    assert isinstance(got["all"], pd.DataFrame)
    assert len(got["all"]) == 45


def test_static_multi_unpartitioned_pandas_and_table_outputs(tmp_path):
    static = dg.StaticPartitionsDefinition(["eu", "us"])
    multi = dg.MultiPartitionsDefinition({"region": static, "day": DAILY})

    @dg.asset(key=["crm", "contacts"], partitions_def=static)
    def contacts(context: dg.AssetExecutionContext):
        return pd.DataFrame({"id": [1, 2], "region": [context.partition_key] * 2})

    @dg.asset(key=["crm", "deals"], partitions_def=multi)
    def deals():
        return pa.table({"id": ["d1"], "value": [10.5]})

    @dg.asset(key=["crm", "owners"])
    def owners():
        return pa.table({"id": [7]})

    got = {}

    @dg.asset(ins={"deals": dg.AssetIn(key=["crm", "deals"])})
    def all_deals(deals: pa.Table):
        got["deals"] = deals

    resources = {"io_manager": ParquetIOManager(base_path=str(tmp_path))}
    instance = dg.DagsterInstance.ephemeral()
    assert materialize([contacts], resources, "eu", instance=instance).success
    for region in ("eu", "us"):
        key = dg.MultiPartitionKey({"region": region, "day": "2025-01-02"})
        assert materialize([deals], resources, key, instance=instance).success
    result = materialize([owners], resources, instance=instance)
    assert result.success

    base = tmp_path / "crm"
    contacts_rows = _read(base / "contacts" / "partition=eu").to_pylist()
    assert [(r["id"], r["region"], r["_source"], r["_endpoint"]) for r in contacts_rows] == [
        (1, "eu", "crm", "contacts"),
        (2, "eu", "crm", "contacts"),
    ]
    deals_folder = base / "deals" / "day=2025-01-02" / "region=us"
    assert _read(deals_folder).column("_partition").to_pylist() == ["2025-01-02|us"]
    assert _read(base / "owners" / "snapshot").column("_partition").to_pylist() == [None]
    assert output_metadata(result, "crm/owners")["dagster/row_count"].value == 1

    assert materialize([deals.to_source_asset(), all_deals], resources, instance=instance).success
    assert sorted(got["deals"].column("_partition").to_pylist()) == [
        "2025-01-02|eu",
        "2025-01-02|us",
    ]


def test_empty_stream_is_an_empty_partition(tmp_path):
    @dg.asset(partitions_def=DAILY)
    def quiet(context: dg.AssetExecutionContext):
        return RecordBatchStream.from_pages(iter([[], []]), Normalizer(schema={"id": "int64"}))

    got = {}

    @dg.asset(partitions_def=DAILY)
    def after(quiet: pa.Table):
        got["t"] = quiet

    resources = {"io_manager": ParquetIOManager(base_path=str(tmp_path))}
    result = materialize([quiet, after], resources, "2025-01-02")
    assert result.success
    assert output_metadata(result, "quiet")["dagster/row_count"].value == 0
    assert got["t"].num_rows == 0
    assert got["t"].schema.field("id").type == pa.int64()


def test_unsupported_output_fails_clearly(tmp_path):
    @dg.asset
    def oops():
        return {"not": "a table"}

    with pytest.raises(dg.DagsterInvariantViolationError, match="RecordBatchStream"):
        materialize([oops], {"io_manager": ParquetIOManager(base_path=str(tmp_path))})


def test_object_store_path_through_fsspec(tmp_path):
    base = f"memory://ingestion-tests/{tmp_path.name}"
    got = {}

    charges = _table_asset()

    @dg.asset(partitions_def=DAILY, ins={"charges": dg.AssetIn(key=["payments", "charges"])})
    def downstream(charges: pa.Table):
        got["t"] = charges

    manager = ParquetIOManager(base_path=base, row_group_size=5)
    for _ in range(2):  # the second run replaces the first through the object-store swap
        result = materialize([charges, downstream], {"io_manager": manager}, "2025-01-05")
        assert result.success
    assert got["t"].num_rows == 15
    assert set(got["t"].column("_run_id").to_pylist()) == {result.run_id}
    folder = UPath(base) / "payments" / "charges"
    assert [p.name for p in folder.iterdir()] == ["date=2025-01-05"]
    assert (
        output_metadata(result, "payments/charges")["uri"].value
        == f"{base}/payments/charges/date=2025-01-05"
    )


def test_narrower_batches_share_the_file_and_streamed_reads(tmp_path):
    def batches():
        yield pa.record_batch({"x": pa.array([1.5], pa.float64())})
        yield pa.record_batch({"x": pa.array([2], pa.int64())})  # cast, no new file

    @dg.asset
    def values():
        return RecordBatchStream(batches())

    got = {}

    @dg.asset
    def as_reader(values: pa.RecordBatchReader):
        got["reader"] = values.read_all()

    @dg.asset
    def as_stream(values: RecordBatchStream):
        got["stream"] = pa.Table.from_batches(list(values), schema=values.schema)

    manager = ParquetIOManager(base_path=str(tmp_path))
    assert materialize([values, as_reader, as_stream], {"io_manager": manager}).success
    assert current_names(tmp_path / "values" / "snapshot", "_SUCCESS") == [
        "_SUCCESS",
        "part-00000.parquet",
    ]
    assert got["reader"].column("x").to_pylist() == [1.5, 2.0]
    assert got["stream"].column("x").to_pylist() == [1.5, 2.0]


def test_incompatible_schemas_across_partitions_fail_with_a_clear_error(tmp_path):
    @dg.asset(partitions_def=DAILY)
    def drifting(context: dg.AssetExecutionContext):
        value = 1 if context.partition_key == "2025-01-02" else "one"
        return pa.table({"v": [value]})

    @dg.asset
    def reader(drifting: pa.Table):
        return None

    resources = {"io_manager": ParquetIOManager(base_path=str(tmp_path))}
    instance = dg.DagsterInstance.ephemeral()
    for day in ("2025-01-02", "2025-01-03"):
        assert materialize([drifting], resources, day, instance=instance).success
    with pytest.raises(dg.DagsterInvariantViolationError, match="incompatible schemas"):
        materialize([drifting.to_source_asset(), reader], resources, instance=instance)


# -- key sketches (the cross-partition uniqueness check reads them) -------------------------


@given(st.lists(st.text(max_size=12), max_size=60))
@settings(max_examples=200, deadline=None)
def test_key_hashes_depend_only_on_the_key_text(keys):
    from ingestion_assets.io_managers.parquet import hash_keys

    whole = hash_keys(pa.array(["pad", *keys]))
    # A slice (a batch cut out of a page) hashes its keys as the keys alone do.
    sliced = hash_keys(pa.array(["pad", *keys]).slice(1))
    alone = [hash_keys(pa.array([k]))[0] for k in keys]
    assert list(whole[1:]) == list(sliced) == alone
    # Distinct keys get distinct hashes (64 bits: no collision among a few dozen keys).
    assert len(set(sliced.tolist())) == len(set(keys))


def test_key_sketch_is_the_same_for_int_and_text_keys_and_for_compound_keys(tmp_path):
    import numpy as np
    from upath import UPath

    from ingestion_assets.io_managers.parquet import KeySketch, hash_keys

    assert (hash_keys(pa.array([7, 1234567890123])) ==
            hash_keys(pa.array(["7", "1234567890123"]))).all()
    compound = KeySketch(["date", "channel"])
    compound.add(pa.record_batch({"date": ["2025-01-01", "2025-01-01", "2025-01-0"],
                                  "channel": ["a", "b", "1a"]}))
    compound.add(pa.record_batch({"date": ["2025-01-01"], "channel": ["a"]}))
    # written once, sorted and distinct: the repeated ("2025-01-01", "a") counts once
    assert compound.write(UPath(tmp_path / "keys.u64")) == 3
    stored = np.fromfile(tmp_path / "keys.u64", dtype="<u8")
    assert stored.size == 3 and (stored[1:] > stored[:-1]).all()


def test_a_key_sketch_spilled_to_bucket_files_is_written_like_one_held_in_memory(
    tmp_path, monkeypatch
):
    """Past ``_SKETCH_SPILL`` keys the hashes go, sorted, to temporary bucket files by their
    top bits: the file written is the same sorted distinct hashes, and the spill files go."""
    import numpy as np
    from upath import UPath

    from ingestion_assets.io_managers import parquet

    rng = np.random.default_rng(3)
    keys = [f"k{v}" for v in rng.integers(0, 5_000, 12_000)]  # with repeats across pages
    expected = np.unique(parquet.hash_keys(pa.array(keys)))
    for spill in (1_000, 1_000_000):
        monkeypatch.setattr(parquet, "_SKETCH_SPILL", spill)
        sketch = parquet.KeySketch(["id"])
        for at in range(0, len(keys), 700):
            sketch.add(pa.record_batch({"id": keys[at:at + 700]}))
        spilled = list(sketch._buckets or [])
        assert bool(spilled) == (spill < len(keys))
        path = tmp_path / f"keys-{spill}.u64"
        assert sketch.write(UPath(path)) == expected.size
        assert (np.fromfile(path, dtype="<u8") == expected).all()
        assert all(f.closed for f in spilled)


def test_a_lazy_dataset_keeps_reading_its_version_while_a_new_one_is_committed(tmp_path):
    """A Dataset handed downstream names one version's files: a replacement committed before
    it is scanned changes nothing it returns (no mix of old and new rows, no error)."""
    manager = ParquetIOManager(base_path=str(tmp_path))

    def values_asset(tag: str, rows: int):
        @dg.asset(key=["values"], partitions_def=DAILY)
        def values():
            return pa.table({"tag": [tag] * rows, "i": list(range(rows))})

        return values

    got = {}

    @dg.asset(partitions_def=DAILY, deps=[])
    def reader(values: ds.Dataset):
        # The upstream partition is re-materialized (6 rows) after this step got its input.
        again = materialize([values_asset("new", 6)], {"io_manager": manager}, "2025-01-05")
        assert again.success
        got["held"] = values.to_table()

    assert materialize([values_asset("old", 4)], {"io_manager": manager}, "2025-01-05").success
    assert materialize([values_asset("old", 4), reader], {"io_manager": manager}, "2025-01-05",
                       selection=[reader.key]).success
    assert got["held"].column("tag").to_pylist() == ["old"] * 4
    assert _read(tmp_path / "values" / "partition=2025-01-05").column("tag").to_pylist() == (
        ["new"] * 6
    )
