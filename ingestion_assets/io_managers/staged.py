"""Partitions written by a step in staging, made current by their IO manager.

An endpoint's step fetches, archives and normalizes in one pass (``factory.py``): the raw
pages and the Parquet table of a partition are written side by side as new, uncommitted
versions while the pages arrive. Only when both are complete does the step return them, as
:class:`StagedPartitions`, and each IO manager's ``handle_output`` commits its own (the raw
archive first, then the table) and records the metadata. A failure anywhere before that
discards both new versions, so every partition stored before stays exactly as it was.
(A backfill of a range commits each partition itself as soon as both are complete; the
IO managers then only record them: see ``endpoint_step.py``.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

import dagster as dg
from upath import UPath

from ingestion_assets.io_managers import storage


@dataclass
class StagedPartition:
    """One partition written in staging: committing it swaps it into place.

    Attributes:
        writer: the open ``storage.PartitionWriter`` holding the new version's files.
        marker: the marker file's content, written by ``commit`` just before the pointer.
        metadata: the materialization metadata of the partition (``version`` is added on
            commit).
        commit_kwargs: further arguments of ``PartitionWriter.commit`` (e.g. ``rows``).
    """

    writer: storage.PartitionWriter
    marker: bytes
    metadata: dict[str, Any] = field(default_factory=dict)
    commit_kwargs: dict[str, Any] = field(default_factory=dict)
    done: bool = False
    committed: bool = False

    @property
    def folder(self) -> UPath:
        return self.writer.leaf

    def commit(self) -> dict[str, Any]:
        """Make the version current; returns the metadata (again, if committed already:
        a backfill commits each partition as it completes, the IO manager records it)."""
        if self.committed:
            return self.metadata
        if self.done:
            raise dg.DagsterInvariantViolationError(
                f"staged partition {storage.display_uri(self.folder)} was discarded"
            )
        try:
            version = self.writer.commit(self.marker, **self.commit_kwargs)
            self.committed = True
        finally:
            self.done = True
            self.writer.__exit__(None, None, None)
        if getattr(version, "id", None) is not None:
            self.metadata["version"] = version.id
        return self.metadata

    def discard(self) -> None:
        """Remove the uncommitted version; the stored partition is untouched."""
        if not self.done:
            self.done = True
            self.writer.__exit__(None, None, None)


class StagedPartitions(dict):
    """Partition key (None: unpartitioned) -> :class:`StagedPartition`, as a step output."""

    def discard(self) -> None:
        for staged in self.values():
            staged.discard()


def commit_output(context: dg.OutputContext, base: UPath, obj: StagedPartitions) -> None:
    """Commit every staged partition an output covers, in order, and record its metadata.

    The folders were chosen by the step with :func:`partition_folder`; a staged partition
    in another folder than the IO manager's own is refused (a misconfigured base path).
    """
    try:
        for key, folder, staged in storage.output_partitions(base, context, obj):
            if isinstance(staged, StagedPartitions):  # unpartitioned: the whole mapping
                staged = staged[None]
            if storage.display_uri(staged.folder) != storage.display_uri(folder):
                raise dg.DagsterInvariantViolationError(
                    f"{context.asset_key.to_user_string()} partition {key!r} was staged for "
                    f"{storage.display_uri(staged.folder)}, but this IO manager stores it at "
                    f"{storage.display_uri(folder)}"
                )
            storage.add_partition_metadata(context, key, staged.commit())
    finally:
        obj.discard()  # whatever was not committed (after a failure) is removed


class PartitionIOManager(dg.ConfigurableIOManager):
    """What the raw and the Parquet IO managers share: a base folder of versioned partitions,
    outputs staged by the step (committed here) or written here, inputs read from the
    current versions.

    A subclass sets ``marker`` (the file that completes a version) and ``stored`` (what it
    stores, for messages), and implements ``_store`` (write an output that the step did not
    stage) and ``load_input``.
    """

    base_path: str
    allow_missing_partitions: bool = False
    # Superseded versions stay this long for readers still using them (storage.DEFAULT_GRACE).
    version_grace_seconds: float = storage.DEFAULT_GRACE.total_seconds()

    marker: ClassVar[str]
    stored: ClassVar[str]

    @property
    def _base(self) -> UPath:
        return UPath(self.base_path)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            context.log.debug(f"No {self.stored} returned; nothing stored.")
            return
        if isinstance(obj, StagedPartitions):  # written by the step itself (factory.py)
            commit_output(context, self._base, obj)
            return
        self._store(context, obj)

    def _store(self, context: dg.OutputContext, obj: Any) -> None:
        raise NotImplementedError

    def _new_version(self, folder: UPath) -> storage.PartitionWriter:
        """An open writer of a new version of the partition in ``folder`` (not yet current)."""
        grace = timedelta(seconds=self.version_grace_seconds)
        return storage.PartitionWriter(folder, self.marker, grace=grace).__enter__()

    def _stored_inputs(
        self, context: dg.InputContext
    ) -> tuple[list[tuple[str | None, storage.PartitionVersion]], bool]:
        """The current versions an input reads (:func:`storage.stored_inputs`)."""
        return storage.stored_inputs(self._base, context, self.marker, what=self.stored,
                                     allow_missing=self.allow_missing_partitions)


def partition_folder(
    base: str | UPath,
    asset_key: dg.AssetKey,
    partitions_def: dg.PartitionsDefinition | None,
    key: str | None,
    definition_metadata: Mapping[str, Any] | None,
) -> UPath:
    """The folder an IO manager with ``base`` stores one partition of an asset in."""
    dims = (
        None
        if key is None or partitions_def is None
        else storage.partition_dimensions(partitions_def, key, definition_metadata)
    )
    return storage.partition_folder(UPath(base), list(asset_key.path), dims)
