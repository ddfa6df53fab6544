"""Schedules and sensors built from the endpoint specs (``automation:`` in the YAML).

Per endpoint, each optional:

- **schedule** ``<source>__<endpoint>_schedule``: ticks ``delay_minutes`` after each time
  window closes (in the schedule's timezone, so DST moves the tick with the window) and
  requests the newest complete partition plus the ``lookback`` partitions before it.
- **incremental sensor** ``<source>__<endpoint>_changes``: asks the API for records updated
  since the watermark kept in its cursor (UTC, minus an overlap), and requests exactly the
  partitions holding changed records. The first tick only sets the watermark: history is the
  schedule's (or a backfill's) job.
- **discovery sensor** ``<source>__<endpoint>_discovery``: adds new entities (e.g. repositories)
  as dynamic partitions and requests their first runs. On its very first tick it adds the
  backlog without runs (unless ``request_runs_on_first_tick``), like the change sensor.

Every run they request runs the endpoint's one step (``factory.py``), which materializes the
raw asset and its table together.

A tick that cannot read the API raises: the UI shows the error on the tick and the cursor stays
where it was, so the next tick polls the same range again.
"""

import datetime as dt
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from ingestion_assets.endpoint_io import Watermark, to_utc  # noqa: F401 - public here too
from ingestion_assets.factory import api_resource_key, endpoint_specs
from ingestion_assets.http.errors import ApiError
from ingestion_assets.http.jsonpath import compile_path, find
from ingestion_assets.partitions import (
    TIME_DIMENSION,
    apply_target,
    dynamic_partitions_name,
    format_instant,
    partitions_def,
)
from ingestion_assets.specs import (
    DynamicPartitioning,
    Endpoint,
    IncrementalSpec,
    MissingSecretError,
    MultiPartitioning,
    Source,
    StaticPartitioning,
    TimePartitioning,
)
from ingestion_assets.translation import IngestionTranslator

UTC = dt.timezone.utc


def schedule_name(source: Source, endpoint: Endpoint) -> str:
    return f"{source.name}__{endpoint.name}_schedule"


def changes_sensor_name(source: Source, endpoint: Endpoint) -> str:
    return f"{source.name}__{endpoint.name}_changes"


def discovery_sensor_name(source: Source, endpoint: Endpoint) -> str:
    return f"{source.name}__{endpoint.name}_discovery"


def _selection(
    source: Source, endpoint: Endpoint, translator: IngestionTranslator | None = None
) -> dg.AssetSelection:
    # The raw asset and its table (with the table's checks) in one run.
    return dg.AssetSelection.assets(*(s.key for s in endpoint_specs(source, endpoint, translator)))


def _status(running: bool) -> dg.DefaultScheduleStatus:
    return dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED


def _sensor_status(running: bool) -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED


def _time_def(pdef: dg.PartitionsDefinition | None) -> dg.TimeWindowPartitionsDefinition | None:
    if isinstance(pdef, dg.TimeWindowPartitionsDefinition):
        return pdef
    if isinstance(pdef, dg.MultiPartitionsDefinition):
        for dim in pdef.partitions_defs:
            if isinstance(dim.partitions_def, dg.TimeWindowPartitionsDefinition):
                return dim.partitions_def
    return None


def _multi_key(endpoint: Endpoint, time_key: str, static_value: str) -> dg.MultiPartitionKey:
    p = endpoint.partitioning
    assert isinstance(p, MultiPartitioning)
    return dg.MultiPartitionKey({TIME_DIMENSION[p.time.type]: time_key, p.static.dimension: static_value})


# --------------------------------------------------------------------------- schedules


def schedule_cron(tdef: dg.TimeWindowPartitionsDefinition, delay_minutes: int, kind: str) -> str:
    """The cron that ticks ``delay_minutes`` after each window of ``tdef`` closes.

    Windows close at the partitions' own cron (e.g. ``0 0 * * *``, or ``0 0 * * 1`` for weeks
    starting Monday); the delay is added in minutes and folded back into the cron fields.
    """
    minute, hour, dom, _, dow = tdef.cron_schedule.split()
    m0 = int(minute)
    h0 = 0 if hour == "*" else int(hour)
    if kind == "hourly":
        return f"{(m0 + delay_minutes) % 60} * * * *"
    total = h0 * 60 + m0 + delay_minutes
    if kind == "daily":
        total %= 1440
        return f"{total % 60} {total // 60} * * *"
    if kind == "weekly":
        total = (int(dow) * 1440 + total) % (7 * 1440)
        return f"{total % 60} {(total // 60) % 24} * * {total // 1440}"
    total += (int(dom) - 1) * 1440
    return f"{total % 60} {(total // 60) % 24} {total // 1440 + 1} * *"


def due_time_keys(
    tdef: dg.TimeWindowPartitionsDefinition, as_of: dt.datetime, lookback: int = 0
) -> list[str]:
    """The newest partition whose window ended at or before ``as_of``, and ``lookback`` before it.

    Oldest first. Partitions outside the definition's start/end are left out.
    """
    current = tdef.get_partition_key_for_timestamp(as_of.timestamp())
    start = tdef.time_window_for_partition_key(current).start
    if start.timestamp() > as_of.timestamp():  # as_of lies before the first window
        return []
    keys: list[str] = []
    for _ in range(lookback + 1):
        prev = tdef.get_prev_partition_window(start, respect_bounds=False)
        if prev is None or prev.start.timestamp() < tdef.start_timestamp:
            break
        start = prev.start
        if tdef.end_timestamp is not None and prev.end.timestamp() > tdef.end_timestamp:
            continue
        keys.append(tdef.get_partition_key_for_timestamp(prev.start.timestamp()))
    return keys[::-1]


def build_schedule(
    source: Source, endpoint: Endpoint, translator: IngestionTranslator | None = None
) -> dg.ScheduleDefinition:
    spec = endpoint.automation.schedule
    assert spec is not None
    pdef = partitions_def(source, endpoint)
    tdef = _time_def(pdef)
    time = endpoint.time_partitioning
    timezone = spec.timezone or (time.timezone if time else "UTC")
    if spec.cron:
        cron = spec.cron
    else:
        assert tdef is not None and time is not None  # enforced by the spec
        cron = schedule_cron(tdef, spec.delay_minutes, time.type)
    delay = dt.timedelta(minutes=spec.delay_minutes)
    what = (
        f"the newest {time.type} partition {spec.delay_minutes} min after its window closes"
        + (f", and the {spec.lookback} before it" if spec.lookback else "")
        if time else "every partition"
    )

    @dg.schedule(
        name=schedule_name(source, endpoint),
        cron_schedule=cron,
        execution_timezone=timezone,
        target=_selection(source, endpoint, translator),
        default_status=_status(spec.running),
        description=f"Requests {what} of {source.name}/{endpoint.name}.",
        tags={"ingestion/trigger": "schedule"},
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        tick = context.scheduled_execution_time
        keys: list[Any]
        if tdef is not None:
            time_keys = due_time_keys(tdef, tick - delay, spec.lookback)
            p = endpoint.partitioning
            if isinstance(p, MultiPartitioning):
                keys = [_multi_key(endpoint, t, v) for t in time_keys for v in p.static.values]
            else:
                keys = list(time_keys)
        elif isinstance(pdef, dg.StaticPartitionsDefinition):
            keys = list(pdef.get_partition_keys())
        elif isinstance(pdef, dg.DynamicPartitionsDefinition):
            keys = list(context.instance.get_dynamic_partitions(pdef.name))
        else:
            keys = [None]
        if not keys:
            return dg.SkipReason(f"no complete partition yet at {tick.isoformat()}")
        stamp = tick.astimezone(UTC).isoformat()
        return [
            dg.RunRequest(
                run_key=f"{k or 'snapshot'}@{stamp}",
                partition_key=k,
                tags={"ingestion/scheduled_for": stamp},
            )
            for k in keys
        ]

    return _schedule


# --------------------------------------------------------------------------- incremental sensor


class ChangePollError(RuntimeError):
    """The API could not be polled for changes; the sensor's cursor was left unchanged."""


@dataclass
class PollResult:
    state: Watermark
    since: dt.datetime
    changed: dict[Any, int]  # partition key (None: unpartitioned) -> changed records
    outside: int  # changed records in no existing partition (e.g. the open window)
    digests: dict[Any, str] = field(default_factory=dict)  # key -> hash of its changes


@dataclass(frozen=True)
class _Scope:
    """One listing to poll: the whole endpoint, or one static/dynamic key of it."""

    key: str | None
    path: str
    params: dict[str, Any]


class ChangePoller:
    """Finds the partitions of an endpoint whose records changed since a watermark."""

    def __init__(self, source: Source, endpoint: Endpoint):
        assert endpoint.automation.incremental is not None
        self.source = source
        self.endpoint = endpoint
        self.spec: IncrementalSpec = endpoint.automation.incremental
        self.pdef = partitions_def(source, endpoint)
        self.tdef = _time_def(self.pdef)
        self._pk = [compile_path(k) for k in endpoint.primary_key]
        self._updated = compile_path(self.spec.updated_field)
        self._partition = compile_path(self.spec.partition_field)

    def scopes(self, instance: dg.DagsterInstance | None) -> Iterator[_Scope]:
        base = {**self.endpoint.params, **self.spec.params}
        p = self.endpoint.partitioning
        if isinstance(p, TimePartitioning) or p.type == "none":
            yield _Scope(None, self.endpoint.path, base)
            return
        if isinstance(p, MultiPartitioning):
            target, values = p.static, p.static.values
        elif isinstance(p, StaticPartitioning):
            target, values = p, p.values
        else:
            assert isinstance(p, DynamicPartitioning) and instance is not None
            target = p
            values = instance.get_dynamic_partitions(dynamic_partitions_name(self.source, self.endpoint))
        for value in values:
            params = dict(base)
            path = apply_target(target, value, self.endpoint.path, params)
            yield _Scope(value, path, params)

    def _partition_of(self, record: Any, scope: _Scope) -> Any:
        if self.tdef is None:
            return scope.key
        ts = to_utc(find(record, self._partition, default=None))
        if ts is None:
            return None
        key = self.tdef.get_partition_key_for_timestamp(ts.timestamp())
        if not self.tdef.has_partition_key(key):
            return None  # before the start, or a window that is still open
        if scope.key is not None:
            return _multi_key(self.endpoint, key, scope.key)
        return key

    def poll(
        self, api: Any, state: Watermark | None, now: dt.datetime,
        instance: dg.DagsterInstance | None = None,
    ) -> PollResult:
        """Ask the API for records updated since the watermark minus the overlap.

        Without a previous state this is the baseline: the watermark becomes ``now`` and the
        records found are remembered as seen, but nothing counts as changed.
        """
        overlap = dt.timedelta(seconds=self.spec.overlap_seconds)
        baseline = state is None
        watermark = now if state is None else state.watermark
        since = (watermark - overlap).replace(microsecond=0)
        seen = {} if state is None else dict(state.seen)
        changed: dict[Any, int] = defaultdict(int)
        changes: dict[Any, list[str]] = defaultdict(list)
        outside = 0
        newest = watermark
        partitioned = self.pdef is not None
        for scope in self.scopes(instance):
            params = {**scope.params, self.spec.updated_since_param: format_instant(since, self.spec.format)}
            for record in api.iter_records(
                scope.path, params, self.endpoint.pagination, self.endpoint.records_path,
                self.endpoint.name,
            ):
                updated = to_utc(find(record, self._updated, default=None))
                if updated is None:
                    continue
                ident = "/".join([scope.key or ""] + [str(find(record, s)) for s in self._pk])
                stamp = updated.isoformat()
                if seen.get(ident) == stamp:
                    continue  # this very change was already handled (read again in the overlap)
                seen[ident] = stamp
                newest = max(newest, updated)
                if baseline:
                    continue
                key = self._partition_of(record, scope)
                if key is None and partitioned:
                    outside += 1
                else:
                    changed[key] += 1
                    changes[key].append(f"{ident}={stamp}")
        horizon = newest - overlap
        seen = {k: v for k, v in seen.items() if to_utc(v) >= horizon}
        digests = {
            key: hashlib.sha1("\n".join(sorted(items)).encode()).hexdigest()[:10]
            for key, items in changes.items()
        }
        return PollResult(Watermark(newest, seen), since, dict(changed), outside, digests)


def _api_sensor(source: Source, endpoint: Endpoint, name: str, spec: Any, description: str,
                translator: IngestionTranslator | None = None):
    """The decorator of a sensor that calls the source's API: polled at the spec's interval,
    running by default as the YAML says, targeting the endpoint's raw and table assets."""
    return dg.sensor(
        name=name,
        minimum_interval_seconds=spec.poll_interval_seconds,
        default_status=_sensor_status(spec.running),
        target=_selection(source, endpoint, translator),
        required_resource_keys={api_resource_key(source)},
        description=description,
    )


def build_changes_sensor(
    source: Source, endpoint: Endpoint, translator: IngestionTranslator | None = None
) -> dg.SensorDefinition:
    spec = endpoint.automation.incremental
    assert spec is not None
    resource_key = api_resource_key(source)
    name = changes_sensor_name(source, endpoint)

    @_api_sensor(
        source, endpoint, name, spec,
        f"Polls {source.name} {endpoint.path} for records updated since the watermark "
        f"({spec.updated_since_param}, overlap {spec.overlap_seconds:g} s) and requests "
        "the partitions that hold them.",
        translator,
    )
    def _sensor(context: dg.SensorEvaluationContext):
        poller = ChangePoller(source, endpoint)
        state = Watermark.from_cursor(context.cursor)
        now = dt.datetime.now(UTC)
        api = getattr(context.resources, resource_key)
        try:
            result = poller.poll(api, state, now, context.instance)
        except (ApiError, MissingSecretError) as exc:
            where = state.watermark.isoformat() if state else "(first tick)"
            raise ChangePollError(
                f"{name}: could not poll {source.name} {endpoint.path} for changes; the cursor "
                f"stays at watermark {where} and the next tick retries: {exc}"
            ) from exc
        cursor = result.state.to_cursor()
        if state is None:
            return dg.SensorResult(
                cursor=cursor,
                skip_reason=f"watching for changes from {result.state.watermark.isoformat()}",
            )
        if result.outside:
            context.log.info(
                f"{result.outside} changed record(s) fall in no complete partition yet; the "
                "schedule requests their window once it has closed"
            )
        if not result.changed:
            reason = (
                f"{result.outside} record(s) updated since {result.since.isoformat()} are in "
                "windows still open; the schedule requests them once closed"
                if result.outside else f"no records updated since {result.since.isoformat()}"
            )
            return dg.SensorResult(cursor=cursor, skip_reason=reason)
        # The watermark range and a hash of the changes in the run key: the same change (a tick
        # evaluated again) is never requested twice, while a later change of the same
        # partition, even one stamped with the same second, gets a run of its own.
        span = f"{result.since.isoformat()}..{result.state.watermark.isoformat()}"
        runs = [
            dg.RunRequest(
                run_key=f"{key or 'snapshot'}@{span}#{result.digests[key]}",
                partition_key=key,
                tags={
                    "ingestion/trigger": "changes",
                    "ingestion/changed_records": str(count),
                    "ingestion/updated_since": result.since.isoformat(),
                },
            )
            for key, count in sorted(result.changed.items(), key=lambda kv: str(kv[0]))
        ]
        return dg.SensorResult(run_requests=runs, cursor=cursor)

    return _sensor


# --------------------------------------------------------------------------- discovery sensor


def build_discovery_sensor(
    source: Source, endpoint: Endpoint, translator: IngestionTranslator | None = None
) -> dg.SensorDefinition:
    spec = endpoint.automation.discovery
    p = endpoint.partitioning
    assert spec is not None and isinstance(p, DynamicPartitioning) and p.discovery is not None
    discovery = p.discovery
    pdef = partitions_def(source, endpoint)
    assert isinstance(pdef, dg.DynamicPartitionsDefinition)
    resource_key = api_resource_key(source)
    name = discovery_sensor_name(source, endpoint)

    @_api_sensor(
        source, endpoint, name, spec,
        f"Lists {source.name} {discovery.path}, adds each new {p.dimension} as a partition "
        f"of {source.name}/{endpoint.name} and requests its first run.",
        translator,
    )
    def _sensor(context: dg.SensorEvaluationContext):
        api = getattr(context.resources, resource_key)
        try:
            found = api.discover_keys(discovery, endpoint=endpoint.name)
        except (ApiError, MissingSecretError) as exc:
            raise ChangePollError(
                f"{name}: could not list {source.name} {discovery.path}: {exc}"
            ) from exc
        existing = set(context.instance.get_dynamic_partitions(pdef.name))
        new = [k for k in found if k not in existing]
        first_tick = context.cursor is None
        # The cursor only marks that the backlog was seen: from then on, a key is new.
        cursor = context.cursor or json.dumps({"since": dt.datetime.now(UTC).isoformat()})
        if not new:
            return dg.SensorResult(
                cursor=cursor, skip_reason=f"no new {p.dimension} among {len(found)}"
            )
        request = spec.request_runs and (spec.request_runs_on_first_tick or not first_tick)
        runs = (
            [dg.RunRequest(run_key=f"first:{k}", partition_key=k,
                           tags={"ingestion/trigger": "discovery"}) for k in new]
            if request else []
        )
        skip = None
        if not runs:
            # The tick list shows why nothing ran, not only the log.
            skip = (
                f"first tick: added {len(new)} {p.dimension} partition(s) without runs; "
                "backfill them when you choose"
                if first_tick
                else f"added {len(new)} {p.dimension} partition(s); runs are not requested "
                "(request_runs: false)"
            )
            context.log.info(skip)
        return dg.SensorResult(
            run_requests=runs, cursor=cursor, skip_reason=skip,
            dynamic_partitions_requests=[pdef.build_add_request(new)],
        )

    return _sensor


# --------------------------------------------------------------------------- all of it


def build_schedules(
    sources: list[Source], translator: IngestionTranslator | None = None
) -> list[dg.ScheduleDefinition]:
    return [
        build_schedule(s, e, translator)
        for s in sources for e in s.endpoints if e.automation.schedule
    ]


def build_sensors(
    sources: list[Source], translator: IngestionTranslator | None = None
) -> list[dg.SensorDefinition]:
    sensors: list[dg.SensorDefinition] = []
    for s in sources:
        for e in s.endpoints:
            if e.automation.incremental:
                sensors.append(build_changes_sensor(s, e, translator))
            p = e.partitioning
            if e.automation.discovery and isinstance(p, DynamicPartitioning) and p.discovery:
                sensors.append(build_discovery_sensor(s, e, translator))
    return sensors
