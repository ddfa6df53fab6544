"""Endpoint spec -> Dagster assets: ``raw/<source>/<endpoint>`` and ``<source>/<endpoint>``.

The raw asset fetches a partition's window through the source's `ApiResource` and hands the
page stream to the raw-response IO manager, which archives every page as received. The table
asset re-reads those stored pages, normalizes the records into Arrow batches and hands them to
the Parquet IO manager. Neither step holds a whole partition in memory.

A single-run backfill of many time partitions reaches each asset once with all the partition
keys; the assets then return a mapping of partition key -> lazy stream, and the IO managers
write each partition separately (and atomically).
"""


import warnings
from collections.abc import Sequence
from typing import Any

import dagster as dg

from ingestion_assets.partitions import (
    partition_dimension,
    partition_request,
    partitions_def,
)
from ingestion_assets.specs import Endpoint, Source, TimePartitioning

RAW_IO_MANAGER_KEY = "raw_io_manager"
PARQUET_IO_MANAGER_KEY = "parquet_io_manager"


def api_resource_key(source: Source) -> str:
    return f"api_{source.name}"


def pool_name(source: Source) -> str:
    """One Dagster pool per source, so concurrent runs against one API can be capped."""
    return f"api_{source.name}"


def raw_asset_key(source: Source, endpoint: Endpoint) -> dg.AssetKey:
    return dg.AssetKey(["raw", source.name, endpoint.name])


def table_asset_key(source: Source, endpoint: Endpoint) -> dg.AssetKey:
    return dg.AssetKey([source.name, endpoint.name])


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


def endpoint_assets(source: Source, endpoint: Endpoint) -> list[dg.AssetsDefinition]:
    """The raw asset and the table asset of one endpoint."""
    from ingestion_assets.normalize import Normalizer, RecordBatchStream
    from ingestion_assets.resources import ApiResource, records_of_page

    pdef = partitions_def(source, endpoint)
    backfill = (
        dg.BackfillPolicy.single_run()
        if isinstance(endpoint.partitioning, TimePartitioning)
        else None
    )
    resource_key = api_resource_key(source)
    raw_key = raw_asset_key(source, endpoint)
    description = endpoint.description or f"{source.name} {endpoint.path}"
    metadata = _common_metadata(source, endpoint)

    @dg.asset(
        key=raw_key,
        description=f"Every page of {description}, exactly as the API sent it.",
        group_name=source.name,
        partitions_def=pdef,
        backfill_policy=backfill,
        io_manager_key=RAW_IO_MANAGER_KEY,
        required_resource_keys={resource_key},
        kinds={"api"},
        owners=source.owners,
        tags=_tags(source, endpoint),
        metadata=metadata,
        pool=pool_name(source),
    )
    def raw_asset(context: dg.AssetExecutionContext):
        api: ApiResource = getattr(context.resources, resource_key)

        def fetch(key: str | None):
            request = partition_request(endpoint, pdef, key)
            context.log.info(
                f"fetching {source.name} {request.path} for partition {key or '(snapshot)'}"
            )
            return api.fetch_pages(endpoint, request)

        return _per_partition(_partition_keys(context), fetch)

    @dg.asset(
        key=table_asset_key(source, endpoint),
        description=f"{description}: one typed row per record.",
        group_name=source.name,
        partitions_def=pdef,
        backfill_policy=backfill,
        io_manager_key=PARQUET_IO_MANAGER_KEY,
        ins={"raw": dg.AssetIn(key=raw_key)},
        kinds={"parquet"},
        owners=source.owners,
        tags=_tags(source, endpoint),
        metadata=metadata,
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
            )
            return RecordBatchStream.from_pages(
                pages, normalizer, source=source.name, endpoint=endpoint.name
            )

        return _per_partition(_partition_keys(context), normalize)

    return [raw_asset, table_asset]


def build_assets(sources: list[Source]) -> list[dg.AssetsDefinition]:
    with warnings.catch_warnings():
        # backfill_policy is marked beta; we rely on it knowingly (single-run backfills).
        warnings.simplefilter("ignore", dg.BetaWarning)
        return [a for s in sources for e in s.endpoints for a in endpoint_assets(s, e)]
