"""Partition folders shared by the IO managers: Hive-style layout and versioned commits.

Layout, under a base path (a local folder or any fsspec URL, through ``UPath``)::

    <base>/<asset key path>/<dim>=<value>/                 single-dimension partitions
    <base>/<asset key path>/<dim1>=<v1>/<dim2>=<v2>/       multi-partitions (dimension order)
    <base>/<asset key path>/snapshot/                      unpartitioned assets

The dimension of a single-dimension partition is named ``partition`` unless the asset's
definition metadata sets ``ingestion/partition_dimension`` (e.g. ``date``). Partition
values are percent-escaped where a path could not hold them (``/``, ``:``, ``=``, ``%``...).

Versions, not renames. Each write of a partition goes into a new folder of its own under
the partition's folder (the *leaf*), and is made current by replacing one small pointer::

    <leaf>/v=<version id>/...     immutable once committed: the files of one write
    <leaf>/_CURRENT               JSON: version id, rows, every file with size and sha256

The version id starts with the UTC time the write began, so ids sort by age. A commit
flushes and fsyncs every file of the version (local disks), then replaces ``_CURRENT`` in
one step: ``os.replace`` of an fsynced temporary file on a local disk, a single PUT on
object storage. That replacement is the only commit point: before it readers see the
previous version, after it the new one, never a mix.

Readers (:func:`current_version`) read the pointer once and then only the files of that
version; they never create, move or delete anything. Only writers remove versions, after
their commit, and only versions that are not current and have been out of use for longer
than a grace period (default one hour, :data:`DEFAULT_GRACE`): a reader that read the
pointer just before a replacement still finds every file of its version. Versions and
temporary files left by killed runs are removed the same way by a later writer.

Two writers of one partition each write their own version; the last commit wins and both
versions are complete. Partitions written before versions existed (files directly in the
leaf, or a swap interrupted by a killed run) are still read, in place and read-only, until
the next write replaces them (see ``docs/storage.md``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import IO, Any
from urllib.parse import quote

import dagster as dg
import orjson
from upath import UPath

from ingestion_assets.dagster_shim import add_asset_partition_metadata
from ingestion_assets.io_managers.heap import frozen_heap

PARTITION_DIMENSION_METADATA_KEY = "ingestion/partition_dimension"
DEFAULT_DIMENSION = "partition"
SNAPSHOT_FOLDER = "snapshot"

POINTER = "_CURRENT"
VERSION_PREFIX = "v="
POINTER_FORMAT = 1
# How long a version stays on disk after it stopped being current (and how old an
# uncommitted version or temporary file must be before a writer treats it as abandoned).
# Longer than the longest read of one partition and the longest write.
DEFAULT_GRACE = timedelta(hours=1)

_ID_TIME = "%Y%m%dT%H%M%S%fZ"  # sortable: later writes have greater ids
_TMP_SUFFIX = ".tmp"
_OBJECT_STORES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl")
# Folders of the layout before versions: a hidden staging copy and a moved-aside version.
_LEGACY_STAGING = ".staging-"
_LEGACY_OLD = ".old-"


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
        add_asset_partition_metadata(context, metadata, key)


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


def stored_inputs(
    base: UPath, context: dg.InputContext, marker: str, *, allow_missing: bool, what: str
) -> tuple[list[tuple[str | None, PartitionVersion]], bool]:
    """The current version of every upstream partition an input needs (reads only).

    A partition not stored fails the input, naming it, unless the input maps to several
    partitions and missing ones are allowed: by the IO manager (``allow_missing``), by the
    input's ``allow_missing_partitions`` metadata, or because the input reads all partitions
    (an unpartitioned downstream asset); then it is skipped.

    Args:
        marker: The marker file of a complete version (the IO manager's).
        what: What the IO manager stores, for messages (``"raw pages"``, ``"table"``).

    Returns:
        ``[(partition key or None, version), ...]`` in partition order, and whether the input
        maps to several partitions.
    """
    folders = input_folders(base, context)
    allow_missing = (
        allow_missing
        or bool(context.definition_metadata.get("allow_missing_partitions"))
        or reads_all_partitions(context)
    )
    found: list[tuple[str | None, PartitionVersion]] = []
    for key, folder in folders:
        version = current_version(folder, marker)
        if version is not None:
            found.append((key, version))
        elif allow_missing and len(folders) > 1:
            context.log.debug(f"Partition {key} of the {what} not stored yet; skipped.")
        else:
            raise FileNotFoundError(
                f"No stored {what} for {context.asset_key.to_user_string()}"
                + (f" partition {key!r}" if key is not None else "")
                + f" at {display_uri(folder)}; materialize it first."
            )
    return found, len(folders) > 1


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


# -- versions: reading -------------------------------------------------------------------


class PartitionPointerCorrupted(RuntimeError):
    """A partition's ``_CURRENT`` pointer cannot be parsed (it is only ever replaced whole)."""


@dataclass(frozen=True)
class VersionFile:
    """One file of a committed version, as its pointer lists it."""

    name: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class PartitionVersion:
    """The version of a partition a reader uses: read the pointer once, then only this.

    Attributes:
        leaf: the partition folder (``dagster/uri`` of its materializations).
        folder: the folder holding this version's files.
        id: the version id; None for a partition written before versions (read in place).
        files: the committed files (None for a partition written before versions).
        rows: the row (or record) count the writer committed, when it gave one.
        committed_at: when the pointer was replaced (ISO 8601, UTC).
    """

    leaf: UPath
    folder: UPath
    id: str | None
    files: tuple[VersionFile, ...] | None = None
    rows: int | None = None
    committed_at: str | None = None

    def path(self, name: str) -> UPath:
        """Where one file of this version is."""
        return self.folder / name

    def has_file(self, name: str) -> bool:
        if self.files is None:
            return self.path(name).exists()
        return any(f.name == name for f in self.files)

    def read_bytes(self, name: str) -> bytes:
        """One whole file of this version (FileNotFoundError if it is not part of it)."""
        if self.files is not None and not self.has_file(name):
            raise FileNotFoundError(f"{display_uri(self.folder)} has no file {name!r}")
        return _cat(self.path(name))

    def size(self, name: str) -> int | None:
        """The committed size of one file in bytes (None when the pointer does not say)."""
        for f in self.files or ():
            if f.name == name:
                return f.bytes
        return None

    def open(self, name: str) -> IO[bytes]:
        """One file of this version for reading, with its committed size when known (on
        object storage that spares the request asking for it)."""
        return open_for_read(self.path(name), self.size(name))


def new_version_id(now: datetime | None = None) -> str:
    """A new version id: the UTC time (sortable) and a random suffix (unique)."""
    now = now or datetime.now(timezone.utc)
    return f"{now.strftime(_ID_TIME)}-{uuid.uuid4().hex[:8]}"


def version_started(version_id: str) -> datetime | None:
    """When the write of a version began (from its id); None for an id of another form."""
    try:
        return datetime.strptime(version_id.split("-", 1)[0], _ID_TIME).replace(
            tzinfo=timezone.utc
        )
    except ValueError:
        return None


def _cat(path: UPath) -> bytes:
    """A whole file, read with one request (no cached size from an earlier listing)."""
    if is_local(path):
        with open(fs_path(path), "rb") as f:
            return f.read()
    # s3fs asks for the size first (a HEAD) to decide on a download in parallel parts;
    # pointers, manifests and dead letters are small, so one GET does.
    extra = {"max_concurrency": 1} if hasattr(path.fs, "max_concurrency") else {}
    return path.fs.cat_file(fs_path(path), **extra)


def open_for_read(path: UPath, size: int | None = None) -> IO[bytes]:
    """A file opened for reading; ``size`` (when known) spares object storage the request
    that asks for it. A file that is gone raises FileNotFoundError on the first read."""
    if is_local(path):
        return open(fs_path(path), "rb")
    return open_sized(path.fs, fs_path(path), size)


def open_sized(fs: Any, path: str, size: int | None) -> IO[bytes]:
    """``fs.open(path, "rb")`` without a request for the file's details when its size is
    known: s3fs otherwise asks (a HEAD) on the first read, even when given the size."""
    if size is None:
        return fs.open(path, "rb")
    f = fs.open(path, "rb", size=size)
    if hasattr(type(f), "details"):  # fsspec's buffered files: details settable, else asked
        f.details = {"name": path, "size": size, "type": "file"}
    return f


def read_pointer(leaf: UPath) -> dict[str, Any] | None:
    """The parsed ``_CURRENT`` of a partition folder, or None when there is none."""
    try:
        data = _cat(leaf / POINTER)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        pointer = orjson.loads(data)
        str(pointer["version"])
        list(pointer["files"])
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise PartitionPointerCorrupted(
            f"{display_uri(leaf / POINTER)} is not a partition pointer ({exc}); it was changed "
            "outside this project. Re-materialize the partition."
        ) from exc
    return pointer


def current_version(leaf: str | os.PathLike | UPath, marker: str) -> PartitionVersion | None:
    """The current version of a partition, or None when none is stored. Never modifies.

    Args:
        leaf: the partition folder.
        marker: the file a complete write holds (the IO manager's manifest); only used
            for partitions written before versions.
    """
    leaf = UPath(leaf)
    pointer = read_pointer(leaf)
    if pointer is not None:
        return _pointed_version(leaf, pointer)
    return _legacy_version(leaf, marker)


def _pointed_version(leaf: UPath, pointer: dict[str, Any]) -> PartitionVersion:
    """The version a pointer already read names."""
    return PartitionVersion(
        leaf=leaf,
        folder=leaf / f"{VERSION_PREFIX}{pointer['version']}",
        id=str(pointer["version"]),
        files=tuple(
            VersionFile(str(f["name"]), int(f["bytes"]), str(f["sha256"]))
            for f in pointer["files"]
        ),
        rows=pointer.get("rows"),
        committed_at=pointer.get("committed_at"),
    )


def resolve_partition(leaf: str | os.PathLike | UPath, marker: str) -> UPath | None:
    """The folder holding the current files of a partition, None if absent. Never modifies."""
    version = current_version(leaf, marker)
    return version.folder if version is not None else None


def _legacy_version(leaf: UPath, marker: str) -> PartitionVersion | None:
    """A partition written before versions, read where it lies (never repaired here).

    A complete folder holds its marker. A swap killed half-way left either the previous
    version moved aside (``.<leaf>.old-<token>``, local disks: that one is current) or,
    on object storage, a complete hidden copy (``.<leaf>.staging-<token>``) of the new one.
    """
    if (leaf / marker).exists():
        return PartitionVersion(leaf=leaf, folder=leaf, id=None)
    for kind in (_LEGACY_OLD, _LEGACY_STAGING):
        prefix = f".{leaf.name}{kind}"
        found = sorted(
            (e.name for e in _list_dir(leaf.parent) if e.is_dir and e.name.startswith(prefix)),
            reverse=True,
        )
        for name in found:
            folder = leaf.parent / name
            if (folder / marker).exists():
                return PartitionVersion(leaf=leaf, folder=folder, id=None)
    return None


def current_versions(root: str | os.PathLike | UPath, marker: str) -> Iterator[PartitionVersion]:
    """The current version of every partition stored under ``root`` (e.g. one table).

    Walks the Hive folders; version folders and hidden entries are not entered.
    """
    root = UPath(root)
    pointer = read_pointer(root)
    if pointer is not None:  # a partition folder itself: no listing needed (one read)
        yield _pointed_version(root, pointer)
        return
    entries = _list_dir(root)
    names = {e.name for e in entries if not e.is_dir}
    if POINTER in names or marker in names:
        version = current_version(root, marker)
        if version is not None:
            yield version
        return
    for entry in sorted(entries, key=lambda e: e.name):
        if entry.is_dir and not entry.name.startswith((".", "_", VERSION_PREFIX)):
            yield from current_versions(root / entry.name, marker)


# -- listing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    name: str
    is_dir: bool
    mtime: datetime | None
    size: int


def _as_utc(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, timezone.utc)
    return None


def _list_dir(folder: UPath) -> list[_Entry]:
    """The entries of a folder, fresh (no cached listing); empty when it does not exist."""
    if is_local(folder):
        try:
            with os.scandir(fs_path(folder)) as it:
                out = []
                for e in it:
                    try:
                        st = e.stat()
                    except FileNotFoundError:
                        continue
                    out.append(_Entry(e.name, e.is_dir(), _as_utc(st.st_mtime), st.st_size))
                return out
        except (FileNotFoundError, NotADirectoryError):
            return []
    fs = folder.fs
    path = fs_path(folder).rstrip("/")
    with contextlib.suppress(Exception):
        fs.invalidate_cache(path)
    try:
        infos = fs.ls(path, detail=True)
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = []
    for info in infos:
        name = str(info["name"]).rstrip("/").rsplit("/", 1)[-1]
        if not name or str(info["name"]).rstrip("/") == path:
            continue
        mtime = None
        for key in ("mtime", "LastModified", "last_modified", "created"):
            mtime = _as_utc(info.get(key))
            if mtime is not None:
                break
        out.append(_Entry(name, info.get("type") == "directory", mtime, int(info.get("size") or 0)))
    return out


def _newest_change(folder: UPath) -> datetime | None:
    """The latest modification time of a folder's own entries (None when unknown)."""
    entries = _list_dir(folder)
    times = [e.mtime for e in entries if e.mtime is not None]
    if is_local(folder):
        with contextlib.suppress(OSError):
            times.append(_as_utc(os.stat(fs_path(folder)).st_mtime))
    return max(times) if times else None


def _remove_tree(path: UPath) -> None:
    with contextlib.suppress(FileNotFoundError):
        if is_local(path):
            shutil.rmtree(fs_path(path))
        else:
            path.fs.rm(fs_path(path), recursive=True)


def _remove_file(path: UPath) -> None:
    with contextlib.suppress(FileNotFoundError):
        if is_local(path):
            os.remove(fs_path(path))
        else:
            path.fs.rm_file(fs_path(path))


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- versions: writing ----------------------------------------------------------------------


class VersionFileWriter:
    """A binary file of a version being written: hashes and counts what goes through it.

    Closing it makes the file durable (fsync on a local disk; the upload completes on
    object storage). Usable as a context manager and as a sink for ``pyarrow`` writers.
    """

    def __init__(self, writer: PartitionWriter, name: str):
        self._writer = writer
        self.name = name
        self.path = writer.folder / name
        if is_local(self.path):
            self._file = open(fs_path(self.path), "xb")  # noqa: SIM115 - closed in close()
        else:
            self._file = self.path.fs.open(fs_path(self.path), "wb")
        self._sha = hashlib.sha256()
        self._size = 0
        self.closed = False

    def write(self, data) -> int:
        view = memoryview(data)
        self._file.write(view)
        self._sha.update(view)
        self._size += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        self._file.flush()

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        if self.closed:
            return
        self._file.flush()
        if is_local(self.path):
            os.fsync(self._file.fileno())
        self._file.close()
        self.closed = True
        self._writer._record(VersionFile(self.name, self._size, self._sha.hexdigest()))

    def __enter__(self) -> VersionFileWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class PartitionWriter:
    """Write one new version of a partition and make it current with one atomic commit.

    Example:
        >>> with PartitionWriter(folder, marker="manifest.json") as writer:
        ...     with writer.open("data.bin") as f:     # hashed and fsynced on close
        ...         f.write(...)
        ...     writer.write_file("sketch.bin", b"...")  # an extra small file
        ...     writer.commit(manifest_bytes, rows=n)    # marker, then the pointer

    Leaving the block without ``commit`` (an exception) deletes the new version folder; the
    current version stays as it was. A run killed before its commit leaves an uncommitted
    version folder no reader looks at; a later writer removes it after the grace period.

    Args:
        leaf: the partition folder.
        marker: the name of the manifest the IO manager writes last into the version.
        grace: how long a superseded version is kept for readers still using it.
    """

    def __init__(self, leaf: str | os.PathLike | UPath, marker: str,
                 grace: timedelta = DEFAULT_GRACE):
        self.leaf = UPath(leaf)
        self.marker = marker
        self.grace = grace
        self.version = new_version_id()
        self.folder = self.leaf / f"{VERSION_PREFIX}{self.version}"
        self.committed = False
        self.removed: list[str] = []  # what the cleanup after the commit removed
        self._files: dict[str, VersionFile] = {}

    @property
    def staging(self) -> UPath:
        """The folder the files of this write go to (the new version's folder)."""
        return self.folder

    def __enter__(self) -> PartitionWriter:
        if is_local(self.folder):
            os.makedirs(fs_path(self.folder))
        elif self.folder.protocol not in _OBJECT_STORES:  # object stores have no folders
            with contextlib.suppress(FileExistsError):
                self.folder.fs.makedirs(fs_path(self.folder), exist_ok=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.committed:
            with contextlib.suppress(OSError):
                _remove_tree(self.folder)

    def open(self, name: str) -> VersionFileWriter:
        """A new file of this version, open for writing (binary)."""
        _check_name(name)
        return VersionFileWriter(self, name)

    def write_file(self, name: str, data: bytes) -> None:
        """Add a whole small file to this version (e.g. a sketch stored beside the data)."""
        with self.open(name) as f:
            f.write(data)

    def _record(self, entry: VersionFile) -> None:
        self._files[entry.name] = entry

    def _all_files(self) -> list[VersionFile]:
        """Every file of the version: those written through ``open``, and any other (hashed
        here, read back, then made durable)."""
        files = dict(self._files)
        listed = _list_dir(self.folder)
        gone = sorted(set(files) - {e.name for e in listed})
        if gone:
            raise self._removed_meanwhile(gone)
        for entry in listed:
            if entry.is_dir:
                raise ValueError(
                    f"{display_uri(self.folder)}: a version holds files only, not {entry.name!r}/"
                )
            if entry.name in files:
                continue
            path = self.folder / entry.name
            sha, size = hashlib.sha256(), 0
            if is_local(path):
                with open(fs_path(path), "rb+") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):  # noqa: B023
                        sha.update(chunk)
                        size += len(chunk)
                    os.fsync(f.fileno())
            else:
                with path.fs.open(fs_path(path), "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):  # noqa: B023
                        sha.update(chunk)
                        size += len(chunk)
            files[entry.name] = VersionFile(entry.name, size, sha.hexdigest())
        return sorted(files.values(), key=lambda f: f.name)

    def _removed_meanwhile(self, gone: list[str]) -> RuntimeError:
        # Another writer took this version for abandoned: the write lasted longer than the
        # grace period. Fail rather than point readers at missing files.
        return RuntimeError(
            f"{display_uri(self.folder)}: {gone} disappeared before the commit; another "
            f"writer removed this version as abandoned because the write outlasted the "
            f"grace period ({self.grace}). Raise version_grace_seconds and re-run."
        )

    def commit(self, marker_content: bytes, rows: int | None = None) -> PartitionVersion:
        """Write the marker, make every file durable, then replace the pointer (the commit).

        Returns:
            the committed version, as a reader of the pointer would see it.
        """
        if self.committed:
            raise RuntimeError(f"{display_uri(self.folder)} is committed already")
        try:
            self.write_file(self.marker, marker_content)
        except FileNotFoundError as exc:  # local: the version folder itself is gone
            raise self._removed_meanwhile([self.marker]) from exc
        files = self._all_files()
        if is_local(self.folder):
            _fsync_dir(fs_path(self.folder))
            _fsync_dir(fs_path(self.leaf))  # the new version folder's own entry
        now = datetime.now(timezone.utc)
        previous = _safe_pointer(self.leaf)
        retired = _retired_after(previous, self.leaf, self.marker, now, self.grace)
        pointer = {
            "format": POINTER_FORMAT,
            "version": self.version,
            "committed_at": now.isoformat(),
            "rows": rows,
            "marker": self.marker,
            "files": [{"name": f.name, "bytes": f.bytes, "sha256": f.sha256} for f in files],
            "retired": retired,
        }
        _publish_pointer(self.leaf, orjson.dumps(pointer, option=orjson.OPT_INDENT_2),
                         self.version)
        self.committed = True
        with contextlib.suppress(Exception):  # the commit stands; cleanup is best effort
            self.removed = collect_garbage(self.leaf, self.grace, now=now, pointer=pointer)
        return PartitionVersion(
            leaf=self.leaf, folder=self.folder, id=self.version, files=tuple(files),
            rows=rows, committed_at=pointer["committed_at"],
        )


def _check_name(name: str) -> None:
    if not name or "/" in name or "\\" in name or name.startswith(".") or name == POINTER:
        raise ValueError(f"{name!r} cannot be a file of a partition version")


def _safe_pointer(leaf: UPath) -> dict[str, Any] | None:
    try:
        return read_pointer(leaf)
    except PartitionPointerCorrupted:
        return None  # replaced by this commit


def _retired_after(
    previous: dict[str, Any] | None, leaf: UPath, marker: str, now: datetime, grace: timedelta
) -> list[dict[str, Any]]:
    """The retirement list of the new pointer: when each recent version stopped being
    current (``version`` None: the files of the layout before versions)."""
    retired = []
    for entry in (previous or {}).get("retired") or []:
        at = _parse_time(entry.get("at"))
        # Kept for two grace periods, so that the cleanup after a commit in the second one
        # still knows when the version stopped being current.
        if at is not None and now - at <= 2 * grace:
            retired.append({"version": entry.get("version"), "at": entry["at"]})
    if previous is not None:
        retired.append({"version": previous["version"], "at": now.isoformat()})
    elif _legacy_version(leaf, marker) is not None:
        retired.append({"version": None, "at": now.isoformat()})
    return retired


def _parse_time(value: Any) -> datetime | None:
    try:
        return _as_utc(datetime.fromisoformat(str(value)))
    except ValueError:
        return None


def _publish_pointer(leaf: UPath, data: bytes, version: str) -> None:
    """Replace ``_CURRENT`` in one step: the commit point."""
    pointer = leaf / POINTER
    if is_local(leaf):
        tmp = os.path.join(fs_path(leaf), f".{POINTER}.{version}{_TMP_SUFFIX}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, fs_path(pointer))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
            raise
        _fsync_dir(fs_path(leaf))
        return
    leaf.fs.pipe_file(fs_path(pointer), data)  # one PUT: the object is replaced whole


def collect_garbage(
    leaf: str | os.PathLike | UPath,
    grace: timedelta = DEFAULT_GRACE,
    now: datetime | None = None,
    pointer: dict[str, Any] | None = None,
) -> list[str]:
    """Remove what no reader can still be using from a partition folder (writers only).

    Removed: versions that stopped being current more than ``grace`` ago; uncommitted
    versions and temporary pointers of killed runs whose last change is older than
    ``grace``; the files of the layout before versions, ``grace`` after a version
    replaced them. The current version is never removed.

    Args:
        pointer: the pointer the caller has just committed (saves reading it back). Should
            another writer have committed since, its version is younger than ``grace`` and
            so kept anyway.

    Returns:
        the names removed (relative to the partition folder's parent for legacy folders).
    """
    leaf = UPath(leaf)
    now = now or datetime.now(timezone.utc)
    pointer = pointer or _safe_pointer(leaf)
    if pointer is None:
        return []  # nothing is versioned here yet: nothing of it is ours to remove
    current = f"{VERSION_PREFIX}{pointer['version']}"
    retired_at = {
        entry.get("version"): _parse_time(entry.get("at")) for entry in pointer.get("retired") or []
    }

    def expired(at: datetime | None) -> bool:
        return at is not None and now - at > grace

    removed: list[str] = []
    # The files of the layout before versions stay while a reader may still use them.
    legacy_kept = None in retired_at and not expired(retired_at[None])
    found_legacy = False
    for entry in _list_dir(leaf):
        name = entry.name
        if name in (POINTER, current):
            continue
        path = leaf / name
        if entry.is_dir and name.startswith(VERSION_PREFIX):
            vid = name[len(VERSION_PREFIX):]
            if vid in retired_at:
                gone = expired(retired_at[vid])
            else:
                # Superseded long ago, or never committed (killed, or a live writer). One
                # started less than ``grace`` ago may be a live writer: kept, not even listed.
                started = version_started(vid)
                gone = (started is None or expired(started)) and expired(_newest_change(path))
            if gone:
                _remove_tree(path)
                removed.append(name)
        elif name.startswith(f".{POINTER}.") and name.endswith(_TMP_SUFFIX):
            if expired(entry.mtime):  # a pointer a killed writer never put in place
                _remove_file(path)
                removed.append(name)
        elif not name.startswith(".") and not legacy_kept:
            found_legacy = True
            (_remove_tree if entry.is_dir else _remove_file)(path)
            removed.append(name)
    if not legacy_kept and (found_legacy or None in retired_at):
        # Hidden copies a killed run of the layout before versions left beside the leaf.
        prefixes = (f".{leaf.name}{_LEGACY_STAGING}", f".{leaf.name}{_LEGACY_OLD}")
        for entry in _list_dir(leaf.parent):
            if entry.is_dir and entry.name.startswith(prefixes):
                _remove_tree(leaf.parent / entry.name)
                removed.append(f"../{entry.name}")
    return removed
