"""Small stand-ins for what the HTTP core and the table assets hand to the IO managers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import dagster as dg
import orjson

FETCHED_AT = datetime(2025, 1, 6, 3, 0, tzinfo=timezone.utc)


@dataclass
class FakePage:
    """The duck type of ``ingestion_assets.http.Page`` the raw IO manager relies on."""

    index: int
    url: str
    params: dict[str, Any]
    status: int
    headers: dict[str, str]
    body: bytes
    records: list[dict[str, Any]]
    fetched_at: datetime


@dataclass
class FakeStats:
    pages: int = 0
    records: int = 0
    retries: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"pages": self.pages, "records": self.records, "retries": dict(self.retries)}


class FakePageStream:
    """An iterable of pages with ``.stats``, like the HTTP core's ``PageStream``.

    Args:
        pages: how many pages to yield.
        per_page: records per page.
        fail_after: raise after yielding this many pages (a fetch failing half-way).
        tag: a value stored in every record, to tell runs apart.
        on_page: called before each page is yielded (to look at the storage mid-stream).
    """

    def __init__(
        self,
        pages: int = 3,
        per_page: int = 4,
        *,
        fail_after: int | None = None,
        tag: str = "v1",
        on_page: Callable[[int], None] | None = None,
    ):
        self.n_pages = pages
        self.per_page = per_page
        self.fail_after = fail_after
        self.tag = tag
        self.on_page = on_page
        self.stats = FakeStats(retries={"rate_limited": 1})

    def __iter__(self) -> Iterator[FakePage]:
        for i in range(self.n_pages):
            if self.fail_after is not None and i == self.fail_after:
                raise ConnectionError(f"connection dropped on page {i}")
            if self.on_page is not None:
                self.on_page(i)
            records = [{"id": i * self.per_page + j, "tag": self.tag} for j in range(self.per_page)]
            body = orjson.dumps({"data": records, "has_more": i < self.n_pages - 1})
            self.stats.pages += 1
            self.stats.records += len(records)
            yield FakePage(
                index=i,
                url=f"http://127.0.0.1:1/v1/items?limit={self.per_page}&page={i}",
                params={"limit": self.per_page, "page": i, "api_key": "***"},
                status=200,
                headers={"Content-Type": "application/json", "X-RateLimit-Remaining": "9"},
                body=body,
                records=records,
                fetched_at=FETCHED_AT + timedelta(seconds=i),
            )


def materialize(assets: list, resources: dict, partition_key: str | None = None, **kw):
    """``dg.materialize`` on a fresh ephemeral instance (or the one given)."""
    kw.setdefault("instance", dg.DagsterInstance.ephemeral())
    return dg.materialize(assets, resources=resources, partition_key=partition_key, **kw)


def output_metadata(result: dg.ExecuteInJobResult, asset_key: str) -> dict[str, Any]:
    """The metadata of an asset's materialization event, as the UI shows it."""
    [event] = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey.from_user_string(asset_key)
    ]
    return dict(event.materialization.metadata)


def current_folder(partition_folder, marker: str):
    """The folder of a partition's current version (where a reader finds its files)."""
    from ingestion_assets.io_managers.storage import resolve_partition

    folder = resolve_partition(partition_folder, marker)
    assert folder is not None, f"no current version at {partition_folder}"
    return folder


def current_names(partition_folder, marker: str) -> list[str]:
    """The file names of a partition's current version, as its pointer lists them."""
    from ingestion_assets.io_managers.storage import current_version

    version = current_version(partition_folder, marker)
    assert version is not None, f"no current version at {partition_folder}"
    return sorted(f.name for f in version.files)
