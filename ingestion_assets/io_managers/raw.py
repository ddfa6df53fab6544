"""The raw-response IO manager: every page exactly as the API sent it, plus a manifest.

Each write of a partition is a version (layout and commit:
:mod:`ingestion_assets.io_managers.storage`) holding::

    bodies.zst      the page bodies, one zstd frame per page, in page order
    manifest.json   written last: per page the request URL and params (as redacted by the
                    client), status, selected headers, fetched_at, record count, bytes,
                    compressed bytes, offset in bodies.zst and sha256 of the body; totals;
                    the fetch statistics

Pages are compressed and written one at a time as they arrive, so memory is bounded by a
page. The version becomes current in one atomic step after every file is durable: a failed
run leaves the previous version current and intact.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar

import dagster as dg
import orjson
import zstandard
from upath import UPath

from ingestion_assets.io_managers import storage
from ingestion_assets.io_managers.staged import PartitionIOManager, StagedPartition
from ingestion_assets.safe_metadata import redact_metadata

MANIFEST = "manifest.json"
BODIES = "bodies.zst"
MANIFEST_VERSION = 1


class RawPartitionCorrupted(RuntimeError):
    """A stored page does not match its manifest (size or checksum)."""


@dataclass
class RawPartition:
    """One stored partition of raw pages.

    Attributes:
        uri: where the files of the version read are.
        path: that folder as a ``UPath`` (immutable while the partition is read).
        manifest: the parsed ``manifest.json``.
        partition_key: the Dagster partition key (None for an unpartitioned asset).
        version: the version id read (None for a partition written before versions).
    """

    uri: str
    path: UPath
    manifest: dict[str, Any]
    partition_key: str | None = None
    version: str | None = None

    @classmethod
    def open(
        cls, folder: str | os.PathLike | UPath, partition_key: str | None = None
    ) -> RawPartition:
        """Open the current version of a stored partition (reads only, changes nothing).

        The pages read later come from that version, even if a new one is committed
        meanwhile.

        Raises:
            FileNotFoundError: no complete partition is stored there.
        """
        folder = UPath(folder)
        version = storage.current_version(folder, MANIFEST)
        if version is None:
            raise FileNotFoundError(f"no stored raw partition at {storage.display_uri(folder)}")
        return cls.of_version(version, partition_key)

    @classmethod
    def of_version(
        cls, version: storage.PartitionVersion, partition_key: str | None = None
    ) -> RawPartition:
        """A stored version of a partition (its manifest is read now)."""
        return cls(
            uri=storage.display_uri(version.folder),
            path=version.folder,
            manifest=orjson.loads(version.read_bytes(MANIFEST)),
            partition_key=partition_key,
            version=version.id,
        )

    @property
    def record_count(self) -> int:
        """Records over all pages, as counted when the pages were fetched."""
        return int(self.manifest["totals"]["records"])

    @property
    def page_count(self) -> int:
        """Number of stored pages."""
        return int(self.manifest["totals"]["pages"])

    @property
    def pages(self) -> list[dict[str, Any]]:
        """The manifest entry of every page (no bodies)."""
        return self.manifest["pages"]

    def iter_pages(self, verify: bool = True) -> Iterator[tuple[dict[str, Any], bytes]]:
        """Yield ``(page_meta, body_bytes)`` one page at a time, in page order.

        Args:
            verify: check each body's length and sha256 against the manifest.
        """
        decompressor = zstandard.ZstdDecompressor()
        with (self.path / BODIES).open("rb") as f:
            for meta in self.manifest["pages"]:
                frame = f.read(meta["compressed_bytes"])
                body = decompressor.decompress(frame) if frame else b""
                if verify and (
                    len(body) != meta["bytes"] or hashlib.sha256(body).hexdigest() != meta["sha256"]
                ):
                    raise RawPartitionCorrupted(
                        f"{self.uri}: page {meta['index']} does not match its manifest"
                    )
                yield meta, body


@dataclass
class RawPartitionSet(Sequence[RawPartition]):
    """Several stored partitions (an input covering a partition range, or all of them).

    A sequence of :class:`RawPartition` in partition-key order, with the same streaming
    ``iter_pages()`` and ``record_count`` as a single partition.
    """

    partitions: list[RawPartition] = field(default_factory=list)

    def __getitem__(self, index):  # type: ignore[override]
        return self.partitions[index]

    def __len__(self) -> int:
        return len(self.partitions)

    @property
    def record_count(self) -> int:
        return sum(p.record_count for p in self.partitions)

    @property
    def partition_keys(self) -> list[str | None]:
        return [p.partition_key for p in self.partitions]

    def iter_pages(self, verify: bool = True) -> Iterator[tuple[dict[str, Any], bytes]]:
        """Every page of every partition, one at a time; ``page_meta['partition']`` is set."""
        for partition in self.partitions:
            for meta, body in partition.iter_pages(verify=verify):
                yield {**meta, "partition": partition.partition_key}, body


def _utc_iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).isoformat()
    return str(value)


def _jsonable(value: Any) -> Any:
    # Params and headers as given, made JSON-safe (tuples, bytes, datetimes).
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, datetime):
        return _utc_iso(value)
    return str(value)


def _page_entry(page: Any, position: int, body: bytes, frame: bytes, offset: int) -> dict[str, Any]:
    """The manifest entry of one stored page (``offset``: where its frame starts)."""
    count = getattr(page, "record_count", None)
    if count is None:
        records = getattr(page, "records", None)
        count = len(records) if records is not None else 0
    entry = {
        "index": getattr(page, "index", position),
        "url": getattr(page, "url", None),
        "params": _jsonable(getattr(page, "params", None)),
        "status": getattr(page, "status", None),
        "headers": _jsonable(dict(getattr(page, "headers", None) or {})),
        "fetched_at": _utc_iso(getattr(page, "fetched_at", None)),
        "records": count,
        "bytes": len(body),
        "compressed_bytes": len(frame),
        "offset": offset,
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    for optional in ("attempts", "elapsed_s"):  # the HTTP core's Page has them
        if hasattr(page, optional):
            entry[optional] = _jsonable(getattr(page, optional))
    return entry


def _partition_metadata(
    folder: UPath, totals: dict[str, int], stats: dict[str, Any] | None
) -> dict[str, Any]:
    """The materialization metadata of a staged partition (redacted)."""
    metadata: dict[str, Any] = {
        **totals,
        "dagster/row_count": totals["records"],
        "uri": storage.uri_metadata(folder),
        "dagster/uri": storage.display_uri(folder),
    }
    if stats:
        metadata["request_stats"] = dg.MetadataValue.json(stats)
        metadata.update(_stats_metadata(stats))
    return redact_metadata(metadata)


PARENTS_VISITED_METADATA_KEY = "parents/visited"
"""A child endpoint's partition: how many parent records its requests were made for."""


def _stats_metadata(stats: dict[str, Any]) -> dict[str, Any]:
    """The HTTP statistics of a fetch as separate entries, so the UI can show and plot them."""
    elapsed = stats.get("elapsed_s") or 0.0
    metadata: dict[str, Any] = {
        "http/requests": stats.get("requests", 0),
        "http/retries": stats.get("retries_total", 0),
        "http/rate_limited_429": stats.get("rate_limited", 0),
        "http/rate_limit_wait_s": float(stats.get("rate_limit_wait_s", 0.0)),
        "http/duration_s": float(elapsed),
        "http/records_per_second": (
            round(stats.get("records", 0) / elapsed, 1) if elapsed > 0 else 0.0
        ),
    }
    if stats.get("declared_total") is not None:
        metadata["api/declared_total"] = stats["declared_total"]
    if isinstance(stats.get("parents"), dict):  # a child endpoint (parents.py)
        metadata[PARENTS_VISITED_METADATA_KEY] = stats["parents"].get("visited", 0)
    return metadata


class RawResponseIOManager(PartitionIOManager):
    """Store every fetched page (zstd bodies + JSON manifest), atomically per partition.

    ``handle_output`` takes an iterable of pages (the HTTP core's ``PageStream``): objects
    with ``index, url, params, status, headers, body, records, fetched_at``; an optional
    ``stats`` attribute on the iterable (with ``to_dict()``) is stored in the manifest.

    ``load_input`` returns a :class:`RawPartition` when the input maps to one upstream
    partition (or the asset is unpartitioned), and a :class:`RawPartitionSet` (a sequence of
    RawPartition, also with ``iter_pages()``) when it maps to several. Missing partitions
    fail, unless the input reads all partitions (an unpartitioned downstream asset), or
    ``allow_missing_partitions`` is set here or in the input's metadata.
    """

    base_path: str = "data/raw"
    compression_level: int = 3

    marker: ClassVar[str] = MANIFEST
    stored: ClassVar[str] = "raw pages"

    def _store(self, context: dg.OutputContext, obj: Iterable[Any]) -> None:
        storage.write_partitions(
            self._base, context, obj,
            lambda key, folder, data: self._write_partition(context, key, folder, data),
        )

    def _write_partition(
        self, context: dg.OutputContext, key: str | None, folder: UPath, obj: Iterable[Any]
    ) -> dict[str, Any]:
        """Store one partition's pages, then its manifest; returns its metadata."""
        staged = self.stage_partition(
            folder, key, obj, asset_key_path=storage.asset_key_path(context),
            run_id=context.run_id,
        )
        return staged.commit()

    def stage_partition(
        self, folder: UPath, key: str | None, obj: Iterable[Any], *,
        asset_key_path: list[str], run_id: str,
    ) -> StagedPartition:
        """Write one partition's pages and manifest as a new version, not yet current.

        Nothing is visible until :meth:`StagedPartition.commit`; an error here removes the
        version's files and leaves the stored partition as it was.
        """
        writer = self._new_version(folder)
        try:
            entries = self._write_bodies(writer, obj)
            totals = {
                "pages": len(entries),
                **{n: sum(e[n] for e in entries) for n in ("records", "bytes", "compressed_bytes")},
            }
            stats = getattr(obj, "stats", None)
            stats_dict = _jsonable(stats.to_dict()) if hasattr(stats, "to_dict") else None
            manifest = {
                "version": MANIFEST_VERSION,
                "asset_key": asset_key_path,
                "partition": key,
                "run_id": run_id,
                "written_at": datetime.now(timezone.utc).isoformat(),
                "bodies": BODIES,
                "compression": "zstd",
                "totals": totals,
                "stats": stats_dict,
                "pages": entries,
            }
            marker = orjson.dumps(manifest, option=orjson.OPT_INDENT_2)
        except BaseException:
            writer.__exit__(None, None, None)  # not committed: the version's files go
            raise
        return StagedPartition(writer, marker, _partition_metadata(folder, totals, stats_dict),
                               commit_kwargs={"rows": totals["records"]})

    def _write_bodies(
        self, writer: storage.PartitionWriter, pages: Iterable[Any]
    ) -> list[dict[str, Any]]:
        """Compress and write each page's body as it arrives; returns the manifest entries."""
        compressor = zstandard.ZstdCompressor(level=self.compression_level, write_content_size=True)
        entries: list[dict[str, Any]] = []
        offset = 0
        with writer.open(BODIES) as out:
            for position, page in enumerate(pages):
                body = page.body or b""
                frame = compressor.compress(body)
                out.write(frame)
                out.flush()  # in the file (or the upload buffer) before the next page
                entries.append(_page_entry(page, position, body, frame, offset))
                offset += len(frame)
        return entries

    def load_input(self, context: dg.InputContext) -> RawPartition | RawPartitionSet:
        versions, several = self._stored_inputs(context)
        partitions = [RawPartition.of_version(version, key) for key, version in versions]
        return RawPartitionSet(partitions) if several else partitions[0]
