"""Endpoint partitioning -> Dagster partitions, and a partition key -> the request for it.

A time partition is the half-open UTC window ``[start, end)``; `window_params` turns it into
the API's filter parameters. Static and dynamic partition keys reach the request as a query
parameter or a ``{placeholder}`` in the path, URL-encoded as one path segment.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from ingestion_assets.endpoint_io import (  # noqa: F401 - public here before endpoint_io
    PartitionKeyError,
    PartitionRequest,
    apply_target,
    format_instant,
    format_unit,
    path_segment,
    window_params,
)
from ingestion_assets.specs import (
    DynamicPartitioning,
    Endpoint,
    MultiPartitioning,
    Source,
    StaticPartitioning,
    TimePartitioning,
)

TIME_DIMENSION = {"hourly": "hour", "daily": "date", "weekly": "week", "monthly": "month"}

_TIME_DEFS = {
    "hourly": dg.HourlyPartitionsDefinition,
    "daily": dg.DailyPartitionsDefinition,
    "weekly": dg.WeeklyPartitionsDefinition,
    "monthly": dg.MonthlyPartitionsDefinition,
}


def _as_datetime(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is None else parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)


def time_partitions_def(spec: TimePartitioning) -> dg.TimeWindowPartitionsDefinition:
    offsets: dict[str, int] = {"minute_offset": spec.minute_offset}
    if spec.type != "hourly":
        offsets["hour_offset"] = spec.hour_offset
    if spec.type in ("weekly", "monthly") and spec.day_offset is not None:
        offsets["day_offset"] = spec.day_offset
    return _TIME_DEFS[spec.type](
        start_date=_as_datetime(spec.start),
        end_date=_as_datetime(spec.end) if spec.end else None,
        timezone=spec.timezone,
        end_offset=spec.end_offset,
        **offsets,
    )


def dynamic_partitions_name(source: Source, endpoint: Endpoint) -> str:
    return f"{source.name}__{endpoint.name}"


def partitions_def(source: Source, endpoint: Endpoint) -> dg.PartitionsDefinition | None:
    """The Dagster partitions of an endpoint's assets, or None for an unpartitioned snapshot."""
    p = endpoint.partitioning
    if isinstance(p, TimePartitioning):
        return time_partitions_def(p)
    if isinstance(p, StaticPartitioning):
        return dg.StaticPartitionsDefinition(p.values)
    if isinstance(p, DynamicPartitioning):
        return dg.DynamicPartitionsDefinition(name=dynamic_partitions_name(source, endpoint))
    if isinstance(p, MultiPartitioning):
        return dg.MultiPartitionsDefinition(
            {
                TIME_DIMENSION[p.time.type]: time_partitions_def(p.time),
                p.static.dimension: dg.StaticPartitionsDefinition(p.static.values),
            }
        )
    return None


def partition_dimension(endpoint: Endpoint) -> str | None:
    """Name of the single partition dimension (for Hive-style folders), if there is one."""
    p = endpoint.partitioning
    if isinstance(p, TimePartitioning):
        return TIME_DIMENSION[p.type]
    if isinstance(p, StaticPartitioning | DynamicPartitioning):
        return p.dimension
    return None


def partition_request(
    endpoint: Endpoint, pdef: dg.PartitionsDefinition | None, key: str | None
) -> PartitionRequest:
    """Translate one partition key into the request that fetches exactly that partition."""
    params = dict(endpoint.params)
    path = endpoint.path
    p = endpoint.partitioning
    window = None
    time_key = None
    if isinstance(p, TimePartitioning):
        time_key, time_def = key, pdef
    elif isinstance(p, MultiPartitioning):
        assert isinstance(pdef, dg.MultiPartitionsDefinition) and key is not None
        by_dim = pdef.get_partition_key_from_str(key).keys_by_dimension
        time_dim = TIME_DIMENSION[p.time.type]
        time_key = by_dim[time_dim]
        time_def = pdef.get_partitions_def_for_dimension(time_dim)
        path = apply_target(p.static, by_dim[p.static.dimension], path, params)
    elif isinstance(p, StaticPartitioning | DynamicPartitioning):
        assert key is not None
        path = apply_target(p, key, path, params)
    if time_key is not None:
        assert isinstance(time_def, dg.TimeWindowPartitionsDefinition)
        tw = time_def.time_window_for_partition_key(time_key)
        window = (tw.start.astimezone(dt.timezone.utc), tw.end.astimezone(dt.timezone.utc))
        if endpoint.window is not None:  # required, except of a child (its parent's window)
            params.update(window_params(endpoint.window, *window))
    return PartitionRequest(key=key, path=path, params=params, window=window)
