"""Spooled webhook events as Dagster assets, and the sensor that turns them into runs.

Per endpoint declaring ``webhook:``:

- ``raw/<source>/<endpoint>_events``: every event body exactly as received, one "page" per
  event, through the raw-response IO manager (same storage as pulled pages);
- ``<source>/<endpoint>_events``: one typed row per event (id, type, times, the changed
  object as JSON), through the Parquet IO manager;
- a sensor ``<source>_<endpoint>_webhook_events`` that requests the hours holding events
  stored since its cursor (the spool's sequence number).

Both assets are hourly partitioned by event time. A run of hour H reads every spooled event
of H, so a partition is always replaced whole: an event arriving late, or twice, or a
re-run, never doubles a row. Receiver lag and backlog are metadata on each
materialization.
"""


import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import dagster as dg
import orjson

from ingestion_assets.factory import (
    PARQUET_IO_MANAGER_KEY,
    RAW_IO_MANAGER_KEY,
    raw_asset_key,
    table_asset_key,
)
from ingestion_assets.freshness import freshness_policy
from ingestion_assets.specs import Endpoint, Source, TimePartitioning, WebhookSpec
from ingestion_assets.translation import (
    DEFAULT_TRANSLATOR,
    EndpointSpecData,
    IngestionTranslator,
)
from ingestion_assets.webhooks.app import as_epoch, dotted
from ingestion_assets.webhooks.spool import Spool, default_spool_path

SPOOL_RESOURCE_KEY = "webhook_spool"
EVENTS_SUFFIX = "_events"

#: The columns of an events table.
EVENT_SCHEMA = {
    "event_id": "string", "event_type": "string", "event_time": "timestamp",
    "received_at": "timestamp", "object_id": "string", "object": "string",
}


class WebhookSpoolResource(dg.ConfigurableResource):
    """Where the webhook receiver spools events (a local SQLite file)."""

    path: str

    def spool(self) -> Spool:
        return Spool(self.path)


def default_spool_resource() -> WebhookSpoolResource:
    return WebhookSpoolResource(path=str(default_spool_path()))


def events_keys(
    source: Source, endpoint: Endpoint, translator: IngestionTranslator | None = None
) -> tuple[dg.AssetKey, dg.AssetKey]:
    """The keys of the raw and the table events assets (``raw/<source>/<endpoint>_events``,
    ``<source>/<endpoint>_events``), or what the translator makes of them."""
    raw, table = events_specs(source, endpoint, translator)
    return raw.key, table.key


def events_partitions_def(spec: WebhookSpec) -> dg.HourlyPartitionsDefinition:
    start = datetime.fromisoformat(spec.start)
    # end_offset=1: the current hour is a partition too, so events land while it runs.
    return dg.HourlyPartitionsDefinition(start_date=start, end_offset=1)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat()


@dataclass
class _EventPage:
    """One spooled event in the shape the raw IO manager stores (a page of one record)."""

    index: int
    url: str
    body: bytes
    records: list[Any]
    fetched_at: datetime
    headers: dict[str, Any]
    params: None = None
    status: int = 200


@dataclass
class _EventPages:
    spool: Spool
    source: str
    endpoint: str
    hour: str
    stats: Any = None
    seen: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[_EventPage]:
        url = f"/webhooks/{self.source}/{self.endpoint}"
        for index, event in enumerate(self.spool.iter_events(self.source, self.endpoint,
                                                             self.hour)):
            try:
                record = orjson.loads(event.body)
            except orjson.JSONDecodeError:  # the receiver stores only JSON; be safe anyway
                record = None
            yield _EventPage(
                index=index, url=url, body=event.body,
                records=[record] if record is not None else [],
                fetched_at=datetime.fromtimestamp(event.received_at, tz=timezone.utc),
                headers={"event-id": event.event_id, "event-type": event.event_type,
                         "event-time": _iso(event.event_time), "spool-seq": event.seq},
            )


def _object_id(obj: Any) -> str | None:
    if isinstance(obj, dict):
        for name in ("id", "number", "admin_graphql_api_id"):
            if obj.get(name) is not None:
                return str(obj[name])
    return None


def _event_rows(pages: Iterator[tuple[dict[str, Any], bytes]], spec: WebhookSpec,
                seen: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    """Stored event pages -> table rows; records the highest spool seq and newest receipt."""
    for page, body in pages:
        headers = page.get("headers") or {}
        payload = orjson.loads(body)
        obj = dotted(payload, spec.object_path) if spec.object_path else payload
        seen["max_seq"] = max(seen.get("max_seq", 0), int(headers.get("spool-seq") or 0))
        received = page.get("fetched_at")
        if received and received > seen.get("newest_received", ""):
            seen["newest_received"] = received
        yield [{
            "event_id": headers.get("event-id"),
            "event_type": headers.get("event-type"),
            "event_time": headers.get("event-time"),
            "received_at": received,
            "object_id": _object_id(obj),
            "object": orjson.dumps(obj).decode(),
        }]


def _receiver_metadata(spool: Spool, source: Source, endpoint: Endpoint,
                       newest_received: str | None) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    meta: dict[str, Any] = {"webhooks/backlog": spool.backlog(source.name, endpoint.name)}
    if newest_received:
        lag = (now - datetime.fromisoformat(newest_received)).total_seconds()
        meta["webhooks/lag_seconds"] = round(max(lag, 0.0), 3)
        meta["webhooks/newest_received_at"] = newest_received
    return meta


def events_specs(
    source: Source, endpoint: Endpoint, translator: IngestionTranslator | None = None
) -> tuple[dg.AssetSpec, dg.AssetSpec]:
    """The raw and table specs of an endpoint's webhook events, each passed through the
    translator once (roles ``events_raw`` and ``events_table``), as pulled endpoints' are."""
    translate = (translator or DEFAULT_TRANSLATOR).get_asset_spec
    spec = endpoint.webhook
    assert spec is not None
    name = name_of(source, endpoint)
    common: dict[str, Any] = dict(
        group_name=source.name, owners=source.owners,
        tags={**source.tags, **endpoint.tags, "ingestion/mode": "push"},
        metadata={
            "ingestion/source": source.name,
            "ingestion/endpoint": endpoint.name + EVENTS_SUFFIX,
            "ingestion/primary_key": "event_id",
            "ingestion/partition_dimension": "hour",
            "webhooks/route": f"POST /webhooks/{source.name}/{endpoint.name}",
            "webhooks/signature_style": spec.style,
        },
        partitions_def=events_partitions_def(spec),
    )
    raw = translate(EndpointSpecData(source, endpoint, "events_raw", dg.AssetSpec(
        key=dg.AssetKey(["raw", source.name, endpoint.name + EVENTS_SUFFIX]),
        description=f"Every webhook event of {name}, exactly as received and verified.",
        kinds={"webhook"}, **common,
    )))
    table = translate(EndpointSpecData(source, endpoint, "events_table", dg.AssetSpec(
        key=dg.AssetKey([source.name, endpoint.name + EVENTS_SUFFIX]),
        deps=[raw.key],
        description=f"Webhook events of {name}: one row per event (deduplicated by id).",
        kinds={"parquet"},
        freshness_policy=(
            freshness_policy(endpoint.model_copy(update={"freshness": spec.freshness}))
            if spec.freshness else None
        ),
        **common,
    )))
    return raw, table


def webhook_events_assets(
    source: Source, endpoint: Endpoint, translator: IngestionTranslator | None = None
) -> list[dg.AssetsDefinition]:
    """The raw and table events assets of one endpoint declaring ``webhook:``."""
    raw_spec, table_spec = events_specs(source, endpoint, translator)
    # Local work only (spool and storage): a failure is retried twice, a few seconds apart.
    retry = dg.RetryPolicy(max_retries=2, delay=5)

    @dg.multi_asset(
        name=raw_spec.key.to_python_identifier(),
        specs=[raw_spec.with_io_manager_key(RAW_IO_MANAGER_KEY)],
        required_resource_keys={SPOOL_RESOURCE_KEY}, retry_policy=retry,
    )
    def raw_events(context: dg.AssetExecutionContext):
        spool: Spool = getattr(context.resources, SPOOL_RESOURCE_KEY).spool()
        hour = context.partition_key
        context.add_output_metadata(
            {"webhooks/backlog": spool.backlog(source.name, endpoint.name)}
        )
        return _EventPages(spool, source.name, endpoint.name, hour)

    @dg.multi_asset(
        name=table_spec.key.to_python_identifier(),
        specs=[table_spec.with_io_manager_key(PARQUET_IO_MANAGER_KEY)],
        ins={"raw": dg.AssetIn(key=raw_spec.key)},
        required_resource_keys={SPOOL_RESOURCE_KEY}, retry_policy=retry,
    )
    def events_table(context: dg.AssetExecutionContext, raw: Any):
        spool: Spool = getattr(context.resources, SPOOL_RESOURCE_KEY).spool()
        return _events_stream(spool, source, endpoint, context.partition_key, raw)

    return [raw_events, events_table]


def _events_stream(spool: Spool, source: Source, endpoint: Endpoint, hour: str, raw: Any) -> Any:
    """The typed rows of one hour's stored events; once read, the hour's events are marked
    committed in the spool and the receiver's lag and backlog are added as metadata."""
    from ingestion_assets.normalize import DeadLetters, Normalizer, RecordBatchStream

    spec = endpoint.webhook
    assert spec is not None
    seen: dict[str, Any] = {}
    extra: dict[str, Any] = {}

    def pages() -> Iterator[list[dict[str, Any]]]:
        yield from _event_rows(raw.iter_pages(), spec, seen)
        if seen.get("max_seq"):
            spool.mark_committed(source.name, endpoint.name, hour, seen["max_seq"])
        extra.update(_receiver_metadata(spool, source, endpoint, seen.get("newest_received")))

    normalizer = Normalizer(
        schema=EVENT_SCHEMA, timestamp_fields=["event_time", "received_at"],
        required=["event_id"], dead_letters=DeadLetters(),
    )
    return RecordBatchStream.from_pages(
        pages(), normalizer, source=source.name, endpoint=endpoint.name + EVENTS_SUFFIX,
        time_columns=["event_time"], metadata=extra,
    )


def _pull_partition_keys(source: Source, endpoint: Endpoint, spool: Spool, after: int,
                         upto: int) -> set[str]:
    """The pull partitions (daily/hourly, by the object's first timestamp field) that the
    events stored in ``(after, upto]`` touch."""
    from ingestion_assets.partitions import partitions_def

    spec = endpoint.webhook
    pdef = partitions_def(source, endpoint)
    fields = endpoint.record_time_fields
    if spec is None or not fields or not isinstance(endpoint.partitioning, TimePartitioning):
        return set()

    keys: set[str] = set()
    for event in spool.iter_since(source.name, endpoint.name, after, upto):
        payload = orjson.loads(event.body)
        obj = dotted(payload, spec.object_path) if spec.object_path else payload
        when = as_epoch(obj.get(fields[0])) if isinstance(obj, dict) else None
        if when is None:
            continue
        try:
            keys.add(pdef.get_partition_key_for_timestamp(when))  # type: ignore[union-attr]
        except Exception:  # before the first or after the last partition
            continue
    return keys


def webhook_events_sensor(
    source: Source, endpoint: Endpoint, translator: IngestionTranslator | None = None
) -> dg.SensorDefinition:
    """Requests the hours whose spooled events changed since the sensor's cursor."""
    spec = endpoint.webhook
    assert spec is not None
    pdef = events_partitions_def(spec)
    raw_key, table_key = events_keys(source, endpoint, translator)
    pull_keys = [raw_asset_key(source, endpoint, translator),
                 table_asset_key(source, endpoint, translator)]
    selection = [raw_key, table_key]
    if spec.request_pull_partition:
        selection += pull_keys
    first = pdef.get_first_partition_key()

    @dg.sensor(
        name=f"{source.name}_{endpoint.name}_webhook_events",
        description=f"Materializes the hours of {source.name}/{endpoint.name} webhook events "
        "stored since the last tick.",
        asset_selection=selection,
        minimum_interval_seconds=spec.poll_interval_seconds,
        default_status=(dg.DefaultSensorStatus.RUNNING if spec.running
                        else dg.DefaultSensorStatus.STOPPED),
        required_resource_keys={SPOOL_RESOURCE_KEY},
    )
    def sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        spool: Spool = getattr(context.resources, SPOOL_RESOURCE_KEY).spool()
        state = json.loads(context.cursor) if context.cursor else {"seq": 0, "waiting": []}
        hours, top = spool.changed_hours(source.name, endpoint.name, int(state["seq"]))
        last = pdef.get_last_partition_key()
        ready, waiting, early = [], [], []
        for hour in sorted(set(hours) | set(state.get("waiting", []))):
            if first is not None and hour < first:
                early.append(hour)
            elif last is None or hour > last:
                waiting.append(hour)  # an hour that is not a partition yet (clock skew)
            else:
                ready.append(hour)
        if early:
            context.log.warning(
                f"{source.name}/{endpoint.name}: events dated before the first partition "
                f"({first}) stay in the spool only: hours {early[:5]}"
            )
        requests = [
            dg.RunRequest(run_key=f"{hour}@{top}", partition_key=hour,
                          asset_selection=[raw_key, table_key])
            for hour in ready
        ]
        if spec.request_pull_partition and top > int(state["seq"]):
            touched = _pull_partition_keys(source, endpoint, spool, int(state["seq"]), top)
            requests += [
                dg.RunRequest(run_key=f"pull:{key}@{top}", partition_key=key,
                              asset_selection=pull_keys)
                for key in sorted(touched)
            ]
        cursor = json.dumps({"seq": top, "waiting": waiting})
        if not requests:
            return dg.SensorResult(
                skip_reason=f"no new {name_of(source, endpoint)} events", cursor=cursor
            )
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    return sensor


def name_of(source: Source, endpoint: Endpoint) -> str:
    return f"{source.name}/{endpoint.name}"


def webhook_endpoints(sources: list[Source]) -> list[tuple[Source, Endpoint]]:
    return [(s, e) for s in sources for e in s.endpoints if e.webhook is not None]


def build_webhook_assets(
    sources: list[Source], translator: IngestionTranslator | None = None
) -> list[dg.AssetsDefinition]:
    return [
        a for s, e in webhook_endpoints(sources) for a in webhook_events_assets(s, e, translator)
    ]


def build_webhook_sensors(
    sources: list[Source], translator: IngestionTranslator | None = None
) -> list[dg.SensorDefinition]:
    return [webhook_events_sensor(s, e, translator) for s, e in webhook_endpoints(sources)]

