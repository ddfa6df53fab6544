"""Endpoint spec -> one step producing ``raw/<source>/<endpoint>`` and ``<source>/<endpoint>``.

Each endpoint is one ``multi_asset`` (one step, not subsettable): Materialize on either asset,
a backfill, a schedule or a sensor fetches, archives and normalizes in one pass. Inside the
step, for each partition:

* the main thread pulls pages from the source's `ApiResource` and writes each one, exactly as
  received, into the raw archive's staging folder (the raw-response IO manager's format);
* a second thread normalizes the same pages' records into Arrow batches and writes them into
  the table's staging folder (the Parquet IO manager's format);
* a bounded queue of a few pages sits between them, so both run at once and memory stays
  bounded by a few pages and a Parquet row group.

Only when both are complete does the step return them; the two IO managers then make them
current (raw first, then the table). A failure anywhere discards both stagings, so every
partition stored before stays as it was. A single-run backfill of many time partitions does
this partition after partition and commits them together at the end.

``rebuild_from_raw`` (run config of the step) rebuilds the table from the stored raw pages
without calling the API; the raw asset is then left as it is.
"""


import os
import queue
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import dagster as dg
from pydantic import Field

from ingestion_assets.freshness import freshness_policy, time_columns
from ingestion_assets.http.errors import ApiError
from ingestion_assets.http.redaction import redact_text
from ingestion_assets.parents import parent_deps, parent_pages
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


#: Pages between the fetch and the normalizer: enough to ride out jitter on either side,
#: few enough that memory stays bounded by a handful of pages.
QUEUE_PAGES = 4


class _Aborted(Exception):
    """The other side of the page hand-over failed; this side stops."""


class PageHandOver:
    """A bounded queue of page records from the fetch (main thread) to the normalizer thread.

    ``put`` blocks while the queue is full; either side can ``abort`` so the other stops
    instead of waiting forever.
    """

    _END = object()

    def __init__(self, maxsize: int = QUEUE_PAGES):
        self._queue: queue.Queue[Any] = queue.Queue(maxsize)
        self._aborted = threading.Event()

    def put(self, records: Any) -> None:
        while not self._aborted.is_set():
            try:
                self._queue.put(records, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Aborted("the normalizer stopped")

    def close(self) -> None:
        self.put(self._END)

    def abort(self) -> None:
        self._aborted.set()

    def __iter__(self) -> Iterator[Any]:
        while True:
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._aborted.is_set():
                    raise _Aborted("the fetch stopped") from None
                continue
            if item is self._END:
                return
            yield item


class _TeePages:
    """The fetched pages, each handed to the normalizer as it passes to the raw archive."""

    def __init__(self, pages: Any, hand_over: PageHandOver):
        self._pages = pages
        self._hand_over = hand_over

    def __getattr__(self, name: str) -> Any:  # stats, for the manifest
        return getattr(self._pages, name)

    def __iter__(self) -> Iterator[Any]:
        for page in self._pages:
            self._hand_over.put(page.records)
            yield page


class _Worker(threading.Thread):
    """Runs one function in a thread and keeps its result or its exception."""

    def __init__(self, target: Any, name: str, hand_over: PageHandOver):
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self._hand_over = hand_over
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._target_fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the step's thread
            self.error = exc
            self._hand_over.abort()  # the fetch stops instead of waiting on a full queue


def endpoint_assets(
    source: Source, endpoint: Endpoint, translator: IngestionTranslator | None = None
) -> list[dg.AssetsDefinition]:
    """The raw asset and the table asset of one endpoint, produced by one step."""
    from ingestion_assets.io_managers.heap import frozen_heap
    from ingestion_assets.io_managers.parquet import last_stored_schema
    from ingestion_assets.io_managers.raw import RawPartition
    from ingestion_assets.io_managers.staged import StagedPartitions, partition_folder
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
    what = _sentence(endpoint.description or f"{source.name} {endpoint.path}")
    metadata = _common_metadata(source, endpoint)
    raw_spec, table_spec = endpoint_specs(source, endpoint, translator)
    raw_spec = raw_spec.with_io_manager_key(RAW_IO_MANAGER_KEY)
    table_spec = table_spec.with_io_manager_key(PARQUET_IO_MANAGER_KEY)
    raw_key, table_key = raw_spec.key, table_spec.key
    raw_output, table_output = raw_key.to_python_identifier(), table_key.to_python_identifier()

    def normalized(key: str | None, pages: Iterable[list[Any]]) -> RecordBatchStream:
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
        extra: dict[str, Any] = {}
        if endpoint.mask_columns:  # the table does not keep these (the raw pages do)
            pages = mask_columns(pages, endpoint.mask_columns)
        if pages_can_shift(endpoint):
            pages = drop_repeated_records(pages, endpoint.primary_key, extra)
        return RecordBatchStream.from_pages(
            pages, normalizer, source=source.name, endpoint=endpoint.name,
            time_columns=time_columns(endpoint), metadata=extra,
        )

    @dg.multi_asset(
        name=step_name(source, endpoint),
        specs=[raw_spec, table_spec],
        description=f"Fetches {what} from the API, archives every page in "
        f"{raw_key.to_user_string()} and writes the table {table_key.to_user_string()}.",
        can_subset=False,
        partitions_def=pdef,
        backfill_policy=backfill,
        required_resource_keys={resource_key, RAW_IO_MANAGER_KEY, PARQUET_IO_MANAGER_KEY},
        pool=pool_name(source),
        retry_policy=raw_retry_policy(source),
    )
    def endpoint_step(context: dg.AssetExecutionContext, config: EndpointRunConfig):
        api: ApiResource = getattr(context.resources, resource_key)
        raw_io = getattr(context.resources, RAW_IO_MANAGER_KEY)
        table_io = getattr(context.resources, PARQUET_IO_MANAGER_KEY)

        def folders(key: str | None):
            return (
                partition_folder(raw_io.base_path, raw_key, pdef, key, metadata),
                partition_folder(table_io.base_path, table_key, pdef, key, metadata),
            )

        def stage_table(key: str | None, folder: Any, pages: Iterable[list[Any]]):
            return table_io.stage_partition(
                folder, key, normalized(key, pages), asset_key_path=list(table_key.path),
                run_id=context.run.run_id, definition_metadata=metadata,
                last_schema=lambda: last_stored_schema(context.instance, table_key),
                known=known_schema,
            )

        def rebuild(key: str | None):
            raw_folder, table_folder = folders(key)
            try:
                stored = RawPartition.open(raw_folder, key)
            except FileNotFoundError:
                raise dg.Failure(
                    description=f"rebuild_from_raw: no stored raw pages for "
                    f"{raw_key.to_user_string()} partition {key!r} at {raw_folder}; "
                    "materialize it from the API first.",
                    allow_retries=False,
                ) from None
            context.log.info(f"rebuilding {table_key.to_user_string()} partition "
                             f"{key or '(snapshot)'} from {stored.page_count} stored pages")
            pages = (records_of_page(body, endpoint.records_path)
                     for _, body in stored.iter_pages())
            return stage_table(key, table_folder, pages)

        def ingest(key: str | None):
            raw_folder, table_folder = folders(key)
            try:
                request = partition_request(endpoint, pdef, key)
                context.log.info(
                    f"fetching {source.name} {request.path} for partition {key or '(snapshot)'}"
                )
                pages = RetryClassifiedPages(
                    parent_pages(api, source, endpoint, request, table_io.base_path, translator)
                    if endpoint.parent else api.fetch_pages(endpoint, request))
            except (MissingSecretError, PartitionKeyError) as exc:
                raise _no_retry(exc) from exc
            hand_over = PageHandOver()
            worker = _Worker(lambda: stage_table(key, table_folder, hand_over),
                             name=f"normalize {table_key.to_user_string()} {key}",
                             hand_over=hand_over)
            worker.start()
            try:
                raw = raw_io.stage_partition(
                    raw_folder, key, _TeePages(pages, hand_over),
                    asset_key_path=list(raw_key.path), run_id=context.run.run_id,
                )
            except BaseException as exc:
                hand_over.abort()
                worker.join()
                if isinstance(exc, _Aborted) and worker.error is not None:
                    raise worker.error from None  # the normalizer failed first
                if worker.error is None and worker.result is not None:
                    worker.result.discard()
                raise
            try:
                hand_over.close()
            except _Aborted:
                pass  # the normalizer failed: its error is raised below
            worker.join()
            if worker.error is not None:
                raw.discard()
                raise worker.error
            return raw, worker.result

        known_schema: dict[str, Any] = {}  # the last schema staged, for empty partitions
        raw_staged, table_staged = StagedPartitions(), StagedPartitions()
        try:
            with frozen_heap():
                for key in _partition_keys(context):
                    if config.rebuild_from_raw:
                        table_staged[key] = rebuild(key)
                    else:
                        raw_staged[key], table_staged[key] = ingest(key)
            # Both complete: the IO managers make them current, the raw archive first.
            if not config.rebuild_from_raw:
                yield dg.Output(raw_staged, output_name=raw_output)
            yield dg.Output(table_staged, output_name=table_output)
        finally:
            # Whatever was not committed (a failure above, or in an IO manager) is removed.
            raw_staged.discard()
            table_staged.discard()

    return [endpoint_step]

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
