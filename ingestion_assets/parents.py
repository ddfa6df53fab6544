"""Parent -> child endpoints: one request of the child per record of its parent's partition.

A child endpoint declares ``parent: {endpoint: repos, field: name, as: repo}``: for each of
its partitions, the step reads the parent's **stored** table partition (the same partition
key: a child's partitioning is its parent's), takes ``field`` of every record, and fetches
the child's path once per distinct value, ``{repo}`` filled with the value escaped as one
path segment (or, without that placeholder, the value as query parameter ``repo``). Nothing
is fetched twice, and the raw asset of the child depends on the parent's table in the
lineage, because that is what it reads.

The pages of all parents go into the child's partition in order, as one stream; its
``stats`` count what every fetch did, plus the parents visited.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
import pyarrow.parquet as pq

from ingestion_assets.http.page import FetchStats
from ingestion_assets.io_managers.raw import PARENTS_VISITED_METADATA_KEY
from ingestion_assets.partitions import (
    PartitionKeyError,
    PartitionRequest,
    partition_dimension,
    partitions_def,
    path_segment,
)
from ingestion_assets.specs import Endpoint, Source

__all__ = ["PARENTS_VISITED_METADATA_KEY", "ParentError", "parent_deps", "parent_pages"]


class ParentError(PartitionKeyError):
    """A child's partition cannot be requested from its parent's stored partition (missing,
    without the field, or with a value that cannot fill the request). Not retried."""


def parent_of(source: Source, endpoint: Endpoint) -> Endpoint | None:
    """The parent endpoint of a child (None for an endpoint without `parent`)."""
    if endpoint.parent is None:
        return None
    return next(e for e in source.endpoints if e.name == endpoint.parent.endpoint)


def parent_deps(source: Source, endpoint: Endpoint, translator: Any = None) -> list[dg.AssetDep]:
    """The parent's table, as a dependency of the child's raw asset (same partitions)."""
    from ingestion_assets.factory import table_asset_key

    parent = parent_of(source, endpoint)
    if parent is None:
        return []
    return [dg.AssetDep(table_asset_key(source, parent, translator))]


def parent_pages(
    api: Any, source: Source, endpoint: Endpoint, request: PartitionRequest, table_base: str,
    translator: Any = None,
) -> ParentPages:
    """The pages of one partition of a child: the child's request filled with each value of
    the parent's stored partition, fetched one parent after the other.

    Raises `ParentError` before anything is sent when the parent's partition is not stored,
    lacks the field, or holds a value that cannot fill the request.
    """
    from ingestion_assets.factory import table_asset_key
    from ingestion_assets.io_managers.parquet import MARKER, current_parquet_files
    from ingestion_assets.io_managers.staged import partition_folder
    from ingestion_assets.io_managers.storage import (
        PARTITION_DIMENSION_METADATA_KEY,
        current_version,
        display_uri,
    )

    parent = parent_of(source, endpoint)
    assert parent is not None and endpoint.parent is not None
    key = request.key
    parent_key = table_asset_key(source, parent, translator).to_user_string()
    folder = partition_folder(
        table_base, table_asset_key(source, parent, translator), partitions_def(source, parent),
        key, {PARTITION_DIMENSION_METADATA_KEY: partition_dimension(parent)},
    )
    where = f"parent {parent_key} partition {key or '(snapshot)'}"
    if current_version(folder, MARKER) is None:
        raise ParentError(
            f"{source.name}/{endpoint.name} reads the records of its {where}, which is not "
            f"stored (no table at {display_uri(folder)}); materialize {parent_key} for "
            f"{key or 'its snapshot'} first, or both together"
        )
    values, without = field_values(current_parquet_files(folder), endpoint.parent.field, where)
    requests = [child_request(endpoint, request, value, where) for value in values]
    return ParentPages(
        lambda r: api.fetch_pages(endpoint, r), requests,
        ChildStats(source=source.name, endpoint=endpoint.name, parent=parent_key,
                   field=endpoint.parent.field, without_value=without),
    )


def field_values(files: list[str], field: str, where: str) -> tuple[list[str], int]:
    """The distinct values of ``field`` in a stored partition, in stored order, as text; and
    how many records have none (null or absent), which are skipped."""
    values: dict[str, None] = {}
    without = 0
    for file in files:
        parquet = pq.ParquetFile(file)
        if parquet.metadata.num_rows == 0:
            continue
        names = parquet.schema_arrow.names
        column, steps = (field, []) if field in names else (field.split(".")[0], field.split(".")[1:])
        if column not in names:
            raise ParentError(f"{where} has no column {column!r} (field {field!r}); its "
                              f"columns: {', '.join(n for n in names if not n.startswith('_'))}")
        for batch in parquet.iter_batches(columns=[column]):
            for value in batch.column(0).to_pylist():
                for step in steps:
                    value = value.get(step) if isinstance(value, dict) else None
                if value is None:
                    without += 1
                    continue
                values.setdefault(as_text(value, field, where))
    return list(values), without


def as_text(value: Any, field: str, where: str) -> str:
    """A parent field's value as the text a request carries (an id stored as 12.0 is 12)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str | int | float):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise ParentError(f"{where}: field {field!r} holds a {type(value).__name__}, not a value "
                      "that can fill a request (name a field inside it)")


def child_request(
    endpoint: Endpoint, request: PartitionRequest, value: str, where: str
) -> PartitionRequest:
    """The child's request for one parent value: ``{as}`` in the path filled with the value
    as one escaped path segment, else the value as the query parameter ``as``."""
    assert endpoint.parent is not None
    name = endpoint.parent.as_
    params = dict(request.params)
    path = request.path
    if endpoint.parent.in_path(path):
        try:
            path = path.replace("{" + name + "}", path_segment(value, name))
        except PartitionKeyError:
            raise ParentError(
                f"{where}: field {endpoint.parent.field!r} value {value!r} cannot fill the path "
                f"placeholder {{{name}}}: an empty, '.' or '..' path segment would address "
                "another resource"
            ) from None
    else:
        params[name] = value  # requests encodes query values itself
    return PartitionRequest(key=request.key, path=path, params=params, window=request.window)


class ChildStats(FetchStats):
    """The request statistics of a child's partition: every parent's fetch added up."""

    def __init__(self, *, parent: str, field: str, without_value: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.parent, self.field, self.without_value = parent, field, without_value
        self.parents_visited = 0
        self._totals: list[int | None] = []

    def absorb(self, stats: FetchStats) -> None:
        """Add one parent's fetch."""
        with self._lock:
            self.parents_visited += 1
            self.pages += stats.pages
            self.records += stats.records
            self.requests += stats.requests
            for cause, n in stats.retries.items():
                self.retries[cause] = self.retries.get(cause, 0) + n
            self.rate_limited += stats.rate_limited
            self.rate_limit_wait_s += stats.rate_limit_wait_s
            self.bytes += stats.bytes
            self.workers = max(self.workers, stats.workers)
            self._totals.append(stats.declared_total)
            # A total for the partition only when every parent's fetch declared one.
            known = bool(self._totals) and None not in self._totals
            self.declared_total = sum(t or 0 for t in self._totals) if known else None

    def to_dict(self) -> dict[str, Any]:
        self.tick()
        return {**super().to_dict(), "parents": {
            "endpoint": self.parent, "field": self.field, "visited": self.parents_visited,
            "without_value": self.without_value,
        }}


class ParentPages:
    """The pages of a child's partition, parent after parent, indexed from 0 as one fetch."""

    def __init__(self, fetch: Callable[[PartitionRequest], Any],
                 requests: list[PartitionRequest], stats: ChildStats):
        self._fetch = fetch
        self._requests = requests
        self.stats = stats

    @property
    def parents(self) -> int:
        return len(self._requests)

    def __iter__(self) -> Iterator[Any]:
        index = 0
        for request in self._requests:
            stream = self._fetch(request)
            for page in stream:
                page.index = index
                index += 1
                yield page
            self.stats.absorb(stream.stats)
