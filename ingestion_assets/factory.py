"""Endpoint spec -> one step producing ``raw/<source>/<endpoint>`` and ``<source>/<endpoint>``.

Each endpoint is one ``multi_asset`` (one step, not subsettable): Materialize on either asset,
a backfill, a schedule or a sensor fetches, archives and normalizes in one pass. What the
step does per partition, and how a single-run backfill fetches several partitions at once
and commits each on its own, is in :mod:`ingestion_assets.endpoint_step`.

``rebuild_from_raw`` (run config of the step) rebuilds the table from the stored raw pages
without calling the API; the raw asset is then left as it is.
"""


import os
import warnings
from typing import Any

import dagster as dg
from pydantic import Field

from ingestion_assets.freshness import freshness_policy
from ingestion_assets.parents import parent_deps
from ingestion_assets.partitions import partition_dimension, partitions_def
from ingestion_assets.specs import Endpoint, Source, TimePartitioning
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
    translate = (translator or DEFAULT_TRANSLATOR).get_asset_spec
    what = _sentence(endpoint.description or f"{source.name} {endpoint.path}")
    common: dict[str, Any] = dict(
        group_name=source.name, owners=source.owners, tags=_tags(source, endpoint),
        metadata=_common_metadata(source, endpoint),
        partitions_def=partitions_def(source, endpoint),
    )
    raw_key = dg.AssetKey(["raw", source.name, endpoint.name])
    table_key = dg.AssetKey([source.name, endpoint.name])
    raw = translate(EndpointSpecData(source, endpoint, "raw", dg.AssetSpec(
        key=raw_key,
        deps=parent_deps(source, endpoint, translator),  # a child reads its parent's table
        description=f"Raw API pages — {what}. Every response exactly as the API sent it "
        f"(zstd), with a manifest; written by the step that builds "
        f"{table_key.to_user_string()}.",
        kinds={"api"},
        # Left out only by `rebuild_from_raw`, which does not call the API.
        skippable=True,
        **common,
    )))
    table = translate(EndpointSpecData(source, endpoint, "table", dg.AssetSpec(
        key=table_key,
        deps=[raw.key],
        description=f"Typed table — {what}. One row per record (Parquet), built from the "
        f"raw pages in {raw.key.to_user_string()}.",
        kinds={"parquet"},
        freshness_policy=freshness_policy(endpoint),  # from `freshness:` (freshness.py)
        **common,
    )))
    return raw, table


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


def step_name(source: Source, endpoint: Endpoint) -> str:
    """The name of an endpoint's step (``ops:`` key of its run config)."""
    return f"{source.name}__{endpoint.name}"


def _sentence(text: str) -> str:
    """``text`` without the trailing punctuation a description may end with."""
    return text.rstrip().rstrip(".,;:")


class EndpointRunConfig(dg.Config):
    """Run config of an endpoint's step (the launchpad's ``ops: <source>__<endpoint>``)."""

    rebuild_from_raw: bool = Field(
        default=False,
        description="Rebuild the table from the raw pages already stored for these partitions, "
        "without calling the API. The raw asset is not materialized.",
    )


def endpoint_assets(
    source: Source, endpoint: Endpoint, translator: IngestionTranslator | None = None
) -> list[dg.AssetsDefinition]:
    """The raw asset and the table asset of one endpoint, produced by one step."""
    from ingestion_assets.endpoint_step import StepPlan, StepRun

    raw_spec, table_spec = endpoint_specs(source, endpoint, translator)
    raw_spec = raw_spec.with_io_manager_key(RAW_IO_MANAGER_KEY)
    table_spec = table_spec.with_io_manager_key(PARQUET_IO_MANAGER_KEY)
    plan = StepPlan(
        source=source, endpoint=endpoint, partitions_def=partitions_def(source, endpoint),
        raw_key=raw_spec.key, table_key=table_spec.key,
        metadata=_common_metadata(source, endpoint), resource_key=api_resource_key(source),
        raw_io_key=RAW_IO_MANAGER_KEY, table_io_key=PARQUET_IO_MANAGER_KEY,
        translator=translator,
    )
    what = _sentence(endpoint.description or f"{source.name} {endpoint.path}")

    @dg.multi_asset(
        name=step_name(source, endpoint),
        specs=[raw_spec, table_spec],
        description=f"Fetches {what} from the API, archives every page in "
        f"{plan.raw_key.to_user_string()} and writes the table "
        f"{plan.table_key.to_user_string()}.",
        can_subset=False,
        partitions_def=plan.partitions_def,
        backfill_policy=(
            dg.BackfillPolicy.single_run()
            if isinstance(endpoint.partitioning, TimePartitioning)
            else None
        ),
        required_resource_keys={plan.resource_key, RAW_IO_MANAGER_KEY, PARQUET_IO_MANAGER_KEY},
        pool=pool_name(source),
        retry_policy=raw_retry_policy(source),
    )
    def endpoint_step(context: dg.AssetExecutionContext, config: EndpointRunConfig):
        yield from StepRun(plan, context, config.rebuild_from_raw).execute()

    return [endpoint_step]


def build_assets(
    sources: list[Source], translator: IngestionTranslator | None = None
) -> list[dg.AssetsDefinition]:
    with warnings.catch_warnings():
        # backfill_policy is marked beta; we rely on it knowingly (single-run backfills).
        warnings.simplefilter("ignore", dg.BetaWarning)
        return [
            a for s in sources for e in s.endpoints for a in endpoint_assets(s, e, translator)
        ]
