"""``spark.readStream.format("ingestion_assets")``: the changed records of an endpoint.

For endpoints with a change sensor (``automation.incremental``: an updated-since filter).
The offset is the sensor's watermark: the newest update time seen (UTC) and the records seen
within the overlap before it (identity -> update time). Each micro-batch asks the API for the
records updated since ``watermark - overlap``, as the sensor does, and delivers those updated
up to the batch's end watermark that were not seen before: a record changed twice is
delivered twice, a record re-read in the overlap is not. Offsets live in the query's
checkpoint, so a restarted query resumes from the last committed watermark.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

from pyspark.sql.datasource import DataSourceStreamReader, InputPartition
from pyspark.sql.types import StructType

from ingestion_assets.endpoint_io import (
    Watermark,
    apply_target,
    format_instant,
    iter_records,
    to_utc,
)
from ingestion_assets.http.jsonpath import compile_path, find
from ingestion_assets.spark.plan import (
    ReadOptions,
    ReadPart,
    SparkReadError,
    endpoint_request_headers,
    open_client,
)
from ingestion_assets.specs import MultiPartitioning, StaticPartitioning


def _spec(opts: ReadOptions) -> Any:
    spec = opts.endpoint.automation.incremental
    if spec is None:
        raise SparkReadError(
            f"{opts.where} has no change sensor (automation.incremental with an updated-since "
            "filter): it can be read as a batch, not as a stream"
        )
    return spec


def scopes(opts: ReadOptions, params: dict[str, Any]) -> list[tuple[str | None, str, dict]]:
    """(key, path, params) of each listing to poll: the endpoint, or each static key."""
    endpoint = opts.endpoint
    p = endpoint.partitioning
    target = p.static if isinstance(p, MultiPartitioning) else p
    if not isinstance(target, StaticPartitioning):
        if p.type == "dynamic":
            raise SparkReadError(f"{opts.where}: streams of dynamic partitions are not supported")
        return [(None, endpoint.path, dict(params))]
    out = []
    for value in opts.keys or target.values:
        scoped = dict(params)
        out.append((value, apply_target(target, value, endpoint.path, scoped), scoped))
    return out


def sample_parts(opts: ReadOptions) -> list[ReadPart]:
    """The listings of the stream, unfiltered, to sample the schema from."""
    return [ReadPart(key=key, path=path, params=params)
            for key, path, params in scopes(opts, dict(opts.endpoint.params))]


class _Changes:
    """Reads the changes of one listing since a watermark, identity and update time each."""

    def __init__(self, opts: ReadOptions):
        self.opts = opts
        self.spec = _spec(opts)
        self.overlap = dt.timedelta(seconds=self.spec.overlap_seconds)
        self._pk = [compile_path(k) for k in opts.endpoint.primary_key]
        self._updated = compile_path(self.spec.updated_field)

    def since(self, watermark: dt.datetime) -> Any:
        return format_instant((watermark - self.overlap).replace(microsecond=0), self.spec.format)

    def stamped(self, key: str | None, records: Any) -> Iterator[tuple[str, dt.datetime, Any]]:
        for record in records:
            updated = to_utc(find(record, self._updated, default=None))
            if updated is not None:
                ident = "/".join([key or ""] + [str(find(record, s)) for s in self._pk])
                yield ident, updated, record

    def poll(self, client: Any, state: Watermark, light: bool) -> Iterator[tuple[str, dt.datetime,
                                                                                Any]]:
        """Every record updated since the watermark minus the overlap (``light``: with the
        sensor's poll parameters, e.g. only the id and update fields)."""
        endpoint = self.opts.endpoint
        params = {**endpoint.params, **(self.spec.params if light else {}),
                  self.spec.updated_since_param: self.since(state.watermark)}
        for key, path, scoped in scopes(self.opts, params):
            records = iter_records(client, path, scoped, endpoint.pagination,
                                   endpoint.records_path, endpoint.name,
                                   headers=endpoint_request_headers(self.opts))
            yield from self.stamped(key, records)

    def advance(self, client: Any, state: Watermark, baseline: bool = False) -> Watermark:
        """The next offset: newest update seen, and what was seen in the overlap before it.

        ``baseline``: only remember what is already there (updated before the watermark).
        """
        seen, newest = dict(state.seen), state.watermark
        for ident, updated, _ in self.poll(client, state, light=True):
            if baseline and updated >= state.watermark:
                continue
            seen[ident] = updated.isoformat()
            newest = max(newest, updated)
        horizon = newest - self.overlap
        return Watermark(newest, {k: v for k, v in seen.items() if to_utc(v) >= horizon})


def _offset(state: Watermark) -> dict:
    return {"watermark": state.watermark.isoformat(), "seen": dict(sorted(state.seen.items()))}


def _state(offset: dict) -> Watermark:
    return Watermark(to_utc(offset["watermark"]), dict(offset.get("seen") or {}))


class ChangeStreamReader(DataSourceStreamReader):
    """Micro-batches of the records changed between two watermarks."""

    def __init__(self, opts: ReadOptions, schema: StructType):
        _spec(opts)
        self.opts = opts
        self.schema = schema

    def initialOffset(self) -> dict:
        start = self.opts.since or dt.datetime.now(dt.timezone.utc)
        with open_client(self.opts.source) as client:
            return _offset(_Changes(self.opts).advance(client, Watermark(start), baseline=True))

    def latestOffset(self, start: dict, limit: Any) -> dict:
        with open_client(self.opts.source) as client:
            return _offset(_Changes(self.opts).advance(client, _state(start)))

    def partitions(self, start: dict, end: dict) -> Sequence[InputPartition]:
        return [InputPartition((start, end))]

    def read(self, partition: InputPartition) -> Iterator[Any]:
        from ingestion_assets.spark.source import read_part

        start, end = (_state(o) for o in partition.value)
        changes = _Changes(self.opts)
        part = ReadPart(key=f"changes until {end.watermark.isoformat()}", path="", params={})

        with open_client(self.opts.source) as client:
            fetched = [record for ident, updated, record in changes.poll(client, start, False)
                       if updated <= end.watermark
                       and start.seen.get(ident) != updated.isoformat()]
        yield from read_part(self.opts, self.schema, part, 1, pages=[fetched])

    def commit(self, end: dict) -> None:
        """Nothing to release: the offsets are in the checkpoint."""
