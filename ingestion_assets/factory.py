"""Endpoint spec -> Dagster assets: ``raw/<source>/<endpoint>`` and ``<source>/<endpoint>``.

The raw asset fetches a partition's window through the source's `ApiResource` and hands the
page stream to the raw-response IO manager, which archives every page as received. The table
asset re-reads those stored pages, normalizes the records into Arrow batches and hands them to
the Parquet IO manager. Neither step holds a whole partition in memory.

A single-run backfill of many time partitions reaches each asset once with all the partition
keys; the assets then return a mapping of partition key -> lazy stream, and the IO managers
write each partition separately (and atomically).
"""


import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import dagster as dg

from ingestion_assets.http.errors import ApiError
from ingestion_assets.http.redaction import redact_text
from ingestion_assets.partitions import (
    PartitionKeyError,
    partition_dimension,
    partition_request,
    partitions_def,
)
from ingestion_assets.specs import (
    Endpoint,
    MissingSecretError,
    OffsetPagination,
    PageNumberPagination,
    Source,
    TimePartitioning,
)
from ingestion_assets.translation import (
    DEFAULT_TRANSLATOR,
    EndpointSpecData,
    IngestionTranslator,
)

RAW_IO_MANAGER_KEY = "raw_io_manager"
PARQUET_IO_MANAGER_KEY = "parquet_io_manager"


def api_resource_key(source: Source) -> str:
    return f"api_{source.name}"


def pool_name(source: Source) -> str:
    """One Dagster pool per source, so concurrent runs against one API can be capped."""
    return f"api_{source.name}"


def raw_asset_key(
    source: Source, endpoint: Endpoint, translator: IngestionTranslator | None = None
) -> dg.AssetKey:
    """``raw/<source>/<endpoint>``, or what the translator makes of it."""
    return endpoint_specs(source, endpoint, translator)[0].key


def table_asset_key(
    source: Source, endpoint: Endpoint, translator: IngestionTranslator | None = None
) -> dg.AssetKey:
    """``<source>/<endpoint>``, or what the translator makes of it."""
    return endpoint_specs(source, endpoint, translator)[1].key


def endpoint_specs(
    source: Source, endpoint: Endpoint, translator: IngestionTranslator | None = None
) -> tuple[dg.AssetSpec, dg.AssetSpec]:
    """The raw and table specs of an endpoint, each passed through the translator once."""
    from ingestion_assets.checks import freshness_policy

    translate = (translator or DEFAULT_TRANSLATOR).get_asset_spec
    description = endpoint.description or f"{source.name} {endpoint.path}"
    common: dict[str, Any] = dict(
        group_name=source.name, owners=source.owners, tags=_tags(source, endpoint),
        metadata=_common_metadata(source, endpoint),
    )
    raw = translate(EndpointSpecData(source, endpoint, "raw", dg.AssetSpec(
        key=dg.AssetKey(["raw", source.name, endpoint.name]),
        description=f"Every page of {description}, exactly as the API sent it.",
        kinds={"api"}, **common,
    )))
    table = translate(EndpointSpecData(source, endpoint, "table", dg.AssetSpec(
        key=dg.AssetKey([source.name, endpoint.name]),
        deps=[raw.key],
        description=f"{description}: one typed row per record.",
        kinds={"parquet"},
        freshness_policy=freshness_policy(endpoint),  # from `freshness:` (checks.py)
        # The table follows its raw asset on its own, for every partition (not only the
        # latest): a raw partition materialized alone, by hand or a backfill, brings its table.
        automation_condition=dg.AutomationCondition.eager().without(
            dg.AutomationCondition.in_latest_time_window()
        ),
        **common,
    )))
    return raw, table


def _spec_args(spec: dg.AssetSpec) -> dict[str, Any]:
    """The translated attributes of a spec, as keyword arguments of `dg.asset`."""
    return dict(
        key=spec.key, description=spec.description, group_name=spec.group_name,
        owners=spec.owners, kinds=spec.kinds, metadata=spec.metadata,
        tags={k: v for k, v in spec.tags.items() if not k.startswith("dagster/kind/")},
        automation_condition=spec.automation_condition,
    )


def raw_retry_policy(source: Source) -> dg.RetryPolicy | None:
    """Op retries of the raw asset, for errors the HTTP core classifies as transient.

    Only transient errors (5xx or 429 after the client's own budget, dropped connections,
    timeouts, error bodies) reach this policy: permanent ones (401 after a refresh, 404, a
    pagination loop, a missing secret) become `dg.Failure(allow_retries=False)`, which Dagster
    does not retry. The source's ``retry.op_retries`` / ``op_retry_delay_seconds`` set it;
    ``$INGESTION_OP_RETRY_DELAY_SECONDS`` overrides the delay.
    """
    if source.retry.op_retries == 0:
        return None
    delay = float(
        os.environ.get("INGESTION_OP_RETRY_DELAY_SECONDS") or source.retry.op_retry_delay_seconds
    )
    return dg.RetryPolicy(
        max_retries=source.retry.op_retries, delay=delay, backoff=dg.Backoff.EXPONENTIAL
    )


def _no_retry(exc: Exception) -> dg.Failure:
    return dg.Failure(
        description=redact_text(f"{exc} (permanent: not retried)"), allow_retries=False,
        metadata={"error/type": type(exc).__name__},
    )


class RetryClassifiedPages:
    """A page stream whose permanent errors fail the step without op retries.

    The pages are pulled by the raw IO manager, so the error surfaces there (inside the step,
    where the retry policy applies); ``stats`` and other attributes come from the stream.
    """

    def __init__(self, stream: Any):
        self._stream = stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self._stream
        except ApiError as exc:
            if exc.transient:
                raise
            raise _no_retry(exc) from exc
        except MissingSecretError as exc:
            raise _no_retry(exc) from exc


def _partition_keys(context: dg.AssetExecutionContext) -> list[str | None]:
    if not context.has_partition_key and not context.has_partition_key_range:
        return [None]
    return list(context.partition_keys)


def _per_partition(keys: list[str | None], make: Any) -> Any:
    """One stream for a single partition, or a mapping key -> stream for a range.

    The streams are lazy (nothing is fetched or parsed until the IO manager iterates them),
    so a 60-partition backfill still holds one page at a time.
    """
    if len(keys) == 1:
        return make(keys[0])
    return {key: make(key) for key in keys}


def _common_metadata(source: Source, endpoint: Endpoint) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "ingestion/source": source.name,
        "ingestion/endpoint": endpoint.name,
        "ingestion/path": endpoint.path,
        "ingestion/primary_key": ",".join(endpoint.primary_key),
    }
    dim = partition_dimension(endpoint)
    if dim:
        meta["ingestion/partition_dimension"] = dim
    return meta


def _tags(source: Source, endpoint: Endpoint) -> dict[str, str]:
    return {**source.tags, **endpoint.tags}


def endpoint_assets(
    source: Source, endpoint: Endpoint, translator: IngestionTranslator | None = None
) -> list[dg.AssetsDefinition]:
    """The raw asset and the table asset of one endpoint."""
    from ingestion_assets.checks import time_columns
    from ingestion_assets.normalize import DeadLetters, Normalizer, RecordBatchStream
    from ingestion_assets.resources import ApiResource, records_of_page
    from ingestion_assets.safe_metadata import mask_columns

    pdef = partitions_def(source, endpoint)
    backfill = (
        dg.BackfillPolicy.single_run()
        if isinstance(endpoint.partitioning, TimePartitioning)
        else None
    )
    resource_key = api_resource_key(source)
    raw_spec, table_spec = endpoint_specs(source, endpoint, translator)

    @dg.asset(
        **_spec_args(raw_spec),
        partitions_def=pdef,
        backfill_policy=backfill,
        io_manager_key=RAW_IO_MANAGER_KEY,
        required_resource_keys={resource_key},
        pool=pool_name(source),
        retry_policy=raw_retry_policy(source),
    )
    def raw_asset(context: dg.AssetExecutionContext):
        api: ApiResource = getattr(context.resources, resource_key)

        def fetch(key: str | None):
            request = partition_request(endpoint, pdef, key)
            context.log.info(
                f"fetching {source.name} {request.path} for partition {key or '(snapshot)'}"
            )
            try:
                return RetryClassifiedPages(api.fetch_pages(endpoint, request))
            except (MissingSecretError, PartitionKeyError) as exc:
                raise _no_retry(exc) from exc

        return _per_partition(_partition_keys(context), fetch)

    @dg.asset(
        **_spec_args(table_spec),
        partitions_def=pdef,
        backfill_policy=backfill,
        io_manager_key=PARQUET_IO_MANAGER_KEY,
        ins={"raw": dg.AssetIn(key=raw_spec.key)},
        freshness_policy=table_spec.freshness_policy,
    )
    def table_asset(context: dg.AssetExecutionContext, raw: Any):
        # One RawPartition, or a RawPartitionSet when a single run covers a range.
        stored = {p.partition_key: p for p in raw} if isinstance(raw, Sequence) else None

        def normalize(key: str | None) -> RecordBatchStream:
            partition = stored[key] if stored is not None else raw
            pages = (
                records_of_page(body, endpoint.records_path)
                for _, body in partition.iter_pages()
            )
            normalizer = Normalizer(
                schema=endpoint.schema_,
                timestamp_fields=endpoint.timestamp_fields,
                nested=endpoint.nested,
                # The contract: records failing it become dead letters, stored beside the
                # partition and counted by the `contract` check (checks.py).
                required=[*endpoint.primary_key, *endpoint.required],
                model=_record_model(endpoint),
                extra_fields=endpoint.extra_fields,
                dead_letters=DeadLetters(),
                window=window_guard(endpoint, partition_request(endpoint, pdef, key).window),
            )
            metadata: dict[str, Any] = {}
            if endpoint.mask_columns:  # the table does not keep these (the raw pages do)
                pages = mask_columns(pages, endpoint.mask_columns)
            if pages_can_shift(endpoint):
                pages = drop_repeated_records(pages, endpoint.primary_key, metadata)
            return RecordBatchStream.from_pages(
                pages, normalizer, source=source.name, endpoint=endpoint.name,
                time_columns=time_columns(endpoint), metadata=metadata,
            )

        return _per_partition(_partition_keys(context), normalize)

    return [raw_asset, table_asset]


REPEATED_RECORDS_METADATA_KEY = "drift/repeated_records_dropped"


def window_guard(endpoint: Endpoint, window: Any) -> Any:
    """The window guard of one time partition ``(start, end)`` (None when there is no window
    or no record field to read the time from; the `window` check then says so)."""
    from datetime import timedelta

    from ingestion_assets.normalize import WindowGuard

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


def _record_model(endpoint: Endpoint) -> type | None:
    """The pydantic model named by ``model:`` (imported when a run needs it)."""
    if endpoint.model is None:
        return None
    from pydantic import BaseModel

    from ingestion_assets.http.plugins import load_object

    return load_object(endpoint.model, base=BaseModel, kind="record model")


def build_assets(
    sources: list[Source], translator: IngestionTranslator | None = None
) -> list[dg.AssetsDefinition]:
    with warnings.catch_warnings():
        # backfill_policy is marked beta; we rely on it knowingly (single-run backfills).
        warnings.simplefilter("ignore", dg.BetaWarning)
        return [
            a for s in sources for e in s.endpoints for a in endpoint_assets(s, e, translator)
        ]
