"""The raw-response IO manager, through Dagster: layout, manifest, atomicity, reading back."""

import hashlib
import os

import dagster as dg
import orjson
import pytest

from ingestion_assets.io_managers import (
    RawPartition,
    RawPartitionCorrupted,
    RawPartitionSet,
    RawResponseIOManager,
)
from ingestion_assets_tests.io_managers._helpers import (
    FakePageStream,
    current_folder,
    current_names,
    materialize,
    output_metadata,
)

DAILY = dg.DailyPartitionsDefinition(start_date="2025-01-01", end_date="2025-01-10")
DAY_META = {"ingestion/partition_dimension": "date"}


def _raw_daily(stream_for):
    @dg.asset(key=["raw", "demo", "items"], partitions_def=DAILY, metadata=DAY_META)
    def items(context: dg.AssetExecutionContext):
        return stream_for(context.partition_key)

    return items


def _folder(tmp_path, day):
    return tmp_path / "raw" / "demo" / "items" / f"date={day}"


def _visible_entries(path):
    return sorted(os.listdir(path))


def _manifest_bytes(folder) -> bytes:
    return (current_folder(folder, "manifest.json") / "manifest.json").read_bytes()


def test_daily_partition_layout_manifest_and_metadata(tmp_path):
    streams = {}

    def stream_for(day):
        streams[day] = FakePageStream(pages=3, per_page=4)
        return streams[day]

    result = materialize(
        [_raw_daily(stream_for)],
        {"io_manager": RawResponseIOManager(base_path=str(tmp_path))},
        partition_key="2025-01-05",
    )
    assert result.success
    folder = _folder(tmp_path, "2025-01-05")
    assert current_names(folder, "manifest.json") == ["bodies.zst", "manifest.json"]
    # Nothing but the committed partition is left next to it.
    assert _visible_entries(folder.parent) == ["date=2025-01-05"]

    manifest = orjson.loads((current_folder(folder, "manifest.json") / "manifest.json").read_bytes())
    assert manifest["partition"] == "2025-01-05"
    assert manifest["totals"]["pages"] == 3
    assert manifest["totals"]["records"] == 12
    assert manifest["stats"] == {"pages": 3, "records": 12, "retries": {"rate_limited": 1}}
    first = manifest["pages"][0]
    assert first["url"].endswith("page=0")
    assert first["params"] == {"limit": 4, "page": 0, "api_key": "***"}
    assert first["status"] == 200
    assert first["headers"]["X-RateLimit-Remaining"] == "9"
    assert first["fetched_at"] == "2025-01-06T03:00:00+00:00"
    assert first["records"] == 4
    assert manifest["totals"]["bytes"] == sum(p["bytes"] for p in manifest["pages"])

    metadata = output_metadata(result, "raw/demo/items")
    assert metadata["pages"].value == 3
    assert metadata["records"].value == 12
    assert metadata["bytes"].value == manifest["totals"]["bytes"]
    assert metadata["uri"].value == str(folder)
    assert metadata["request_stats"].value["retries"] == {"rate_limited": 1}


def test_pages_are_written_as_they_arrive(tmp_path):
    """Each page is on disk (in the new version's folder) before the next one is fetched."""
    sizes = []

    def look(i):
        versions = list(_folder(tmp_path, "2025-01-05").glob("v=*"))
        bodies = versions[0] / "bodies.zst" if versions else None
        sizes.append(bodies.stat().st_size if bodies and bodies.exists() else 0)

    items = _raw_daily(lambda day: FakePageStream(pages=4, on_page=look))
    result = materialize(
        [items], {"io_manager": RawResponseIOManager(base_path=str(tmp_path))}, "2025-01-05"
    )
    assert result.success
    # Before page 0 nothing is written; before each later page the file has grown.
    assert sizes[0] == 0
    assert all(later > earlier for earlier, later in zip(sizes, sizes[1:], strict=False))


def test_read_back_one_partition_streams_the_exact_bodies(tmp_path):
    sent = {}

    def stream_for(day):
        stream = FakePageStream(pages=3, per_page=2, tag=day)
        sent[day] = [p.body for p in FakePageStream(pages=3, per_page=2, tag=day)]
        return stream

    raw = _raw_daily(stream_for)
    got = {}

    @dg.asset(partitions_def=DAILY, ins={"items": dg.AssetIn(key=["raw", "demo", "items"])})
    def table(items):
        got["partition"] = items
        got["pages"] = list(items.iter_pages())

    resources = {"io_manager": RawResponseIOManager(base_path=str(tmp_path))}
    instance = dg.DagsterInstance.ephemeral()
    assert materialize([raw], resources, "2025-01-05", instance=instance).success
    assert materialize(
        [raw.to_source_asset(), table], resources, "2025-01-05", instance=instance
    ).success

    partition = got["partition"]
    assert isinstance(partition, RawPartition)
    assert partition.record_count == 6
    assert partition.partition_key == "2025-01-05"
    assert [body for _, body in got["pages"]] == sent["2025-01-05"]
    meta, body = got["pages"][1]
    assert meta["index"] == 1 and meta["sha256"] == hashlib.sha256(body).hexdigest()


def test_failed_run_leaves_previous_version_and_rerun_replaces_it(tmp_path):
    tags = iter(["first", "broken", "second"])

    def stream_for(day):
        tag = next(tags)
        return FakePageStream(pages=5, fail_after=2 if tag == "broken" else None, tag=tag)

    raw = _raw_daily(stream_for)
    resources = {"io_manager": RawResponseIOManager(base_path=str(tmp_path))}
    folder = _folder(tmp_path, "2025-01-05")

    assert materialize([raw], resources, "2025-01-05").success
    before = _manifest_bytes(folder)
    versions_before = _visible_entries(folder)

    failed = materialize([raw], resources, "2025-01-05", raise_on_error=False)
    assert not failed.success
    assert _manifest_bytes(folder) == before
    assert _visible_entries(folder) == versions_before  # the failed version is gone

    assert materialize([raw], resources, "2025-01-05").success
    manifest = orjson.loads(_manifest_bytes(folder))
    assert manifest["totals"] == {**manifest["totals"], "pages": 5, "records": 20}
    partition = RawPartition.open(folder, "2025-01-05")
    bodies = [orjson.loads(body) for _, body in partition.iter_pages()]
    assert {r["tag"] for b in bodies for r in b["data"]} == {"second"}


def test_partition_of_the_layout_before_versions_is_read_then_replaced(tmp_path):
    raw = _raw_daily(lambda day: FakePageStream(pages=2))
    manager = RawResponseIOManager(base_path=str(tmp_path))
    assert materialize([raw], {"io_manager": manager}, "2025-01-05").success
    folder = _folder(tmp_path, "2025-01-05")
    # The old layout: the files right in the partition folder, no pointer.
    version = current_folder(folder, "manifest.json")
    for name in ("bodies.zst", "manifest.json"):
        os.rename(version / name, folder / name)
    os.remove(folder / "_CURRENT")
    os.rmdir(version)

    partition = RawPartition.open(folder, "2025-01-05")
    assert partition.record_count == 8 and partition.version is None
    assert len(list(partition.iter_pages())) == 2
    assert _visible_entries(folder) == ["bodies.zst", "manifest.json"]  # read, not moved

    assert materialize([raw], {"io_manager": manager}, "2025-01-05").success
    assert RawPartition.open(folder, "2025-01-05").version is not None


def test_corrupted_body_is_detected(tmp_path):
    raw = _raw_daily(lambda day: FakePageStream(pages=2))
    manager = RawResponseIOManager(base_path=str(tmp_path))
    assert materialize([raw], {"io_manager": manager}, "2025-01-05").success
    folder = _folder(tmp_path, "2025-01-05")
    manifest_path = current_folder(folder, "manifest.json") / "manifest.json"
    manifest = orjson.loads(manifest_path.read_bytes())
    manifest["pages"][1]["sha256"] = "0" * 64
    manifest_path.write_bytes(orjson.dumps(manifest))
    with pytest.raises(RawPartitionCorrupted, match="page 1"):
        list(RawPartition.open(folder, "2025-01-05").iter_pages())


def test_static_multi_and_unpartitioned_layouts(tmp_path):
    static = dg.StaticPartitionsDefinition(["acme", "globex/eu"])
    multi = dg.MultiPartitionsDefinition({"org": static, "day": DAILY})

    @dg.asset(key=["raw", "gh", "repos"], partitions_def=static)
    def repos():
        return FakePageStream(pages=1)

    @dg.asset(key=["raw", "gh", "issues"], partitions_def=multi)
    def issues():
        return FakePageStream(pages=1)

    @dg.asset(key=["raw", "gh", "meta"])
    def meta():
        return FakePageStream(pages=1)

    resources = {"io_manager": RawResponseIOManager(base_path=str(tmp_path))}
    assert materialize([repos], resources, "globex/eu").success
    key = dg.MultiPartitionKey({"org": "acme", "day": "2025-01-02"})
    assert materialize([issues], resources, key).success
    assert materialize([meta], resources).success

    base = tmp_path / "raw" / "gh"
    # "/" cannot be part of a folder name: it is escaped the Hive way.
    assert (base / "repos" / "partition=globex%2Feu" / "_CURRENT").exists()
    # Multi-partitions: one level per dimension, in Dagster's dimension order (by name).
    assert (base / "issues" / "day=2025-01-02" / "org=acme" / "_CURRENT").exists()
    assert (base / "meta" / "snapshot" / "_CURRENT").exists()


def test_range_and_all_partitions_read_as_a_partition_set(tmp_path):
    raw = _raw_daily(lambda day: FakePageStream(pages=2, per_page=3, tag=day))
    resources = {"io_manager": RawResponseIOManager(base_path=str(tmp_path))}
    instance = dg.DagsterInstance.ephemeral()
    for day in ("2025-01-03", "2025-01-04", "2025-01-05"):
        assert materialize([raw], resources, day, instance=instance).success
    got = {}

    @dg.asset(
        partitions_def=DAILY,
        ins={
            "items": dg.AssetIn(
                key=["raw", "demo", "items"],
                partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-2),
            )
        },
    )
    def rolling(items):
        got["rolling"] = items

    @dg.asset(ins={"items": dg.AssetIn(key=["raw", "demo", "items"])})
    def everything(items):
        got["all"] = items

    source = raw.to_source_asset()
    assert materialize([source, rolling], resources, "2025-01-05", instance=instance).success
    window = got["rolling"]
    assert isinstance(window, RawPartitionSet)
    assert window.partition_keys == ["2025-01-03", "2025-01-04", "2025-01-05"]
    assert window.record_count == 18
    tags = {
        meta["partition"]: orjson.loads(body)["data"][0]["tag"]
        for meta, body in window.iter_pages()
    }
    assert tags == {d: d for d in ("2025-01-03", "2025-01-04", "2025-01-05")}

    # A window reaching a partition never materialized fails loudly...
    failed = materialize(
        [source, rolling], resources, "2025-01-03", instance=instance, raise_on_error=False
    )
    assert not failed.success
    # ...while an unpartitioned downstream reads every partition that exists.
    assert materialize([source, everything], resources, instance=instance).success
    assert got["all"].partition_keys == ["2025-01-03", "2025-01-04", "2025-01-05"]


def test_object_store_path_through_fsspec(tmp_path):
    """The same code on a non-local filesystem (fsspec memory://), swap included."""
    base = f"memory://ingestion-tests/{tmp_path.name}"
    raw = _raw_daily(lambda day: FakePageStream(pages=2, per_page=2))
    manager = RawResponseIOManager(base_path=base)
    for _ in range(2):  # the second run replaces the first
        assert materialize([raw], {"io_manager": manager}, "2025-01-05").success
    from upath import UPath

    folder = UPath(base) / "raw" / "demo" / "items" / "date=2025-01-05"
    partition = RawPartition.open(folder, "2025-01-05")
    assert partition.record_count == 4
    assert len(list(partition.iter_pages())) == 2
    assert sorted(p.name for p in folder.parent.iterdir()) == ["date=2025-01-05"]
