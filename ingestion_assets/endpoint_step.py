"""What an endpoint's one step does (built by ``factory.endpoint_assets``).

For each partition:

* a thread pulls pages from the source's `ApiResource` and writes each one, exactly as
  received, into the raw archive's staging folder (the raw-response IO manager's format);
* a second thread normalizes the same pages' records into Arrow batches and writes them into
  the table's staging folder (the Parquet IO manager's format);
* a bounded queue of a few pages sits between them, so both run at once and memory stays
  bounded by a few pages and a Parquet row group.

A run of one partition returns both stagings; the two IO managers then make them current
(raw first, then the table). A failure anywhere discards both, so the partition stored
before stays as it was.

A single-run backfill of a range fetches up to the source's ``max_concurrency`` partitions
side by side (cursor and link endpoints cannot parallelize inside a partition, so this is
where a backfill gains), every request still under the source's one rate limiter and its
bound on open requests. Each partition is committed on its own as soon as both of its
stagings are complete: a failing partition discards only its own stagings, the others
stay committed, and the step then fails naming the partitions that failed (the committed
ones are recorded as materializations of the run, so the UI shows which partitions
landed). When every partition succeeds, the IO managers record them all at the end.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from ingestion_assets.http.errors import ApiError
from ingestion_assets.http.redaction import redact_text
from ingestion_assets.specs import Endpoint, MissingSecretError, Source

#: Pages between the fetch and the normalizer: enough to ride out jitter on either side,
#: few enough that memory stays bounded by a handful of pages.
QUEUE_PAGES = 4
#: Seconds between two progress lines of a backfill in the run's log.
PROGRESS_EVERY_S = 10.0


def no_retry(exc: Exception) -> dg.Failure:
    """A failure Dagster's op retries leave alone (a permanent error)."""
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
            raise no_retry(exc) from exc
        except MissingSecretError as exc:
            raise no_retry(exc) from exc


class Aborted(Exception):
    """The other side of the page hand-over failed (or the step stops); this side stops."""


class PageHandOver:
    """A bounded queue of page records from the fetch to the normalizer thread.

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
        raise Aborted("the normalizer stopped")

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
                    raise Aborted("the fetch stopped") from None
                continue
            if item is self._END:
                return
            yield item


class QueuedPages:
    """The pages of a hand-over as an iterable, with the fetch's ``stats`` (for the manifest:
    read once the iteration has ended, when the fetch is complete)."""

    def __init__(self, hand_over: PageHandOver, pages: Any):
        self._hand_over = hand_over
        self._pages = pages

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pages, name)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._hand_over)


@dataclass(slots=True)
class ArchivedPage:
    """What the raw archive stores of a fetched page: the page without its records (counted)."""

    index: int
    url: str
    params: dict[str, Any]
    status: int
    body: bytes
    record_count: int
    headers: dict[str, str]
    fetched_at: Any
    elapsed_s: float
    attempts: int

    @classmethod
    def of(cls, page: Any) -> ArchivedPage:
        return cls(page.index, page.url, page.params, page.status, page.body, len(page.records),
                   page.headers, page.fetched_at, page.elapsed_s, page.attempts)


class Worker(threading.Thread):
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


def tee_stage(
    stage_raw: Callable[[Iterable[Any]], Any],
    stage_table: Callable[[Iterable[Any]], Any],
    pages: Any, stop: threading.Event, name: str,
    table_page: Callable[[Any], Any] = lambda page: page.records,
) -> tuple[Any, Any]:
    """Fetch in this thread; stage the raw archive and the table each in a worker thread.

    The fetch thread only fetches (and parses, to paginate): compressing and writing the
    archive, and building the table, run beside it, each behind a bounded hand-over, so the
    next request goes out while the last page is stored. ``table_page`` is what the table
    gets of a page (its records by default). Returns both stagings, or raises the first
    error after discarding whatever was staged.
    """
    to_raw, to_table = PageHandOver(), PageHandOver()
    raw = Worker(lambda: stage_raw(QueuedPages(to_raw, pages)), f"archive {name}", to_raw)
    table = Worker(lambda: stage_table(to_table), f"normalize {name}", to_table)
    workers = (raw, table)
    for worker in workers:
        worker.start()
    try:
        for page in pages:
            if stop.is_set():
                raise Aborted("the step was stopped")
            to_table.put(table_page(page))
            to_raw.put(ArchivedPage.of(page))
            del page  # neither side needs its records: they go before the next page's parse
        to_raw.close()
        to_table.close()
    except BaseException as exc:
        _stop_workers(workers, (to_raw, to_table))
        failed = next((w.error for w in workers if w.error is not None
                       and not isinstance(w.error, Aborted)), None)
        if isinstance(exc, Aborted) and failed is not None:
            raise failed from None  # a worker failed first
        raise
    _stop_workers(workers, ())
    failed = next((w.error for w in workers if w.error is not None), None)
    if failed is not None:
        raise failed
    return raw.result, table.result


def _stop_workers(workers: tuple[Worker, ...], hand_overs: tuple[PageHandOver, ...]) -> None:
    """Wait for the workers (after aborting ``hand_overs``); when any failed, discard what
    the others staged."""
    for hand_over in hand_overs:
        hand_over.abort()
    for worker in workers:
        worker.join()
    if any(w.error is not None for w in workers) or hand_overs:
        for worker in workers:
            if worker.error is None and worker.result is not None:
                worker.result.discard()
                worker.result = None


# --------------------------------------------------------------------------- many partitions


@dataclass
class RangeOutcome:
    """What a run over several partitions ended with."""

    committed: dict[str | None, tuple[Any, Any]] = field(default_factory=dict)
    failed: dict[str | None, BaseException] = field(default_factory=dict)


def commit_pair(raw: Any, table: Any) -> None:
    """Make one partition current: the raw archive first, then the table."""
    try:
        if raw is not None:
            raw.commit()
        table.commit()
    except BaseException:
        if raw is not None:
            raw.discard()
        table.discard()
        raise


def run_range(
    keys: list[str | None],
    stage: Callable[[str | None], tuple[Any, Any]],
    concurrency: int,
    stop: threading.Event,
    on_done: Callable[[str | None, tuple[Any, Any] | None, BaseException | None], None],
) -> RangeOutcome:
    """Stage and commit every partition, up to ``concurrency`` at once.

    A partition's failure is kept (``on_done`` hears of it) and the others go on. If the
    calling thread is interrupted (the step is terminated), ``stop`` is set, nothing new
    starts, and the partitions on their way end at their next page.
    """

    def stage_and_commit(key: str | None) -> tuple[Any, Any]:
        if stop.is_set():
            raise Aborted("the step was stopped")
        raw, table = stage(key)
        commit_pair(raw, table)
        return raw, table

    outcome = RangeOutcome()
    pool = ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(keys))),
                              thread_name_prefix="partition")
    try:
        pending: dict[Future, str | None] = {pool.submit(stage_and_commit, k): k for k in keys}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                key = pending.pop(future)
                error = future.exception()
                if error is None:
                    outcome.committed[key] = future.result()
                else:
                    outcome.failed[key] = error
                on_done(key, outcome.committed.get(key), error)
    except BaseException:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return outcome


def failed_partitions_error(
    outcome: RangeOutcome, source: Source, endpoint: Endpoint
) -> dg.Failure:
    """The step's failure when some partitions of a range failed (naming each one)."""
    failed = sorted(outcome.failed, key=str)
    reasons = [
        f"{key}: {type(exc).__name__}: {redact_text(str(exc))[:300]}"
        for key, exc in sorted(outcome.failed.items(), key=lambda kv: str(kv[0]))
    ]
    permanent = all(
        isinstance(exc, dg.Failure) and not exc.allow_retries for exc in outcome.failed.values()
    )
    return dg.Failure(
        description=(
            f"{source.name} {endpoint.name}: {len(failed)} of "
            f"{len(failed) + len(outcome.committed)} partition(s) failed: "
            f"{', '.join(map(str, failed))}. The {len(outcome.committed)} other(s) were "
            "committed and recorded as materialized.\n" + "\n".join(reasons[:20])
        ),
        metadata={
            "failed_partitions": dg.MetadataValue.json([str(k) for k in failed]),
            "committed_partitions": dg.MetadataValue.json(
                sorted(str(k) for k in outcome.committed)
            ),
        },
        allow_retries=not permanent,
    )


# --------------------------------------------------------------------------- the step


@dataclass(frozen=True)
class StepPlan:
    """What an endpoint's step knows before it runs (built once per endpoint)."""

    source: Source
    endpoint: Endpoint
    partitions_def: dg.PartitionsDefinition | None
    raw_key: dg.AssetKey
    table_key: dg.AssetKey
    metadata: dict[str, Any]  # the definition metadata of both assets
    resource_key: str
    raw_io_key: str
    table_io_key: str
    translator: Any = None  # the asset keys' translator (a child finds its parent's table)


def partition_keys(context: dg.AssetExecutionContext) -> list[str | None]:
    if not context.has_partition_key and not context.has_partition_key_range:
        return [None]
    return list(context.partition_keys)


class StepRun:
    """One execution of an endpoint's step: its resources, and the work per partition."""

    def __init__(self, plan: StepPlan, context: dg.AssetExecutionContext, rebuild: bool):
        self.plan = plan
        self.context = context
        self.rebuild_from_raw = rebuild
        self.api = getattr(context.resources, plan.resource_key)
        self.raw_io = getattr(context.resources, plan.raw_io_key)
        self.table_io = getattr(context.resources, plan.table_io_key)
        self.run_id = context.run.run_id
        self.stop = threading.Event()
        self.known_schema: dict[str, Any] = {}  # the last schema staged, for empty partitions
        self._done: list[str | None] = []
        self._last_progress = time.monotonic()

    def folders(self, key: str | None) -> tuple[Any, Any]:
        from ingestion_assets.io_managers.staged import partition_folder

        p = self.plan
        return (
            partition_folder(self.raw_io.base_path, p.raw_key, p.partitions_def, key, p.metadata),
            partition_folder(
                self.table_io.base_path, p.table_key, p.partitions_def, key, p.metadata
            ),
        )

    def stage_table(self, key: str | None, folder: Any, pages: Iterable[list[Any]]) -> Any:
        from ingestion_assets.io_managers.parquet import last_stored_schema
        from ingestion_assets.partitions import partition_request

        p = self.plan
        window = partition_request(p.endpoint, p.partitions_def, key).window
        return self.table_io.stage_partition(
            folder, key, normalized_pages(p.source, p.endpoint, window, pages),
            asset_key_path=list(p.table_key.path), run_id=self.run_id,
            definition_metadata=p.metadata,
            last_schema=lambda: last_stored_schema(self.context.instance, p.table_key),
            known=self.known_schema,
        )

    def rebuild(self, key: str | None) -> tuple[None, Any]:
        """Stage the table of one partition from its stored raw pages (no API call)."""
        from ingestion_assets.io_managers.raw import RawPartition
        from ingestion_assets.resources import stored_records

        raw_folder, table_folder = self.folders(key)
        try:
            stored = RawPartition.open(raw_folder, key)
        except FileNotFoundError:
            raise dg.Failure(
                description=f"rebuild_from_raw: no stored raw pages for "
                f"{self.plan.raw_key.to_user_string()} partition {key!r} at {raw_folder}; "
                "materialize it from the API first.",
                allow_retries=False,
            ) from None
        pages = stored_records(stored.iter_pages(), self.plan.endpoint)
        return None, self.stage_table(key, table_folder, pages)

    def ingest(self, key: str | None) -> tuple[Any, Any]:
        """Fetch one partition, staging its raw archive and its table side by side."""
        from ingestion_assets.endpoint_io import json_page_path, table_page
        from ingestion_assets.parents import parent_pages
        from ingestion_assets.partitions import PartitionKeyError, partition_request

        p = self.plan
        raw_folder, table_folder = self.folders(key)
        try:
            request = partition_request(p.endpoint, p.partitions_def, key)
            pages = RetryClassifiedPages(
                parent_pages(self.api, p.source, p.endpoint, request, self.table_io.base_path,
                             p.translator)
                if p.endpoint.parent else self.api.fetch_pages(p.endpoint, request))
        except (MissingSecretError, PartitionKeyError) as exc:
            raise no_retry(exc) from exc
        path = None if p.endpoint.parent else json_page_path(p.endpoint)
        return tee_stage(
            lambda archived: self.raw_io.stage_partition(
                raw_folder, key, archived, asset_key_path=list(p.raw_key.path),
                run_id=self.run_id,
            ),
            lambda records: self.stage_table(key, table_folder, records),
            pages, self.stop, name=f"{p.table_key.to_user_string()} {key}",
            table_page=lambda page: table_page(page, path, p.endpoint.records_path),
        )

    def stage(self, key: str | None) -> tuple[Any, Any]:
        return self.rebuild(key) if self.rebuild_from_raw else self.ingest(key)

    def describe(self, keys: list[str | None]) -> str:
        what = "rebuilding from the stored raw pages" if self.rebuild_from_raw else "fetching"
        p = self.plan
        if keys == [None]:
            return f"{what} {p.source.name} {p.endpoint.path} (snapshot)"
        if len(keys) == 1:
            return f"{what} {p.source.name} {p.endpoint.path} for partition {keys[0]}"
        at_once = min(len(keys), p.source.max_concurrency)
        return (f"{what} {p.source.name} {p.endpoint.path} for {len(keys)} partitions "
                f"({keys[0]} ... {keys[-1]}), {at_once} at once")

    def on_partition_done(self, key: str | None, staged: Any, error: BaseException | None):
        """Failures are logged at once, progress at most every few seconds (each log line
        is an event-log write)."""
        if error is not None:
            self.context.log.error(
                f"partition {key}: failed ({type(error).__name__}: {redact_text(str(error))})"
            )
            return
        self._done.append(key)
        now = time.monotonic()
        if now - self._last_progress >= PROGRESS_EVERY_S:
            self._last_progress = now
            self.context.log.info(
                f"{len(self._done)} partition(s) committed so far (latest: {key})"
            )

    def committed_events(self, outcome: RangeOutcome) -> Iterator[dg.AssetMaterialization]:
        """Materializations of the partitions committed by a run that then fails."""
        for key in sorted(outcome.committed, key=str):
            raw, table = outcome.committed[key]
            for asset_key, staged in ((self.plan.raw_key, raw), (self.plan.table_key, table)):
                if staged is not None:
                    yield dg.AssetMaterialization(
                        asset_key=asset_key, partition=key, metadata=staged.metadata,
                    )

    def execute(self) -> Iterator[dg.Output | dg.AssetMaterialization]:
        """Stage (and, for a range, commit) every partition; yield both outputs."""
        from ingestion_assets.io_managers.heap import frozen_heap
        from ingestion_assets.io_managers.staged import StagedPartitions

        keys = partition_keys(self.context)
        self.context.log.info(self.describe(keys))
        raw_staged, table_staged = StagedPartitions(), StagedPartitions()
        try:
            with frozen_heap():
                if len(keys) == 1:
                    _keep(raw_staged, table_staged, keys[0], self.stage(keys[0]))
                else:
                    outcome = run_range(keys, self.stage, self.plan.source.max_concurrency,
                                        self.stop, self.on_partition_done)
                    if outcome.failed:
                        yield from self.committed_events(outcome)
                        raise failed_partitions_error(outcome, self.plan.source,
                                                      self.plan.endpoint)
                    for key in keys:  # committed: the IO managers record them
                        _keep(raw_staged, table_staged, key, outcome.committed[key])
            if not self.rebuild_from_raw:
                yield dg.Output(raw_staged, output_name=self.plan.raw_key.to_python_identifier())
            yield dg.Output(table_staged, output_name=self.plan.table_key.to_python_identifier())
        finally:
            # Whatever was not committed (a failure above, or in an IO manager) is removed.
            raw_staged.discard()
            table_staged.discard()


def _keep(raw_staged: Any, table_staged: Any, key: str | None, pair: tuple[Any, Any]) -> None:
    raw, table = pair
    if raw is not None:  # None: rebuilt from the raw pages, which stay as they are
        raw_staged[key] = raw
    table_staged[key] = table


# --------------------------------------------------------------------------- normalizing


def normalized_pages(
    source: Source, endpoint: Endpoint, window: Any, pages: Iterable[list[Any]]
) -> Any:
    """The record batches of one partition's pages (a ``RecordBatchStream``).

    ``window`` is the partition's ``(start, end)`` (None without a time window).
    """
    from ingestion_assets.endpoint_io import (
        drop_repeated_records,
        mask_columns,
        pages_can_shift,
        table_normalizer,
    )
    from ingestion_assets.freshness import time_columns
    from ingestion_assets.normalize import RecordBatchStream

    extra: dict[str, Any] = {}
    if endpoint.mask_columns:  # the table does not keep these (the raw pages do)
        pages = mask_columns(pages, endpoint.mask_columns)
    if pages_can_shift(endpoint):
        pages = drop_repeated_records(pages, endpoint.primary_key, extra)
    return RecordBatchStream.from_pages(
        pages, table_normalizer(endpoint, window), source=source.name, endpoint=endpoint.name,
        time_columns=time_columns(endpoint), metadata=extra,
    )
