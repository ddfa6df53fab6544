"""An endpoint spec -> the HTTP core's objects and the table's rules, without Dagster.

What the Dagster assets (``resources.py``, ``partitions.py``, ``factory.py``,
``automation.py``) and the Spark data source (``ingestion_assets.spark``) both need, so that
one declaration is read the same way by both: the auth, paginator and client of a source
(secrets read from the environment when a client is built), the request of a partition
(window parameters, keys in the path), the normalizer of a table (declared types, window
guard, dead letters), and the change watermark of the incremental sensor.

This module imports nothing from Dagster (a Spark executor loads it in well under a second).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from pydantic import BaseModel, TypeAdapter

from ingestion_assets.http import ApiClient, RateLimiter, RetryPolicy
from ingestion_assets.http.budgets import MIB, Budgets
from ingestion_assets.http.formats import charset_of
from ingestion_assets.http.headers import header_value_problem
from ingestion_assets.http.jsonpath import compile_path, find
from ingestion_assets.http.plugins import load_object
from ingestion_assets.http.records import (
    RootSteps,
    content_type_of,
    extract_records,
    page_body,
    records_steps,
)
from ingestion_assets.http.redaction import MASK, register_basic_credentials, register_secret
from ingestion_assets.normalize import (
    DeadLetters,
    JsonPage,
    Normalizer,
    WindowGuard,
    parse_type,
)
from ingestion_assets.specs import (
    Auth,
    BasicAuth,
    DiscoverySpec,
    Endpoint,
    EnvSecret,
    MissingSecretError,
    OffsetPagination,
    PageNumberPagination,
    Pagination,
    PartitionTarget,
    Source,
    TimePartitioning,
    WindowParams,
)

_AUTH = TypeAdapter(Auth)

# --------------------------------------------------------------------------- the client


def register_env_secrets(spec: Any) -> None:
    """Register with the redactor the secrets an auth spec names that are set right now.

    Called when the definitions load, so every process of a run (also a step that never
    calls the API, like a table rebuilt from raw pages) masks them in metadata and logs.
    """
    values: list[str] = []
    for name in type(spec).model_fields:
        field = getattr(spec, name, None)
        items = field if isinstance(field, list) else [field]
        items = list(field.values()) if isinstance(field, dict) else items  # custom options
        values += [os.environ.get(i.env) or "" for i in items if isinstance(i, EnvSecret)]
    register_secret(*values)
    if isinstance(spec, BasicAuth):
        user = spec.username
        user = os.environ.get(user.env) or "" if isinstance(user, EnvSecret) else user
        password = os.environ.get(spec.password.env) or ""
        if user and password:
            register_basic_credentials(user, password)


def records_of_page(
    body: bytes, records_path: str | None, content_type: str | None = None
) -> list[Any]:
    """The records of one stored page body, by the very rule the client used when fetching.

    ``{"data": null}`` and an empty (204) body are pages without records, never a ``None``
    record; see :mod:`ingestion_assets.http.records`.
    """
    return extract_records(page_body(body, None, content_type), records_steps(records_path))




_HEADERS = TypeAdapter(dict[str, str | EnvSecret])


def header_config(headers: dict[str, Any]) -> dict[str, Any]:
    """Headers as plain settings: values, or ``{"env": NAME}`` for secrets."""
    return {k: v.model_dump() if isinstance(v, EnvSecret) else v for k, v in headers.items()}


def resolve_headers(headers: dict[str, Any], what: str) -> tuple[dict[str, str], dict[str, str]]:
    """``(plain, secret)`` header values; secrets are read from the environment now and
    registered with the redactor (they are then masked wherever they would appear)."""
    plain: dict[str, str] = {}
    secret: dict[str, str] = {}
    for name, value in _HEADERS.validate_python(headers).items():
        if not isinstance(value, EnvSecret):
            plain[name] = value
            continue
        text = value.resolve(f"header {name} of {what}")
        register_secret(text)
        if header_value_problem(name, text):
            raise MissingSecretError(
                f"environment variable {value.env} (header {name} of {what}) holds a line "
                "break or control character, which a header value cannot"
            )
        secret[name] = text
    return plain, secret


def register_header_secrets(source: Source) -> None:
    """Register the header secrets of a source and its endpoints that are set right now."""
    for headers in [source.headers, *(e.headers for e in source.endpoints)]:
        register_secret(*(os.environ.get(v.env) or "" for v in headers.values()
                          if isinstance(v, EnvSecret)))


def request_headers(settings: dict[str, Any], endpoint: str | None,
                    headers: dict[str, Any] | None = None) -> dict[str, str]:
    """The headers sent with each request of an endpoint, besides the client session's: the
    source's secret ones, then the endpoint's (``headers``, or those in ``settings``)."""
    source = settings["source"]
    _, secret = resolve_headers(settings["headers"], f"source '{source}'")
    own = settings.get("endpoint_headers", {}).get(endpoint or "", {}) if headers is None \
        else headers
    plain, own_secret = resolve_headers(own, f"endpoint '{endpoint}' of source '{source}'")
    return {**secret, **plain, **own_secret}


def client_settings(source: Source) -> dict[str, Any]:
    """The settings of a source's client, as plain values (no secret: auth names variables).

    ``ApiResource`` shows them on its resource page; `build_client` turns them into a client.
    """
    rl = source.rate_limit
    return dict(
        source=source.name,
        base_url=source.base_url,
        auth=source.auth.model_dump(exclude_none=True),  # Dagster config holds no null
        requests_per_second=rl.requests_per_second if rl else None,
        burst=rl.burst if rl else None,
        max_concurrency=source.max_concurrency,
        # retry.* and limits.* go by their own names (op retries are the step's, not the client's)
        **source.retry.model_dump(exclude={"op_retries", "op_retry_delay_seconds"}),
        **source.limits.model_dump(),
        connect_timeout_seconds=source.timeout.connect,
        read_timeout_seconds=source.timeout.read,
        headers=header_config(source.headers),
        user_agent=source.user_agent,
        endpoint_headers={e.name: header_config(e.headers) for e in source.endpoints
                          if e.headers},
        allowed_origins=source.allowed_origins,
    )


def build_client(settings: dict[str, Any], pool_size: int = 32) -> ApiClient:
    """The HTTP core's client for `client_settings`; secrets are read from the environment now."""
    s = settings
    # Plain headers go on the session (also to a token endpoint); secret ones only with each
    # API request (`request_headers`), which the origin rule guards.
    plain, _ = resolve_headers(s["headers"], f"source '{s['source']}'")
    if s.get("user_agent"):
        plain = {"User-Agent": s["user_agent"], **plain}
    return ApiClient(
        s["base_url"],
        auth=_AUTH.validate_python(s["auth"]).build(s["source"]),
        headers=plain,
        rate_limiter=RateLimiter(
            s["requests_per_second"], burst=s["burst"], max_in_flight=s["max_concurrency"]
        ),
        retry=RetryPolicy(
            max_attempts=s["max_attempts"],
            rate_limit_attempts=s["rate_limit_attempts"],
            backoff_base=s["backoff_base_seconds"],
            backoff_max=s["backoff_max_seconds"],
            retry_after_floor=s["retry_after_floor_seconds"],
            retry_after_max=s["max_wait_seconds"],
        ),
        timeout=(s["connect_timeout_seconds"], s["read_timeout_seconds"]),
        source=s["source"],
        pool_size=pool_size,
        allowed_origins=s["allowed_origins"],
        budgets=Budgets(
            max_body_bytes=int(s["max_body_mb"] * MIB),
            request_deadline_s=s["request_deadline_seconds"],
            max_wait_s=s["max_wait_seconds"],
            max_redirects=s["max_redirects"],
            max_stream_bytes=int(s["max_stream_mb"] * MIB),
        ),
    )


def iter_records(
    client: ApiClient,
    path: str,
    params: dict[str, Any],
    pagination: Pagination,
    records_path: str | None,
    endpoint: str | None = None,
    headers: dict[str, str] | None = None,
) -> Iterator[Any]:
    """Every record of a (small) listing, page after page: the sensors' polls and look-ups.
    ``headers``: the request headers of the endpoint (`request_headers`).

    Raises the HTTP core's `ApiError` when the API cannot be read completely.
    """
    stream = client.fetch_pages(
        path,
        params={**pagination.size_params(), **params},
        paginator=pagination.build(client.source or ""),
        records_path=records_path,
        on_total_mismatch="warn",
        endpoint=endpoint,
        headers=headers,
    )
    for page in stream:
        yield from page.records


def discover_keys(
    client: ApiClient, discovery: DiscoverySpec, endpoint: str | None = None,
    headers: dict[str, str] | None = None,
) -> list[str]:
    """The entity keys (e.g. repository names) a dynamic partitioning's discovery lists."""
    keys: list[str] = []
    steps = compile_path(discovery.key_field)
    for record in iter_records(
        client, discovery.path, dict(discovery.params), discovery.pagination,
        discovery.records_path, endpoint, headers,
    ):
        key = find(record, steps, default=None)
        if key is not None and str(key) not in keys:
            keys.append(str(key))
    return keys


# --------------------------------------------------------------------------- requests

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




_PERIODS = {"hourly": timedelta(hours=1), "daily": timedelta(days=1), "weekly": timedelta(days=7)}
_KEY_FORMATS = {"hourly": "%Y-%m-%d-%H:%M", "daily": "%Y-%m-%d", "weekly": "%Y-%m-%d",
                "monthly": "%Y-%m-%d"}


def _first_boundary(spec: TimePartitioning, at: dt.datetime) -> dt.datetime:
    """The first partition start at or after ``at`` (a local, naive wall time)."""
    if spec.type == "hourly":
        first = at.replace(minute=spec.minute_offset, second=0, microsecond=0)
        return first if first >= at else first + timedelta(hours=1)
    first = at.replace(hour=spec.hour_offset, minute=spec.minute_offset, second=0, microsecond=0)
    if spec.type == "monthly":
        first = first.replace(day=spec.day_offset or 1)
        return first if first >= at else _add_month(first)
    if spec.type == "weekly":  # day_offset: 0 = Sunday
        ahead = ((spec.day_offset or 0) - (first.isoweekday() % 7)) % 7
        first += timedelta(days=ahead)
        return first if first >= at else first + timedelta(days=7)
    return first if first >= at else first + timedelta(days=1)


def _add_month(value: dt.datetime) -> dt.datetime:
    year, month = divmod(value.month, 12)
    return value.replace(year=value.year + year, month=month + 1)


def time_windows(
    spec: TimePartitioning, start: dt.datetime, end: dt.datetime
) -> list[tuple[str, dt.datetime, dt.datetime]]:
    """``(key, start, end)`` (UTC) of every time partition of ``spec`` inside ``[start, end)``.

    The same windows and keys as the Dagster partitions (``partitions.time_partitions_def``):
    wall-clock periods in the partitioning's timezone, from its ``start``, with its offsets.
    """
    zone = ZoneInfo(spec.timezone)
    lowest = max(dt.datetime.fromisoformat(spec.start).replace(tzinfo=None),
                 start.astimezone(zone).replace(tzinfo=None))
    upper = end.astimezone(zone).replace(tzinfo=None)
    if spec.end:
        upper = min(upper, dt.datetime.fromisoformat(spec.end).replace(tzinfo=None))
    out: list[tuple[str, dt.datetime, dt.datetime]] = []
    at = _first_boundary(spec, lowest)
    while True:
        nxt = _add_month(at) if spec.type == "monthly" else at + _PERIODS[spec.type]
        if nxt > upper:
            return out
        out.append((at.strftime(_KEY_FORMATS[spec.type]),
                    at.replace(tzinfo=zone).astimezone(dt.timezone.utc),
                    nxt.replace(tzinfo=zone).astimezone(dt.timezone.utc)))
        at = nxt


# --------------------------------------------------------------------------- changes

def to_utc(value: Any) -> dt.datetime | None:
    """A record's timestamp as an aware UTC datetime: ISO strings, unix seconds or milliseconds."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) > 1e11 else value
        return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return to_utc(int(text))
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)).astimezone(dt.timezone.utc)


@dataclass
class Watermark:
    """The incremental sensor's cursor: newest update seen, and what was seen in the overlap.

    ``seen`` maps record identity -> its update time (ISO, dt.timezone.utc) for records updated within the
    overlap before the watermark; re-reading the overlap then requests only records that are
    new or changed again, never the same change twice.
    """

    watermark: dt.datetime
    seen: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_cursor(cls, cursor: str | None) -> Watermark | None:
        if not cursor:
            return None
        data = json.loads(cursor)
        return cls(to_utc(data["watermark"]), dict(data.get("seen", {})))

    def to_cursor(self) -> str:
        return json.dumps(
            {"watermark": self.watermark.isoformat(), "seen": self.seen}, sort_keys=True
        )



# --------------------------------------------------------------------------- the table

REPEATED_RECORDS_METADATA_KEY = "drift/repeated_records_dropped"


def window_guard(endpoint: Endpoint, window: Any) -> Any:
    """The window guard of one time partition ``(start, end)`` (None when there is no window
    or no record field to read the time from; the `window` check then says so)."""
    if window is None or endpoint.window is None or endpoint.window_field is None:
        return None
    return WindowGuard(
        start=window[0], end=window[1], field=endpoint.window_field,
        tolerance=timedelta(seconds=endpoint.window.tolerance_seconds),
        policy=endpoint.window.out_of_window, key_fields=endpoint.primary_key,
    )


def pages_can_shift(endpoint: Endpoint) -> bool:
    """Whether a record can arrive twice unnoticed: offset or page-number pagination with no
    declared total. (With a total, the HTTP core fails the fetch when the total drifts;
    cursors, keysets and links do not shift.)"""
    p = endpoint.pagination
    if isinstance(p, OffsetPagination):
        return p.total_path is None
    if isinstance(p, PageNumberPagination):
        return p.total_path is None and p.total_pages_path is None
    return False


def drop_repeated_records(
    pages: Iterable[list[Any]], primary_key: Sequence[str], metadata: dict[str, Any]
) -> Iterator[list[Any]]:
    """Keep the first copy of each primary key in a partition; count the repeats.

    Offset and page-number pages shift when the API inserts or deletes records during the
    fetch, so a record can arrive twice. The count (the drift) is reported on the
    materialization as ``drift/repeated_records_dropped`` once the pages are consumed.
    """
    seen: set[Any] = set()
    dropped = 0
    single = primary_key[0] if len(primary_key) == 1 else None  # no tuple per record
    for records in pages:
        kept = []
        for record in records:
            if not isinstance(record, dict):
                key = None
            elif single is not None:
                key = record.get(single)
            else:
                key = tuple(record.get(f) for f in primary_key)
            if key is not None and key in seen:
                dropped += 1
                continue
            if key is not None:
                seen.add(key)
            kept.append(record)
        yield kept
    metadata[REPEATED_RECORDS_METADATA_KEY] = dropped


def record_model(endpoint: Endpoint) -> type | None:
    """The pydantic model named by ``model:`` (imported when a run needs it)."""
    if endpoint.model is None:
        return None
    return load_object(endpoint.model, base=BaseModel, kind="record model")




def table_normalizer(endpoint: Endpoint, window: Any) -> Normalizer:
    """The normalizer of one partition of an endpoint's table (``window``: the time window
    ``(start, end)`` of a time partition, else None). Records failing the contract become
    dead letters; the window guard applies the endpoint's ``window`` rules."""
    return Normalizer(
        schema=endpoint.schema_,
        timestamp_fields=endpoint.timestamp_fields,
        nested=endpoint.nested,
        # The contract: records failing it become dead letters, stored beside the
        # partition and counted by the `contract` check (checks.py).
        required=[*endpoint.primary_key, *endpoint.required],
        model=record_model(endpoint),
        extra_fields=endpoint.extra_fields,
        dead_letters=DeadLetters(),
        window=window_guard(endpoint, window),
    )


def json_page_path(endpoint: Endpoint) -> tuple[str, ...] | None:
    """The records path when an endpoint's table is read from the page bytes (`JsonPage`).

    That is a JSON body with the records under object keys, and nothing that needs the
    records as Python objects on the table's side: masked columns, dropped repeats, a model,
    the JSON column of extra fields or a declared ``json`` column. None otherwise.
    """
    if (endpoint.format != "json" or endpoint.mask_columns or pages_can_shift(endpoint)
            or endpoint.model is not None or endpoint.extra_fields != "columns"
            or any(parse_type(t) == "json" for t in (endpoint.schema_ or {}).values())):
        return None
    steps = records_steps(endpoint.records_path)
    if isinstance(steps, RootSteps) or not steps or not all(isinstance(s, str) for s in steps):
        return None
    return tuple(steps)


def table_page(page: Any, path: tuple[str, ...] | None, records_path: str | None) -> Any:
    """What the table's normalizer gets of a fetched page: its records, or (``path`` from
    `json_page_path`, a UTF-8 body) a `JsonPage` of its bytes, so that the records can go as
    soon as the fetch has counted them."""
    body = page.body
    content_type = content_type_of(page.headers)
    if path is None or body[:3] == b"\xef\xbb\xbf" or charset_of(content_type) not in (
        None, "utf-8", "utf8"
    ):
        return page.records
    return JsonPage(body, path, len(page.records),
                    lambda: records_of_page(body, records_path, content_type))


def mask_columns(pages, columns: list[str]):
    """Record pages with the named fields (dotted for nested ones) replaced by ``***``.

    An endpoint's ``mask_columns``: for fields that hold credentials or personal data the
    table should not keep. The raw pages keep what the API sent.
    """
    paths = [c.split(".") for c in columns]
    for records in pages:
        for record in records:
            for path in paths:
                _mask_path(record, path)
        yield records


def _mask_path(node: Any, path: list[str]) -> None:
    for step in path[:-1]:
        if not isinstance(node, dict):
            return
        node = node.get(step)
    if isinstance(node, dict) and node.get(path[-1]) is not None:
        node[path[-1]] = MASK
