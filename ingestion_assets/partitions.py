"""Endpoint partitioning -> Dagster partitions, and a partition key -> the request for it.

A time partition is the half-open UTC window ``[start, end)``; `window_params` turns it into
the API's filter parameters. Static and dynamic partition keys reach the request as a query
parameter or a ``{placeholder}`` in the path, URL-encoded as one path segment.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import dagster as dg

from ingestion_assets.specs import (
    DynamicPartitioning,
    Endpoint,
    MultiPartitioning,
    PartitionTarget,
    Source,
    StaticPartitioning,
    TimePartitioning,
    WindowParams,
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


_UNIT = {"unix": dt.timedelta(seconds=1), "iso": dt.timedelta(seconds=1),
         "iso_z": dt.timedelta(seconds=1), "iso_ms": dt.timedelta(milliseconds=1),
         "unix_ms": dt.timedelta(milliseconds=1), "date": dt.timedelta(days=1)}

# The finest field of a strftime pattern, finest first: its unit is what `end_inclusive`
# takes off the end of a window.
_PATTERN_UNITS = (
    ("%f", dt.timedelta(microseconds=1)), ("%S", dt.timedelta(seconds=1)),
    ("%s", dt.timedelta(seconds=1)), ("%T", dt.timedelta(seconds=1)),
    ("%M", dt.timedelta(minutes=1)), ("%H", dt.timedelta(hours=1)),
    ("%I", dt.timedelta(hours=1)),
)


def format_unit(fmt: str) -> dt.timedelta:
    """The smallest step a format can express (a day for a pattern without a time field)."""
    if fmt in _UNIT:
        return _UNIT[fmt]
    return next((unit for code, unit in _PATTERN_UNITS if code in fmt), dt.timedelta(days=1))


def format_instant(value: dt.datetime, fmt: str) -> str | int:
    """Format a UTC instant the way the API's filter parameter expects it.

    ``fmt`` is a name of ``specs.WINDOW_FORMATS`` or a strftime pattern (applied in UTC).
    """
    value = value.astimezone(dt.timezone.utc)
    if fmt == "unix":
        return int(value.timestamp())
    if fmt == "unix_ms":
        return int(value.timestamp() * 1000)
    if fmt == "date":
        return value.date().isoformat()
    if fmt == "iso_z":
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if fmt == "iso_ms":
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if fmt == "iso":
        return value.isoformat()
    return value.strftime(fmt)


def window_params(window: WindowParams, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
    """The filter parameters selecting exactly the records in ``[start, end)``.

    An API whose end filter is inclusive (``<=``) gets ``end`` minus one unit of its format, so
    a record stamped exactly at ``end`` belongs to the next window only.
    """
    params: dict[str, Any] = {window.start_param: format_instant(start, window.format)}
    if window.end_param:
        upper = end - format_unit(window.format) if window.end_inclusive else end
        params[window.end_param] = format_instant(upper, window.format)
    return params


@dataclass(frozen=True)
class PartitionRequest:
    """What to ask the API for one partition: the path, extra params, and the window."""

    key: str | None
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    window: tuple[dt.datetime, dt.datetime] | None = None


class PartitionKeyError(ValueError):
    """A partition key that cannot be put into a request as it stands."""


def path_segment(value: str, placeholder: str) -> str:
    """A partition key as one URL path segment: every reserved character escaped.

    Keys come from API data (discovery), so ``/``, ``?``, ``#``, ``%`` and ``..`` in them
    must not change which resource is asked for. ``.`` and ``..`` alone cannot be escaped
    (HTTP clients and servers resolve them as "this/parent folder") and are refused.
    """
    if value in ("", ".", ".."):
        raise PartitionKeyError(
            f"partition key {value!r} cannot fill the path placeholder {{{placeholder}}}: "
            "an empty, '.' or '..' path segment would address another resource"
        )
    return quote(value, safe="")


def apply_target(target: PartitionTarget, value: str, path: str, params: dict) -> str:
    """Put one partition value where ``target`` sends it: into the query parameter
    ``target.param`` (``params`` is updated in place) and/or the ``{path_placeholder}`` of
    ``path`` (percent-encoded, see `path_segment`). Returns the path.

    Used for a partition request (`partition_request`) and by the incremental sensor
    (`ingestion_assets.automation.ChangePoller`) to poll each static or dynamic key.
    """
    if target.param:
        params[target.param] = value  # requests encodes query values itself
    if target.path_placeholder:
        segment = path_segment(value, target.path_placeholder)
        path = path.replace("{" + target.path_placeholder + "}", segment)
    return path


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
