"""The event-log records an endpoint's check step reads, fetched in a few batched queries.

A check step evaluates every partition its run materialized (a single-run backfill of 30
days gives 30 evaluations per check). Asked one at a time, the records each evaluation
needs (the partition's own materialization, its raw materialization, the materializations
just before it for the median and the schema comparison, its neighbours' for uniqueness)
cost a few queries per partition and check. :class:`MaterializationLog` loads them up front
for all the step's partitions (one query per asset and a few pages of the table's recent
history) and answers from memory, falling back to a query only for what it did not load.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg

from ingestion_assets.dagster_shim import materialization_target

#: Records per event-log query.
PAGE = 200


@dataclass
class Materialization:
    """One materialization event of an asset (partition), as the checks read it."""

    storage_id: int
    run_id: str
    timestamp: float
    partition: str | None
    metadata: dict[str, Any]

    @property
    def target(self) -> Any:
        """Links a check result to this materialization (``dagster_shim``)."""
        return materialization_target(self.storage_id, self.run_id, self.timestamp)

    def value(self, key: str, default: Any = None) -> Any:
        entry = self.metadata.get(key)
        return default if entry is None else getattr(entry, "value", entry)

    @classmethod
    def of(cls, record: Any) -> Materialization:
        mat = record.asset_materialization
        return cls(storage_id=record.storage_id, run_id=record.run_id,
                   timestamp=record.timestamp, partition=mat.partition,
                   metadata=dict(mat.metadata))


def fetch(
    instance: dg.DagsterInstance, key: dg.AssetKey, partitions: list[str] | None = None,
    before: int | None = None, limit: int = 1, cursor: str | None = None,
) -> Any:
    """One page of an asset's materializations, newest first."""
    return instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=partitions,
                              before_storage_id=before),
        limit=limit, cursor=cursor,
    )


class MaterializationLog:
    """Materializations read by the checks of one step; batched, then from memory."""

    def __init__(self, instance: dg.DagsterInstance, history_limit: int = 2000):
        self.instance = instance
        self._latest: dict[tuple[dg.AssetKey, str | None], Materialization | None] = {}
        self._history: dict[dg.AssetKey, list[Materialization]] = {}
        self._cursor: dict[dg.AssetKey, str | None] = {}
        self._exhausted: set[dg.AssetKey] = set()
        self._history_limit = history_limit
        #: partition -> its nearest partitions, for uniqueness (filled by the check step)
        self.neighbours: dict[str | None, list[str]] = {}

    def preload(self, key: dg.AssetKey, partitions: Iterable[str | None]) -> None:
        """Load the latest materialization of each partition in as few queries as possible."""
        wanted = [p for p in dict.fromkeys(partitions)
                  if p is not None and (key, p) not in self._latest]
        for start in range(0, len(wanted), PAGE):
            chunk = wanted[start:start + PAGE]
            missing, cursor = set(chunk), None
            while missing:
                page = fetch(self.instance, key, chunk, limit=PAGE, cursor=cursor)
                for record in page.records:
                    mat = Materialization.of(record)
                    if mat.partition in missing:
                        self._latest[(key, mat.partition)] = mat
                        missing.discard(mat.partition)
                if not page.has_more:
                    break
                cursor = page.cursor
            for partition in missing:
                self._latest[(key, partition)] = None

    def latest(
        self, key: dg.AssetKey, partition: str | None = None, before: int | None = None
    ) -> Materialization | None:
        """The newest materialization of ``key`` (of one partition; before a storage id)."""
        if partition is not None and (key, partition) in self._latest:
            known = self._latest[(key, partition)]
            if before is None or (known is not None and known.storage_id < before):
                return known
        elif partition is None and before is not None:
            return next(self.history(key, before), None)
        found = fetch(self.instance, key, [partition] if partition is not None else None,
                      before=before).records
        return Materialization.of(found[0]) if found else None

    def history(self, key: dg.AssetKey, before: int) -> Iterator[Materialization]:
        """Every materialization of ``key`` (any partition) before a storage id, newest first.

        Pages of the asset's history are fetched once per step and shared by every
        partition's evaluation (at most ``history_limit`` records).
        """
        records = self._history.setdefault(key, [])
        position = 0
        while True:
            while position < len(records):
                if records[position].storage_id < before:
                    yield records[position]
                position += 1
            if key in self._exhausted or len(records) >= self._history_limit:
                return
            page = fetch(self.instance, key, limit=PAGE, cursor=self._cursor.get(key))
            records += [Materialization.of(r) for r in page.records]
            self._cursor[key] = page.cursor
            if not page.has_more:
                self._exhausted.add(key)
