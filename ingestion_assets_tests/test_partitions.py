"""Partition keys -> the requests that fetch exactly their half-open UTC windows."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from ingestion_assets.partitions import partition_request, partitions_def, window_params
from ingestion_assets.specs import Endpoint, WindowParams

UTC = dt.timezone.utc


def endpoint(**kwargs) -> Endpoint:
    base = {"name": "things", "path": "/things", "primary_key": "id"}
    return Endpoint.model_validate({**base, **kwargs})


def test_daily_partition_is_a_half_open_utc_window_in_unix_seconds():
    ep = endpoint(
        partitioning={"type": "daily", "start": "2025-01-01"},
        window={"start_param": "created[gte]", "end_param": "created[lt]", "format": "unix"},
    )
    request = partition_request(ep, partitions_def(None, ep), "2025-01-02")
    start = dt.datetime(2025, 1, 2, tzinfo=UTC)
    assert request.window == (start, start + dt.timedelta(days=1))
    assert request.params == {
        "created[gte]": int(start.timestamp()),
        "created[lt]": int(start.timestamp()) + 86400,
    }


def test_inclusive_end_filter_gets_the_last_second_of_the_window():
    params = window_params(
        WindowParams(start_param="min", end_param="max", format="iso", end_inclusive=True),
        dt.datetime(2025, 3, 1, tzinfo=UTC),
        dt.datetime(2025, 3, 2, tzinfo=UTC),
    )
    assert params == {"min": "2025-03-01T00:00:00+00:00", "max": "2025-03-01T23:59:59+00:00"}


def test_date_format_without_end_param():
    params = window_params(
        WindowParams(start_param="date", format="date"),
        dt.datetime(2025, 3, 1, tzinfo=UTC),
        dt.datetime(2025, 3, 2, tzinfo=UTC),
    )
    assert params == {"date": "2025-03-01"}


def test_a_dst_day_in_a_local_timezone_is_23_hours_of_utc():
    ep = endpoint(
        partitioning={"type": "daily", "start": "2025-03-01", "timezone": "America/New_York"},
        window={"start_param": "from", "end_param": "to", "format": "iso_z"},
    )
    request = partition_request(ep, partitions_def(None, ep), "2025-03-09")
    assert request.params == {"from": "2025-03-09T05:00:00Z", "to": "2025-03-10T04:00:00Z"}
    start, end = request.window
    assert end - start == dt.timedelta(hours=23)


def test_consecutive_windows_tile_time_without_gap_or_overlap():
    ep = endpoint(
        partitioning={"type": "hourly", "start": "2025-01-01T00:00:00"},
        window={"start_param": "a", "end_param": "b", "format": "unix"},
    )
    pdef = partitions_def(None, ep)
    keys = pdef.get_partition_keys(current_time=dt.datetime(2025, 1, 2, 3, tzinfo=UTC))
    windows = [partition_request(ep, pdef, k).window for k in keys]
    assert len(windows) == 27
    for (_, end), (next_start, _) in zip(windows, windows[1:], strict=False):
        assert end == next_start


def test_multi_partition_key_sets_path_placeholder_and_window():
    ep = endpoint(
        path="/regions/{region}/things",
        partitioning={
            "type": "multi",
            "time": {"type": "daily", "start": "2025-01-01"},
            "static": {"type": "static", "dimension": "region", "values": ["eu", "us"],
                       "path_placeholder": "region"},
        },
        window={"start_param": "since", "end_param": "until", "format": "date"},
    )
    pdef = partitions_def(None, ep)
    assert isinstance(pdef, dg.MultiPartitionsDefinition)
    key = dg.MultiPartitionKey({"date": "2025-01-05", "region": "us"})
    request = partition_request(ep, pdef, key)
    assert request.path == "/regions/us/things"
    assert request.params == {"since": "2025-01-05", "until": "2025-01-06"}


def test_static_key_as_query_param_and_unpartitioned_snapshot():
    ep = endpoint(partitioning={"type": "static", "values": ["a", "b"], "param": "account"},
                  params={"limit": 5})
    assert partition_request(ep, partitions_def(None, ep), "b").params == {"limit": 5, "account": "b"}
    snap = endpoint()
    assert partitions_def(None, snap) is None
    assert partition_request(snap, None, None).params == {}


def test_every_window_format_and_the_unit_taken_off_an_inclusive_end():
    start, end = dt.datetime(2025, 3, 1, tzinfo=UTC), dt.datetime(2025, 3, 2, tzinfo=UTC)
    cases = [
        ("iso", "2025-03-01T00:00:00+00:00", "2025-03-01T23:59:59+00:00"),
        ("iso_z", "2025-03-01T00:00:00Z", "2025-03-01T23:59:59Z"),
        ("iso_ms", "2025-03-01T00:00:00.000Z", "2025-03-01T23:59:59.999Z"),
        ("unix", 1740787200, 1740873599),
        ("unix_ms", 1740787200000, 1740873599999),
        ("date", "2025-03-01", "2025-03-01"),
        ("%Y-%m-%d %H:%M", "2025-03-01 00:00", "2025-03-01 23:59"),
        ("%Y%m%dT%H%M%S.%fZ", "20250301T000000.000000Z", "20250301T235959.999999Z"),
        ("%d/%m/%Y", "01/03/2025", "01/03/2025"),
    ]
    for fmt, first, last in cases:
        exclusive = window_params(WindowParams(start_param="a", end_param="b", format=fmt), start, end)
        inclusive = window_params(
            WindowParams(start_param="a", end_param="b", format=fmt, end_inclusive=True), start, end
        )
        assert exclusive["a"] == inclusive["a"] == first, fmt
        assert inclusive["b"] == last, fmt
        assert exclusive["b"] != last, fmt  # the exclusive end is the next window's start


# --------------------------------------------------------------------------- hostile keys

HOSTILE_KEYS = [
    "../../admin",
    "a#fragment",
    "a?entity=other",
    "a%2Fb",
    "with space",
    "naïve-ünïcode-€",
    "plain",
]


def _entity_server():
    """Entities by name (decoded from one path segment or the ``entity`` parameter); three
    records each. Anything else under the root answers with records of an `admin` entity."""
    from urllib.parse import unquote

    from ingestion_assets_tests.hostile import HostileServer, Reply

    names = set(HOSTILE_KEYS) | {"a", "admin"}

    def records(name: str) -> Reply:
        if name not in names:
            return Reply.json({"error": f"no entity {name!r}"}, 404)
        return Reply.json([{"id": f"{name}#{i}", "entity": name} for i in range(3)])

    def by_path(seen) -> Reply:
        parts = seen.path.split("/")  # ["", "entities", "<segment>", "records"]
        if len(parts) != 4 or parts[3] != "records":
            return records("admin")
        return records(unquote(parts[2]))

    def by_param(seen) -> Reply:
        return records(seen.query.get("entity", ["?"])[0])

    return HostileServer(
        {"/entities/*": by_path, "/by-param": by_param, "/*": lambda seen: records("admin")}
    )


def _entity_source(url: str):
    from ingestion_assets.specs import Source

    def ep(name, path, target):
        return {
            "name": name, "path": path, "primary_key": "id",
            "partitioning": {"type": "dynamic", "dimension": "entity", **target},
        }

    return Source.model_validate({
        "name": "entities", "base_url": url, "retry": {"op_retries": 0, "max_attempts": 1},
        "endpoints": [
            ep("by_path", "/entities/{entity}/records", {"path_placeholder": "entity"}),
            ep("by_param", "/by-param", {"param": "entity"}),
        ],
    })


def test_hostile_partition_keys_fetch_exactly_their_own_entity(tmp_path):
    import pyarrow.dataset as ds

    from ingestion_assets.definitions import build_definitions
    from ingestion_assets.factory import build_assets, raw_asset_key, table_asset_key
    from ingestion_assets.partitions import dynamic_partitions_name

    with _entity_server() as server:
        source = _entity_source(server.url)
        defs = build_definitions([source], str(tmp_path))
        assets = build_assets([source])
        instance = dg.DagsterInstance.ephemeral()
        for endpoint in source.endpoints:
            instance.add_dynamic_partitions(
                dynamic_partitions_name(source, endpoint), HOSTILE_KEYS
            )
        for endpoint in source.endpoints:
            selection = [raw_asset_key(source, endpoint), table_asset_key(source, endpoint)]
            for key in HOSTILE_KEYS:
                result = dg.materialize(
                    assets, selection=selection, resources=defs.resources, instance=instance,
                    partition_key=key,
                )
                assert result.success
        for endpoint in ("by_path", "by_param"):
            table = ds.dataset(
                tmp_path / "entities" / endpoint, format="parquet", partitioning="hive"
            ).to_table(columns=["entity", "_partition"])
            rows = table.to_pylist()
            assert len(rows) == 3 * len(HOSTILE_KEYS), endpoint
            assert all(r["entity"] == r["_partition"] for r in rows), endpoint
        assert not [s for s in server.seen if "admin" in s.path and "entities" not in s.path]


def test_dot_segment_partition_key_fails_clearly(tmp_path):
    from ingestion_assets.definitions import build_definitions
    from ingestion_assets.factory import build_assets
    from ingestion_assets.partitions import dynamic_partitions_name

    with _entity_server() as server:
        source = _entity_source(server.url)
        source = source.model_copy(update={"endpoints": source.endpoints[:1]})
        defs = build_definitions([source], str(tmp_path))
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions(dynamic_partitions_name(source, source.endpoints[0]), [".."])
        result = dg.materialize(
            build_assets([source]), resources=defs.resources, instance=instance, partition_key="..", raise_on_error=False,
        )
        assert not result.success
        (failure,) = [e for e in result.all_events if e.is_step_failure]
        error = failure.event_specific_data.error
        message = error.message + (error.cause.message if error.cause else "")
        assert "partition key '..' cannot fill the path placeholder {entity}" in message
        assert server.seen == []
