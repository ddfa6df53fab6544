"""The ``ingestion_assets`` Spark data source: batch reads and change streams of an endpoint."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from pyspark.sql.datasource import (
    DataSource,
    DataSourceReader,
    DataSourceStreamReader,
    InputPartition,
)
from pyspark.sql.types import StructType

from ingestion_assets.spark import changes
from ingestion_assets.spark.plan import (
    ReadOptions,
    ReadPart,
    check_dead_letters,
    fetch,
    normalizer_for,
    open_client,
    page_ranges,
    parse_options,
    partition_requests,
    plannable,
    record_pages,
)
from ingestion_assets.spark.schema import arrow_target, conform, is_sampled, spark_schema

SAMPLE_PARTITIONS = 3
"""Input partitions (first, middle, last) whose first page the schema is sampled from."""


class IngestionDataSource(DataSource):
    """``spark.read.format("ingestion_assets")``: an endpoint of the YAML sources.

    Options: ``sources`` (YAML file or folder, default ``$INGESTION_SOURCES`` or the demo
    sources), ``source``, ``endpoint``, ``start``/``end`` (time partitioned endpoints),
    ``keys`` (static/dynamic keys; default all), ``concurrency`` (tasks that may read at
    once; the source's rate limit is divided by it), ``pages_per_partition``,
    ``on_dead_letter`` (``fail``/``drop``), and for streams ``since``. See docs/spark.md.
    """

    @classmethod
    def name(cls) -> str:
        return "ingestion_assets"

    def _options(self) -> ReadOptions:
        return parse_options(self.options)

    def schema(self) -> StructType:
        opts = self._options()
        normalizer = normalizer_for(opts, None)
        declared = set(normalizer.schema.names)
        if opts.endpoint.extra_fields == "columns":
            with open_client(opts.source) as client:
                for part in _sample_parts(opts, client):
                    pages = iter(record_pages(opts, fetch(client, opts, part)))
                    records = next(pages, None)
                    pages.close()
                    if records:
                        normalizer.normalize_page(records)
        return spark_schema(normalizer.schema, declared)

    def reader(self, schema: StructType) -> DataSourceReader:
        return EndpointReader(self._options(), schema)

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:
        return changes.ChangeStreamReader(self._options(), schema)


def _sample_parts(opts: ReadOptions, client: Any) -> list[ReadPart]:
    if opts.endpoint.automation.incremental is not None and opts.start is None:
        return changes.sample_parts(opts)  # a stream: the listing without a window
    parts = plan_parts(opts, client)
    picks = sorted({0, len(parts) // 2, len(parts) - 1})[:SAMPLE_PARTITIONS]
    return [parts[i] for i in picks]


def needs_requests(opts: ReadOptions) -> bool:
    """Whether planning asks the API (a first page for page ranges, dynamic keys)."""
    p = opts.endpoint.partitioning
    dynamic = p.type == "dynamic" and not opts.keys
    return plannable(opts.endpoint) or dynamic


def plan_parts(opts: ReadOptions, client: Any) -> list[ReadPart]:
    if plannable(opts.endpoint):
        return page_ranges(opts, client)
    return partition_requests(opts, client)


class EndpointReader(DataSourceReader):
    """Reads each input partition through the HTTP core on an executor."""

    def __init__(self, opts: ReadOptions, schema: StructType):
        self.opts = opts
        self.schema = schema
        self._tasks = 1

    def partitions(self) -> Sequence[InputPartition]:
        if needs_requests(self.opts):
            with open_client(self.opts.source) as client:
                parts = plan_parts(self.opts, client)
        else:  # time windows and static keys: no request, no secret needed on the driver
            parts = plan_parts(self.opts, None)
        # At most this many tasks read at once; each gets this share of the rate limit.
        self._tasks = min(len(parts), self.opts.concurrency or len(parts))
        return [InputPartition((part, self._tasks)) for part in parts]

    def read(self, partition: InputPartition) -> Iterator[Any]:
        part, tasks = partition.value
        yield from read_part(self.opts, self.schema, part, tasks)


def read_part(opts: ReadOptions, schema: StructType, part: ReadPart, tasks: int,
              pages: Any = None) -> Iterator[Any]:
    """Arrow batches of one input partition, conformed to ``schema`` (``pages``: records
    already fetched, the change stream's; otherwise the partition is fetched here)."""
    target = arrow_target(schema)
    strict = is_sampled(schema)
    where = f"{opts.where} partition {part.key or '(snapshot)'}"
    with open_client(opts.source, tasks) as client:
        if pages is None:
            pages = record_pages(opts, fetch(client, opts, part))
        normalizer = normalizer_for(opts, part)
        for batch in normalizer.batches(pages):
            yield conform(batch, target, strict, where)
        check_dead_letters(opts, normalizer, part)

