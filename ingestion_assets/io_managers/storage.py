"""Partition folders shared by the IO managers: Hive-style layout and atomic replacement.

Layout, under a base path (a local folder or any fsspec URL, through ``UPath``)::

    <base>/<asset key path>/<dim>=<value>/                 single-dimension partitions
    <base>/<asset key path>/<dim1>=<v1>/<dim2>=<v2>/       multi-partitions (dimension order)
    <base>/<asset key path>/snapshot/                      unpartitioned assets

The dimension of a single-dimension partition is named ``partition`` unless the asset's
definition metadata sets ``ingestion/partition_dimension`` (e.g. ``date``). Partition
values are percent-escaped where a path could not hold them (``/``, ``:``, ``=``, ``%``...).

Atomic replacement: a partition is written into a hidden sibling folder
``.<leaf>.staging-<token>``; when every file is written, a *marker* file (the manager's
manifest) is written last, then the folder is swapped into place:

* local filesystems: ``rename(leaf -> .<leaf>.old-<token>)``, ``rename(staging -> leaf)``,
  delete the old folder. Both renames are atomic.
* object stores (no directory rename): the old leaf's marker is deleted first, then the
  old files; the staging files are copied in with the marker copied last; staging is
  deleted.

A complete partition is a leaf folder holding its marker. A failed run never touches the
leaf (its staging folder is removed, or left hidden if the process was killed). A swap
interrupted half-way is recovered by :func:`resolve_partition` on the next read or write:
it restores the previous version if one was moved aside (local), else promotes the
complete staging copy (object stores, where the old files are already gone). Hidden
folders (leading ``.``) are ignored by Parquet dataset readers.

Assumes one writer per partition at a time (Dagster runs of the same partition should not
overlap; use a concurrency pool or run queue limits if they could).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import dagster as dg
from upath import UPath

from ingestion_assets.io_managers.heap import frozen_heap

PARTITION_DIMENSION_METADATA_KEY = "ingestion/partition_dimension"
DEFAULT_DIMENSION = "partition"
SNAPSHOT_FOLDER = "snapshot"

# Incomplete staging folders older than this are from killed runs and are cleaned up.
STALE_STAGING_AGE = timedelta(hours=6)

_STAGING = ".staging-"
_OLD = ".old-"
_TOKEN_TIME = "%Y%m%dT%H%M%S%f"  # sortable: later writers have greater tokens


def escape_segment(value: str) -> str:
    """Percent-escape a path segment the way Hive does (``/``, ``:``, ``=``, ``%`` ...)."""
    escaped = quote(str(value), safe=" -_.,+@~")
    return "%2E" + escaped[1:] if escaped.startswith(".") else escaped


def is_local(path: UPath) -> bool:
    """True when ``path`` is on the local filesystem (directory renames are atomic)."""
    return path.protocol in ("", "file", "local")


def fs_path(path: UPath) -> str:
    """The path as its fsspec filesystem (or the OS, when local) expects it."""
    return path.path if not is_local(path) else os.fspath(path.path)


# -- from Dagster contexts to folders -------------------------------------------------------


def asset_key_path(context: dg.InputContext | dg.OutputContext) -> list[str]:
    """The asset key path, or ``_ops/<step>/<output>`` for a plain op output."""
    if context.has_asset_key:
        return list(context.asset_key.path)
    return ["_ops", *context.get_identifier()]


def partition_dimensions(
    partitions_def: dg.PartitionsDefinition,
    partition_key: str,
    metadata: Mapping[str, Any] | None,
) -> list[tuple[str, str]]:
    """``[(dimension, value), ...]`` for one partition key, in the dimension order."""
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        if isinstance(partition_key, dg.MultiPartitionKey):
            by_dim = partition_key.keys_by_dimension
        else:
            by_dim = partitions_def.get_partition_key_from_str(partition_key).keys_by_dimension
        return [(dim.name, by_dim[dim.name]) for dim in partitions_def.partitions_defs]
    dimension = (metadata or {}).get(PARTITION_DIMENSION_METADATA_KEY) or DEFAULT_DIMENSION
    return [(str(dimension), str(partition_key))]


def partition_folder(
    base: UPath, key_path: Sequence[str], dimensions: Sequence[tuple[str, str]] | None
) -> UPath:
    """The leaf folder of one partition (``dimensions=None``: the unpartitioned snapshot)."""
    folder = base.joinpath(*(escape_segment(part) for part in key_path))
    if dimensions is None:
        return folder / SNAPSHOT_FOLDER
    for dimension, value in dimensions:
        folder = folder / f"{escape_segment(dimension)}={escape_segment(value)}"
    return folder


def output_partitions(
    base: UPath, context: dg.OutputContext, obj: Any
) -> Iterator[tuple[str | None, UPath, Any]]:
    """``(partition key, folder, that partition's data)`` for every partition an output covers.

    A step covering several partitions (a single-run backfill) returns a mapping of partition
    key -> data; each partition is then written, and replaced atomically, on its own.
    """
    key_path = asset_key_path(context)
    if not context.has_asset_partitions:
        yield None, partition_folder(base, key_path, None), obj
        return
    keys = [str(k) for k in context.asset_partition_keys]
    if isinstance(obj, Mapping):
        missing = [k for k in keys if k not in obj]
        if missing:
            raise dg.DagsterInvariantViolationError(
                f"{context.asset_key.to_user_string()}: the step covers partitions "
                f"{keys[0]}..{keys[-1]} but returned no data for {missing[:5]}"
            )
        parts = [(k, obj[k]) for k in keys]
    elif len(keys) == 1:
        parts = [(keys[0], obj)]
    else:
        raise dg.DagsterInvariantViolationError(
            f"{context.asset_key.to_user_string()}: this step covers {len(keys)} partitions "
            f"({keys[0]}..{keys[-1]}); return a mapping of partition key -> data to write each."
        )
    for key, data in parts:
        dims = partition_dimensions(context.asset_partitions_def, key, context.definition_metadata)
        yield key, partition_folder(base, key_path, dims), data


def write_partitions(
    base: UPath,
    context: dg.OutputContext,
    obj: Any,
    write: Callable[[str | None, UPath, Any], Mapping[str, Any]],
) -> None:
    """Write every partition an output covers with ``write(key, folder, data) -> metadata``.

    The garbage collector's full passes skip the objects that already exist meanwhile
    (``heap.frozen_heap``): the pages stream through many small allocations.
    """
    with frozen_heap():
        for key, folder, data in output_partitions(base, context, obj):
            add_partition_metadata(context, key, write(key, folder, data))


def add_partition_metadata(
    context: dg.OutputContext, key: str | None, metadata: Mapping[str, Any]
) -> None:
    """Metadata of one written partition, shown on that partition's materialization."""
    if key is None or len(context.asset_partition_keys) == 1:
        context.add_output_metadata(dict(metadata))
    else:
        context.step_context.add_asset_metadata(
            dict(metadata), asset_key=context.asset_key, partition_key=key
        )


def input_folders(base: UPath, context: dg.InputContext) -> list[tuple[str | None, UPath]]:
    """``[(partition key or None, folder), ...]`` for every upstream partition an input needs."""
    key_path = asset_key_path(context)
    if not (context.has_asset_key and context.has_asset_partitions):
        return [(None, partition_folder(base, key_path, None))]
    upstream = context.upstream_output
    metadata = upstream.definition_metadata if upstream is not None else {}
    partitions_def = context.asset_partitions_def
    return [
        (
            str(key),
            partition_folder(base, key_path, partition_dimensions(partitions_def, key, metadata)),
        )
        for key in context.asset_partition_keys
    ]


def reads_all_partitions(context: dg.InputContext) -> bool:
    """True when the input asks for every partition (an unpartitioned downstream asset)."""
    if not context.has_asset_partitions:
        return False
    try:
        with dg.partition_loading_context(dynamic_partitions_store=context.instance):
            total = context.asset_partitions_def.get_num_partitions()
    except Exception:  # noqa: BLE001 - only a hint; dynamic defs may need more context
        return False
    return total > 1 and len(context.asset_partition_keys) == total


def display_uri(path: UPath) -> str:
    """A URI for metadata and logs (an absolute path for local folders)."""
    if is_local(path):
        return os.path.abspath(fs_path(path))
    return str(path)


def uri_metadata(path: UPath) -> dg.MetadataValue:
    """A clickable path (local) or URL (object store) metadata value."""
    if is_local(path):
        return dg.MetadataValue.path(display_uri(path))
    return dg.MetadataValue.url(str(path))


# -- atomic writes ----------------------------------------------------------------------


def _now_token() -> str:
    return f"{datetime.now(timezone.utc).strftime(_TOKEN_TIME)}-{uuid.uuid4().hex[:8]}"


def _token_time(token: str) -> datetime | None:
    try:
        return datetime.strptime(token.split("-", 1)[0], _TOKEN_TIME).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def _siblings(leaf: UPath, kind: str) -> list[tuple[str, UPath]]:
    """Hidden ``.<leaf>.<kind><token>`` folders next to ``leaf``, oldest token first."""
    prefix = f".{leaf.name}{kind}"
    parent = leaf.parent
    try:
        entries = list(parent.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = [(p.name[len(prefix) :], p) for p in entries if p.name.startswith(prefix)]
    return sorted(found, key=lambda item: item[0])


def _remove_tree(path: UPath) -> None:
    with contextlib.suppress(FileNotFoundError):
        if is_local(path):
            shutil.rmtree(fs_path(path))
        else:
            path.fs.rm(fs_path(path), recursive=True)


def _move_into_place(staging: UPath, leaf: UPath, marker: str, token: str) -> None:
    """Swap a complete staging folder in as ``leaf`` (see the module docstring)."""
    if is_local(staging):
        old = leaf.parent / f".{leaf.name}{_OLD}{token}"
        moved_old = False
        if os.path.isdir(fs_path(leaf)):
            os.rename(fs_path(leaf), fs_path(old))
            moved_old = True
        os.rename(fs_path(staging), fs_path(leaf))
        if moved_old:
            _remove_tree(old)
        return
    fs = staging.fs
    # Object store: retire the old version marker first so it never looks complete again.
    if fs.exists(fs_path(leaf / marker)):
        fs.rm(fs_path(leaf / marker))
    if fs.exists(fs_path(leaf)):
        fs.rm(fs_path(leaf), recursive=True)
    files = [p for p in staging.rglob("*") if p.is_file()]
    for src in sorted(files, key=lambda p: p.name == marker):  # the marker last
        rel = src.relative_to(staging)
        dst = leaf.joinpath(*rel.parts)
        fs.copy(fs_path(src), fs_path(dst))
    _remove_tree(staging)


def resolve_partition(leaf: UPath, marker: str) -> UPath | None:
    """The complete folder of a partition, recovering a half-finished swap; None if absent."""
    if (leaf / marker).exists():
        return leaf
    olds = [(t, p) for t, p in _siblings(leaf, _OLD) if (p / marker).exists()]
    stagings = [(t, p) for t, p in _siblings(leaf, _STAGING) if (p / marker).exists()]
    if not olds and not stagings:
        return None
    try:
        if olds:
            # Local swap interrupted after the old version moved aside: put it back; the
            # run that was swapping failed, so the previous version is the current one.
            token, old = olds[-1]
            if leaf.exists():
                _remove_tree(leaf)
            os.rename(fs_path(old), fs_path(leaf))
        else:
            # Object store: the old files are gone already; finish the copy.
            token, staging = stagings[-1]
            _move_into_place(staging, leaf, marker, token)
    except (FileNotFoundError, FileExistsError, OSError):
        # Someone else recovered it meanwhile.
        pass
    return leaf if (leaf / marker).exists() else None


class PartitionWriter:
    """Write one partition folder atomically.

    Example:
        >>> with PartitionWriter(folder, marker="manifest.json") as writer:
        ...     with (writer.staging / "data.bin").open("wb") as f:
        ...         f.write(...)
        ...     writer.commit(manifest_bytes)   # marker written last, then swapped in

    Leaving the block without ``commit`` (an exception) deletes the staging folder and
    leaves the previous version of the partition untouched.
    """

    def __init__(self, leaf: UPath, marker: str):
        self.leaf = leaf
        self.marker = marker
        self.token = _now_token()
        self.staging = leaf.parent / f".{leaf.name}{_STAGING}{self.token}"
        self.committed = False

    def __enter__(self) -> PartitionWriter:
        # Finish any swap a killed run left half-done before building on top of it.
        resolve_partition(self.leaf, self.marker)
        self.staging.mkdir(parents=True, exist_ok=True)
        return self

    def commit(self, marker_content: bytes) -> None:
        """Write the marker (last), then swap the staging folder into place."""
        with (self.staging / self.marker).open("wb") as f:
            f.write(marker_content)
        _move_into_place(self.staging, self.leaf, self.marker, self.token)
        self.committed = True
        self._clean_leftovers()

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.committed:
            _remove_tree(self.staging)

    def _clean_leftovers(self) -> None:
        # Complete stagings older than this commit are superseded; incomplete ones are from
        # killed runs once they are old enough not to belong to a live writer.
        now = datetime.now(timezone.utc)
        for kind in (_STAGING, _OLD):
            for token, path in _siblings(self.leaf, kind):
                if token == self.token:
                    continue
                started = _token_time(token)
                complete = (path / self.marker).exists()
                superseded = token < self.token and complete
                stale = started is not None and now - started > STALE_STAGING_AGE
                if superseded or stale:
                    with contextlib.suppress(OSError):
                        _remove_tree(path)
