"""The Parquet IO manager: one Parquet folder per partition, written row group by row group.

Each write of a partition is a version (layout and commit:
:mod:`ingestion_assets.io_managers.storage`) holding::

    part-00000.parquet   the rows; a new part file starts when the stream's schema widens
    ...                  (a new column, null -> type, int -> float), so nothing is rewritten
    _dead_letters.parquet  records that failed the contract, with the reason and the raw
                         record (only when there are any; the leading ``_`` keeps Parquet
                         dataset readers from mixing them into the table)
    _keys.u64            the key sketch: the sorted distinct 64-bit hashes of the primary
                         keys of the rows (definition metadata ``ingestion/primary_key``),
                         read by the cross-partition ``uniqueness`` check
    <extra files>        small files the output asks to store beside the data (``extra_files``)
    _SUCCESS             written last: files, rows, dead letters, the (unified) Arrow schema

The rows, the dead letters, the key sketch and any extra files are one version: committed
together, read together, and a reader of one version never sees files of another.

An empty partition is written with the full schema of the table: the stream's schema (the
declared columns), then the columns of the last stored partition of the asset, then any
primary-key column still missing (as text), so every file of a table has the same columns.

Every row gets provenance columns: ``_ingested_at`` (UTC, one value per write),
``_source``, ``_endpoint`` (definition metadata ``ingestion/source``/``ingestion/endpoint``,
else the asset key's first/last parts), ``_partition`` (the partition key) and ``_run_id``.

Record batches are buffered up to ``row_group_size`` rows and written as one row group, so
memory is bounded by a row group whatever the size of the partition.
"""

from __future__ import annotations

import base64
import sys
import tempfile
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any, ClassVar

import dagster as dg
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from upath import UPath

from ingestion_assets.dagster_shim import output_instance
from ingestion_assets.io_managers import storage
from ingestion_assets.io_managers.staged import PartitionIOManager, StagedPartition
from ingestion_assets.normalize import DEAD_LETTER_SCHEMA, DeadLetters, RecordBatchStream
from ingestion_assets.safe_metadata import redact_metadata, safe_cell

if typing.TYPE_CHECKING:
    import pyarrow.dataset as ds

MARKER = "_SUCCESS"
DEAD_LETTERS_FILE = "_dead_letters.parquet"
KEY_SKETCH_FILE = "_keys.u64"
PRIMARY_KEY_METADATA_KEY = "ingestion/primary_key"
SOURCE_METADATA_KEY = "ingestion/source"
ENDPOINT_METADATA_KEY = "ingestion/endpoint"
PROVENANCE_COLUMNS = ("_ingested_at", "_source", "_endpoint", "_partition", "_run_id")
_TIMESTAMP = pa.timestamp("us", tz="UTC")


def encode_schema(schema: pa.Schema) -> str:
    """An Arrow schema as the text a version's manifest (``_SUCCESS``) holds."""
    return base64.b64encode(schema.serialize().to_pybytes()).decode()


def _decode_schema(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def _same_schema(a: pa.Schema, b: pa.Schema) -> bool:
    return a.equals(b, check_metadata=False)


def _to_batches(obj: Any, chunk: int) -> tuple[Iterator[pa.RecordBatch], pa.Schema | None]:
    """The record batches of an output, lazily, and a schema hint for an empty stream."""
    # pandas (and pyarrow.dataset, which imports it) add ~30 MB to a process: imported
    # only where needed. An object can only be a DataFrame if pandas is loaded already.
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(obj, pd.DataFrame):
        table = pa.Table.from_pandas(obj, preserve_index=False)
        return iter(table.to_batches(max_chunksize=chunk)), table.schema
    if isinstance(obj, pa.Table):
        return iter(obj.to_batches(max_chunksize=chunk)), obj.schema
    if isinstance(obj, pa.RecordBatch):
        return iter([obj]), obj.schema
    if isinstance(obj, Iterable) and hasattr(obj, "schema"):
        # RecordBatchStream, RecordBatchReader, or any iterable of batches with a schema.
        return iter(obj), None
    raise dg.DagsterInvariantViolationError(
        "ParquetIOManager stores a RecordBatchStream (or any iterable of pyarrow.RecordBatch "
        f"with .schema), a pyarrow.Table or a pandas.DataFrame, not {type(obj).__name__}."
    )


class _CommittedFiles(pafs.FSSpecHandler):
    """Arrow's view of an fsspec filesystem that opens committed files with the sizes their
    pointer lists: no request to find a file or its size (three per file otherwise on
    object storage: the dataset's listing, the handler's ``isfile``, the open)."""

    def __init__(self, fs: Any, sizes: Mapping[str, int]):
        super().__init__(fs)
        self.sizes = sizes

    def open_input_file(self, path: str) -> Any:
        size = self.sizes.get(path)
        if size is None:
            return super().open_input_file(path)
        return pa.PythonFile(storage.open_sized(self.fs, path, size), mode="r")


def versions_dataset(versions: Iterable[storage.PartitionVersion]) -> ds.Dataset:
    """The files of committed versions (each version's manifest names them) as one lazy
    ``pyarrow.dataset``, with the versions' schemas unified.

    Raises:
        pa.ArrowInvalid, pa.ArrowTypeError: the versions' schemas are incompatible.
    """
    import pyarrow.dataset as ds

    paths: list[str] = []
    sizes: dict[str, int] = {}
    schemas: list[pa.Schema] = []
    folder: UPath | None = None
    for version in versions:
        marker = orjson.loads(version.read_bytes(MARKER))
        schemas.append(_decode_schema(marker["schema"]))
        for name in marker["files"]:
            path = storage.fs_path(version.path(name))
            paths.append(path)
            size = version.size(name)
            if size is not None:
                sizes[path] = size
        folder = folder or version.folder
    schema = pa.unify_schemas(schemas, promote_options="permissive") if schemas else (
        pa.schema([])
    )
    if folder is None or storage.is_local(folder):
        filesystem: pafs.FileSystem = pafs.LocalFileSystem()
    else:
        filesystem = pafs.PyFileSystem(_CommittedFiles(folder.fs, sizes))
    parquet = ds.ParquetFileFormat()
    fragments = [parquet.make_fragment(p, filesystem, file_size=sizes.get(p)) for p in paths]
    return ds.FileSystemDataset(fragments, schema, parquet, filesystem)


def current_dataset(table_folder: str | UPath) -> ds.Dataset:
    """The current version of every partition of one table as one lazy ``pyarrow.dataset``.

    The pointers are read once: a version committed while the dataset is scanned changes
    nothing it returns. ``dataset.files`` lists the files (``docs/storage.md``).
    """
    return versions_dataset(storage.current_versions(table_folder, MARKER))


def _markdown_preview(table: pa.Table, limit: int) -> str:
    names = table.column_names
    rows = table.slice(0, limit).to_pylist()

    def cell(value: Any) -> str:
        text = "" if value is None else str(value)
        text = text.replace("|", "\\|").replace("\n", " ")
        return text if len(text) <= 60 else text[:57] + "..."

    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(cell(safe_cell(n, row[n])) for n in names) + " |" for row in rows]
    return "\n".join(lines)


def table_schema_metadata(schema: pa.Schema) -> dg.TableSchema:
    """A Dagster ``TableSchema`` describing an Arrow schema."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=f.name,
                type=str(f.type),
                constraints=None if f.nullable else dg.TableColumnConstraints(nullable=False),
            )
            for f in schema
        ]
    )


class _PartWriter:
    """Write batches into part files of one version, one row group per ``row_group_size`` rows."""

    def __init__(self, open_file: Callable[[str], Any], row_group_size: int, compression: str):
        self.open_file = open_file
        self.row_group_size = row_group_size
        self.compression = compression
        self.files: list[str] = []
        self.schemas: list[pa.Schema] = []
        self.rows = 0
        self.row_groups = 0
        self._writer: pq.ParquetWriter | None = None
        self._sink = None
        self._buffer: list[pa.RecordBatch] = []
        self._buffered = 0

    @property
    def schema(self) -> pa.Schema | None:
        return self.schemas[-1] if self.schemas else None

    def write(self, batch: pa.RecordBatch) -> None:
        if self.schema is not None and not _same_schema(batch.schema, self.schema):
            cast = self._try_cast(batch)
            if cast is None:
                self._close_file()  # the schema widened: the next part file has the new one
            else:
                batch = cast
        if self._writer is None:
            self._open_file(batch.schema)
        self._buffer.append(batch)
        self._buffered += batch.num_rows
        if self._buffered >= self.row_group_size:
            self._flush()

    def _try_cast(self, batch: pa.RecordBatch) -> pa.RecordBatch | None:
        # Same columns, narrower types (e.g. int values in a float column): keep the file.
        if batch.schema.names != self.schema.names:
            return None
        for new, old in zip(batch.schema, self.schema, strict=True):
            if pa.types.is_string(new.type) and not pa.types.is_string(old.type):
                return None  # a column widened to text: "007" must not become 7 in this file
        try:
            return batch.cast(self.schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            return None

    def _open_file(self, schema: pa.Schema) -> None:
        name = f"part-{len(self.files):05d}.parquet"
        self._sink = self.open_file(name)
        self._writer = pq.ParquetWriter(self._sink, schema, compression=self.compression)
        self.files.append(name)
        self.schemas.append(schema)

    def _flush(self) -> None:
        if not self._buffer:
            return
        table = pa.Table.from_batches(self._buffer, schema=self.schema)
        self._writer.write_table(table, row_group_size=self.row_group_size)
        # Arrow's pool keeps what a row group freed unless asked (mimalloc, pyarrow's default,
        # measured ~10 MB higher at 1M records without this; the system allocator this package
        # chooses is trimmed by it; docs/performance.md).
        pa.default_memory_pool().release_unused()
        self.row_groups += -(-table.num_rows // self.row_group_size)
        self.rows += table.num_rows
        self._buffer, self._buffered = [], 0

    def _close_file(self) -> None:
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
        self._writer = self._sink = None

    def close(self, empty_schema: pa.Schema) -> None:
        if not self.files:
            self._open_file(empty_schema)  # an empty partition is still a partition
        self._close_file()

    def abort(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                self._sink.close()


class _DeadLetterWriter:
    """Write dead letters (with provenance) into one Parquet file, opened on the first one."""

    def __init__(self, open_file: Callable[[], Any], provenance: dict[str, Any], compression: str):
        self.open_file = open_file
        self.provenance = provenance
        self.compression = compression
        self.rows = 0
        self._sink = None
        self._writer: pq.ParquetWriter | None = None

    def __call__(self, batch: pa.RecordBatch) -> None:
        batch = ParquetIOManager._with_provenance(batch, self.provenance)
        if self._writer is None:
            self._sink = self.open_file()
            self._writer = pq.ParquetWriter(self._sink, batch.schema, compression=self.compression)
        self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = self._sink = None


_POLY = np.uint64(0x9E3779B97F4A7C15)  # odd: every power is distinct mod 2**64
_powers = np.ones(1, dtype=np.uint64)


def _powers_upto(length: int) -> np.ndarray:
    global _powers
    if len(_powers) < length:
        grown = np.full(max(length, 2 * len(_powers)), _POLY, dtype=np.uint64)
        grown[0] = 1
        _powers = np.cumprod(grown, dtype=np.uint64)  # wraps mod 2**64, as intended
    return _powers


def _mix(z: np.ndarray) -> np.ndarray:
    # splitmix64's finalizer: every input bit affects every output bit.
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def hash_keys(texts: pa.Array) -> np.ndarray:
    """64-bit hashes of non-null strings, vectorised: a polynomial over the UTF-8 bytes
    (mod 2**64) mixed with the length. Not cryptographic; a collision can only make the
    uniqueness check report a key that is not shared (never miss one)."""
    texts = pc.drop_null(texts).cast(pa.string())
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    n = len(texts)
    if n == 0:
        return np.empty(0, np.uint64)
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int32)[texts.offset:texts.offset + n + 1]
    starts = (offsets[:-1] - offsets[0]).astype(np.int64)
    lengths = np.diff(offsets).astype(np.int64)
    total = int(lengths.sum())
    sums = np.zeros(n, dtype=np.uint64)
    if total:
        data = np.frombuffer(texts.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
        position = np.arange(total, dtype=np.int64) - np.repeat(starts, lengths)
        weighted = data.astype(np.uint64) * _powers_upto(int(lengths.max()))[position]
        filled = lengths > 0
        sums[filled] = np.add.reduceat(weighted, starts[filled])
    return _mix(sums ^ _mix(lengths.astype(np.uint64) + np.uint64(1)))


_SKETCH_SLICE = 65_536  # keys written at once (512 kB)
#: Keys held in memory before they are spilled, sorted, into the bucket files (512 kB).
_SKETCH_SPILL = 65_536
#: Buckets by the hashes' top bits: each holds about 1/16 of the keys, so sorting one at the
#: end holds 1/16 of them (0.5 MB a million keys) and the buckets in turn are sorted overall.
_SKETCH_BUCKET_BITS = 4
_SKETCH_EDGES = np.arange(1, 1 << _SKETCH_BUCKET_BITS, dtype=np.uint64) << np.uint64(
    64 - _SKETCH_BUCKET_BITS
)


class KeySketch:
    """The 64-bit hashes of a partition's primary keys, written beside it as sorted uint64.

    A key's hash is :func:`hash_keys` of its text (columns joined by ``\x1f``), the same for
    an int 7 and a string "7". 8 bytes a row; comparing two partitions reads two such files,
    never the data.

    Memory does not grow with the partition while it is written: the hashes gather in one
    buffer of ``_SKETCH_SPILL`` keys; a full buffer is sorted and spilled into 16 local
    temporary files by the hashes' top 4 bits (deleted when closed). Writing sorts one bucket
    at a time: about 1/16 of the keys, since the hashes spread evenly over their range; keys
    chosen so that their hashes share the top bits (the hash is not keyed) can fill one
    bucket, and then the write holds 8 bytes a key, as a sketch held in memory did. A
    partition of fewer keys never touches a file. (Held in memory, a million keys were 8 MB
    of the step's peak, 12 MB while the buffer was reallocated.)
    """

    def __init__(self, columns: list[str]):
        self.columns = columns
        self._pending = np.empty(0, np.uint64)  # allocated on the first keys
        self._count = 0
        self._buckets: list[Any] | None = None  # the spill files, once there are any

    def add(self, batch: pa.RecordBatch) -> None:
        if not self.columns or batch.num_rows == 0:
            return
        names = batch.schema.names
        if any(c not in names for c in self.columns):
            return
        texts = [batch.column(c).cast(pa.string()) for c in self.columns]
        keys = texts[0] if len(texts) == 1 else pc.binary_join_element_wise(*texts, "\x1f")
        hashes = hash_keys(keys)
        if not self._pending.size:
            self._pending = np.empty(_SKETCH_SPILL, np.uint64)
        at = 0
        while at < hashes.size:
            if self._count == self._pending.size:
                self._spill()
            take = min(hashes.size - at, self._pending.size - self._count)
            self._pending[self._count:self._count + take] = hashes[at:at + take]
            self._count += take
            at += take

    def _spill(self) -> None:
        """The buffered hashes, sorted, appended to their buckets' files."""
        hashes = self._pending[:self._count]
        hashes.sort()
        if self._buckets is None:
            self._buckets = [tempfile.TemporaryFile(prefix="ingestion-keys-")
                             for _ in range(len(_SKETCH_EDGES) + 1)]
        bounds = [0, *np.searchsorted(hashes, _SKETCH_EDGES).tolist(), hashes.size]
        for f, lo, hi in zip(self._buckets, bounds[:-1], bounds[1:], strict=True):
            if hi > lo:
                f.write(hashes[lo:hi].tobytes())
        self._count = 0

    def write(self, path: UPath) -> int:
        """Write the distinct hashes, sorted, to ``path``; returns how many there are."""
        try:
            with path.open("wb") as f:
                if self._buckets is None:  # all in memory: sorted in place
                    return _write_distinct(f, self._pending[:self._count])
                if self._count:
                    self._spill()
                distinct = 0
                for bucket in self._buckets:
                    bucket.flush()
                    bucket.seek(0)
                    distinct += _write_distinct(f, np.fromfile(bucket, dtype=np.uint64))
                return distinct
        finally:
            self.close()

    def close(self) -> None:
        """Drop the hashes and delete the spill files."""
        for bucket in self._buckets or ():
            bucket.close()
        self._buckets = None
        self._pending, self._count = np.empty(0, np.uint64), 0


def _write_distinct(f: Any, hashes: np.ndarray) -> int:
    """Sort ``hashes`` in place and write the distinct ones, a slice at a time."""
    hashes.sort()
    distinct = np.ones(hashes.size, dtype=bool)
    np.not_equal(hashes[1:], hashes[:-1], out=distinct[1:])
    for at in range(0, hashes.size, _SKETCH_SLICE):
        part = hashes[at:at + _SKETCH_SLICE][distinct[at:at + _SKETCH_SLICE]]
        f.write(part.astype("<u8", copy=False).tobytes())
    return int(distinct.sum())


def read_key_sketch(folder: str | UPath) -> np.ndarray | None:
    """The sorted key hashes stored with a partition's current version (None when none)."""
    data = read_partition_file(folder, KEY_SKETCH_FILE)
    return None if data is None else np.frombuffer(data, dtype="<u8")


def read_stored_schema(folder: str | UPath) -> pa.Schema | None:
    """The Arrow schema recorded in the marker of a partition's current version (or None)."""
    version = storage.current_version(folder, MARKER)
    if version is None:
        return None
    return _decode_schema(orjson.loads(version.read_bytes(MARKER))["schema"])


def read_dead_letters(
    folder: str | UPath | storage.PartitionVersion, limit: int | None = None
) -> pa.Table:
    """The dead letters stored with the current version of a partition (empty when none).

    Reads only; a version committed meanwhile does not change what is returned.

    Args:
        folder: the partition folder (``dagster/uri`` of its materialization), the
            folder of one version (``dead_letters_uri`` without the file name), or a
            version already resolved (``storage.current_version``): its dead letters,
            with no second read of the pointer, so they match the rows read from it.
        limit: read only the first rows (a sample), not the whole file.
    """
    version = folder if isinstance(folder, storage.PartitionVersion) else (
        storage.current_version(folder, MARKER)
    )
    if version is None or not version.has_file(DEAD_LETTERS_FILE):
        return pa.Table.from_pylist([], schema=DEAD_LETTER_SCHEMA)
    with version.open(DEAD_LETTERS_FILE) as f:
        parquet = pq.ParquetFile(f)
        if limit is None:
            return parquet.read()
        batches = parquet.iter_batches(batch_size=limit)
        return pa.Table.from_batches([next(batches)]) if parquet.metadata.num_rows else (
            parquet.schema_arrow.empty_table()
        )


def _lag_metadata(newest: datetime | None, now: datetime) -> dict[str, Any]:
    if newest is None:
        return {}
    if newest.tzinfo is None:
        newest = newest.replace(tzinfo=timezone.utc)
    return {
        "newest_record_at": dg.MetadataValue.timestamp(newest),
        "lag_hours": round((now - newest).total_seconds() / 3600, 3),
    }


class _PartitionWrite:
    """The files of one partition's new version as its batches arrive: part files, dead
    letters, key sketch, column counts and preview; then its marker and metadata."""

    def __init__(self, manager: Any, writer: storage.PartitionWriter, obj: Any,
                 provenance: dict[str, Any], primary_key: list[str]):
        self.manager, self.writer, self.obj = manager, writer, obj
        self.provenance = provenance
        self.primary_key = primary_key
        self.parts = _PartWriter(writer.open, manager.row_group_size, manager.compression)
        self.sketch = KeySketch(primary_key) if primary_key else None
        self.sketch_keys: int | None = None
        self.non_null: dict[str, int] = {}
        self.preview: list[pa.RecordBatch] = []
        self.preview_rows = 0
        self._constant: dict[int, list[pa.Array]] = {}  # provenance columns, shared
        self.extra_names: list[str] = []
        self.dead_letters = getattr(obj, "dead_letters", None)
        self.dead_writer: _DeadLetterWriter | None = None
        if isinstance(self.dead_letters, DeadLetters):
            self.dead_writer = _DeadLetterWriter(
                lambda: writer.open(DEAD_LETTERS_FILE), provenance, manager.compression
            )
            self.dead_letters.attach(self.dead_writer)

    def batches(self, batches: Iterable[pa.RecordBatch]) -> None:
        limit = self.manager.preview_rows
        for batch in batches:
            if batch.num_rows == 0:
                continue
            for name, column in zip(batch.schema.names, batch.columns, strict=True):
                # Values per column, to name the columns that hold none (drift check).
                self.non_null[name] = (
                    self.non_null.get(name, 0) + len(column) - column.null_count
                )
            if self.sketch is not None:
                self.sketch.add(batch)
            batch = ParquetIOManager._with_provenance(batch, self.provenance, self._constant)
            if self.preview_rows < limit:
                self.preview.append(batch.slice(0, limit - self.preview_rows))
                self.preview_rows += self.preview[-1].num_rows
            self.parts.write(batch)

    def close(self, hint: pa.Schema | None, last: Callable[[], pa.Schema | None]) -> pa.Schema:
        """Close every file of the version; returns the partition's (unified) schema."""
        if not self.parts.files:  # an empty partition still gets the table's columns
            hint = _full_empty_schema(hint, last(), self.primary_key)
        empty = ParquetIOManager._with_provenance(
            pa.RecordBatch.from_pylist([], schema=hint or pa.schema([])), self.provenance
        ).schema
        self.parts.close(empty)
        if self.sketch is not None:
            self.sketch_keys = self.sketch.write(self.writer.folder / KEY_SKETCH_FILE)
        if self.dead_writer is not None:
            self.dead_letters.flush()
            self.dead_writer.close()
        self.extra_names = _write_extra_files(self.writer, self.obj)
        return _partition_schema(self.parts.schemas, hint, self.provenance)

    def abort(self) -> None:
        self.parts.abort()
        if self.sketch is not None:
            self.sketch.close()
        if self.dead_writer is not None:
            self.dead_writer.close()

    def marker(self, run_id: str, schema: pa.Schema) -> bytes:
        """The ``_SUCCESS`` file: files, rows, dead letters, key sketch, schema."""
        marker: dict[str, Any] = {
            "run_id": run_id,
            "partition": self.provenance["_partition"],
            "written_at": datetime.now(timezone.utc).isoformat(),
            "rows": self.parts.rows,
            "row_groups": self.parts.row_groups,
            "files": self.parts.files,
            "schema": encode_schema(schema),
        }
        if self.dead_writer is not None:
            rows = self.dead_writer.rows
            marker["dead_letters"] = {"rows": rows, "file": DEAD_LETTERS_FILE if rows else None}
        if self.sketch_keys is not None:
            marker["key_sketch"] = {"file": KEY_SKETCH_FILE, "keys": self.sketch_keys,
                                    "columns": self.primary_key}
        if self.extra_names:
            marker["extra_files"] = self.extra_names
        return orjson.dumps(marker, option=orjson.OPT_INDENT_2)

    def metadata(self, folder: UPath, schema: pa.Schema) -> dict[str, Any]:
        """What the partition's materialization shows."""
        parts = self.parts
        metadata: dict[str, Any] = {
            "dagster/row_count": parts.rows,
            "dagster/column_schema": table_schema_metadata(schema),
            "dagster/uri": storage.display_uri(folder),
            "uri": storage.uri_metadata(folder),
            "files": len(parts.files),
            "row_groups": parts.row_groups,
        }
        if parts.rows:
            metadata["null_columns"] = dg.MetadataValue.json(
                sorted(name for name, count in self.non_null.items() if count == 0)
            )
        if self.dead_writer is not None:
            metadata["dead_letters"] = self.dead_writer.rows
            if self.dead_writer.rows:
                metadata["dead_letter_reasons"] = dg.MetadataValue.json(
                    self.dead_letters.summary()
                )
                metadata["dead_letters_uri"] = storage.uri_metadata(
                    self.writer.folder / DEAD_LETTERS_FILE  # the new version's folder
                )
        metadata.update(_lag_metadata(getattr(self.obj, "newest_record_at", None),
                                      self.provenance["_ingested_at"]))
        if self.preview:
            metadata["preview"] = dg.MetadataValue.md(
                _markdown_preview(_concat_preview(self.preview), self.manager.preview_rows)
            )
        extra = getattr(self.obj, "metadata", None)
        if isinstance(extra, dict):
            metadata.update(extra)
        return metadata


class ParquetIOManager(PartitionIOManager):
    """Store tables as Parquet, one folder per partition, replaced atomically.

    ``handle_output`` accepts a ``RecordBatchStream`` (or any iterable of
    ``pyarrow.RecordBatch`` with ``.schema``), a ``pyarrow.Table`` or a ``pandas.DataFrame``.

    ``load_input`` reads the upstream partition(s) the input maps to: one partition, a range,
    or all materialized partitions (an unpartitioned downstream asset), always as one
    object. It returns a ``pandas.DataFrame`` unless the input is annotated
    ``pyarrow.Table``, ``pyarrow.dataset.Dataset`` (lazy, nothing read until scanned),
    ``pyarrow.RecordBatchReader`` or ``RecordBatchStream`` (both streamed, memory bounded
    by a batch). Missing partitions in a range fail unless ``allow_missing_partitions`` is
    set here or in the input metadata.
    """

    base_path: str = "data/tables"
    row_group_size: int = 16_384
    compression: str = "zstd"
    preview_rows: int = 5

    marker: ClassVar[str] = MARKER
    stored: ClassVar[str] = "table"

    # -- writing ------------------------------------------------------------------------

    def _store(self, context: dg.OutputContext, obj: Any) -> None:
        known: dict[str, pa.Schema] = {}  # the last schema written, for empty partitions
        storage.write_partitions(
            self._base, context, obj,
            lambda key, folder, data: self._write_partition(context, key, folder, data, known),
        )

    def _write_partition(
        self, context: dg.OutputContext, key: str | None, folder: UPath, obj: Any,
        known: dict[str, pa.Schema] | None = None,
    ) -> dict[str, Any]:
        """Write one partition's batches row group by row group; returns its metadata."""
        staged = self.stage_partition(
            folder, key, obj, asset_key_path=storage.asset_key_path(context),
            run_id=context.run_id, definition_metadata=context.definition_metadata,
            last_schema=lambda: _last_stored_schema(context, self._base), known=known,
        )
        return staged.commit()

    def stage_partition(
        self, folder: UPath, key: str | None, obj: Any, *, asset_key_path: list[str],
        run_id: str, definition_metadata: Mapping[str, Any] | None = None,
        last_schema: Callable[[], pa.Schema | None] = lambda: None,
        known: dict[str, pa.Schema] | None = None,
    ) -> StagedPartition:
        """Write one partition (dead letters, key sketch, extra files) as a new version.

        Nothing is visible until :meth:`StagedPartition.commit`; an error here removes the
        version's files and leaves the stored partition as it was. ``last_schema`` gives the
        asset's last stored schema (for an empty partition's columns) when it is needed.
        """
        batches, schema_hint = _to_batches(obj, self.row_group_size)
        provenance = self._provenance(key, obj, asset_key_path, run_id, definition_metadata)
        known = {} if known is None else known
        writer = self._new_version(folder)
        try:
            write = _PartitionWrite(self, writer, obj, provenance,
                                    _primary_key(definition_metadata))
            try:
                write.batches(batches)
                hint = getattr(obj, "schema", None) if schema_hint is None else schema_hint
                schema = write.close(hint, lambda: known.get("last") or last_schema())
            except BaseException:
                write.abort()
                raise
            marker_bytes = write.marker(run_id, schema)
        except BaseException:
            writer.__exit__(None, None, None)  # not committed: the version's files go
            raise
        known["last"] = schema
        metadata = write.metadata(folder, schema)
        return StagedPartition(writer, marker_bytes, redact_metadata(metadata),
                               commit_kwargs={"rows": write.parts.rows})

    @staticmethod
    def _provenance(
        key: str | None, obj: Any, key_path: list[str], run_id: str,
        definition_metadata: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        definition = definition_metadata or {}
        source = getattr(obj, "source", None) or definition.get(SOURCE_METADATA_KEY) or key_path[0]
        endpoint = (
            getattr(obj, "endpoint", None) or definition.get(ENDPOINT_METADATA_KEY) or key_path[-1]
        )
        return {
            "_ingested_at": datetime.now(timezone.utc),
            "_source": str(source),
            "_endpoint": str(endpoint),
            "_partition": key,
            "_run_id": run_id,
        }

    @staticmethod
    def _with_provenance(
        batch: pa.RecordBatch, provenance: dict[str, Any],
        reuse: dict[int, list[pa.Array]] | None = None,
    ) -> pa.RecordBatch:
        """``batch`` with the provenance columns. ``reuse`` keeps the last columns built (by
        row count): batches of the same size share them, so a row group's buffered batches
        hold one copy of the constant columns, not one per page (~1 MB a row group)."""
        n = batch.num_rows
        types = {"_ingested_at": _TIMESTAMP}
        for name in PROVENANCE_COLUMNS:
            index = batch.schema.get_field_index(name)
            if index >= 0:  # a column of the same name from the data is replaced
                batch = batch.remove_column(index)
        columns = reuse.get(n) if reuse is not None else None
        if columns is None:
            columns = [pa.repeat(pa.scalar(provenance[name], types.get(name, pa.string())), n)
                       for name in PROVENANCE_COLUMNS]
            if reuse is not None:
                reuse.clear()
                reuse[n] = columns
        arrays = [*batch.columns, *columns]
        fields = [*batch.schema, *(pa.field(name, a.type) for name, a in
                                   zip(PROVENANCE_COLUMNS, columns, strict=True))]
        return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields, batch.schema.metadata))

    # -- reading ------------------------------------------------------------------------

    def load_input(self, context: dg.InputContext) -> Any:
        import pyarrow.dataset as ds

        dataset = self.load_dataset(context)
        wanted = _wanted_type(context)
        if wanted is ds.Dataset or (isinstance(wanted, type) and issubclass(wanted, ds.Dataset)):
            return dataset
        if wanted is pa.RecordBatchReader:
            return dataset.scanner().to_reader()  # streamed, bounded by a batch
        if wanted is RecordBatchStream:
            return RecordBatchStream(dataset.to_batches(), dataset.schema)
        table = dataset.to_table()
        if wanted is pa.Table:
            return table
        return table.to_pandas()

    def load_dataset(self, context: dg.InputContext) -> ds.Dataset:
        """The upstream partition(s) an input needs, as one lazy ``pyarrow.dataset``."""
        # The pointers are read once; the dataset names those versions' files only, so a
        # version committed while it is scanned changes nothing it returns.
        versions, _ = self._stored_inputs(context)
        try:
            return versions_dataset(version for _key, version in versions)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            # Schema drift between partitions (e.g. a column turned from int to text).
            raise dg.DagsterInvariantViolationError(
                f"The partitions of {context.asset_key.to_user_string()} read by this input "
                f"have incompatible schemas ({exc}); re-materialize the older partitions or "
                "declare the column's type in the endpoint schema."
            ) from exc


def _primary_key(definition_metadata: Mapping[str, Any] | None) -> list[str]:
    text = (definition_metadata or {}).get(PRIMARY_KEY_METADATA_KEY) or ""
    text = getattr(text, "value", text)
    return [c for c in str(text).split(",") if c]


def _last_stored_schema(context: dg.OutputContext, base: UPath) -> pa.Schema | None:
    """The schema of the asset's newest stored partition (from the instance's event log)."""
    try:
        instance = output_instance(context)
        key = context.asset_key
    except Exception:  # noqa: BLE001 - an output context built without a run: no history
        return None
    return last_stored_schema(instance, key)


def last_stored_schema(instance: dg.DagsterInstance, key: dg.AssetKey) -> pa.Schema | None:
    """The schema of an asset's newest stored partition (from the instance's event log)."""
    records = instance.fetch_materializations(key, limit=1).records
    if not records:
        return None
    uri = records[0].asset_materialization.metadata.get("dagster/uri")
    if uri is None:
        return None
    try:
        return read_stored_schema(getattr(uri, "value", uri))
    except (OSError, ValueError, KeyError):
        return None


def _full_empty_schema(
    hint: pa.Schema | None, last: pa.Schema | None, primary_key: list[str]
) -> pa.Schema:
    """An empty partition's columns: the stream's, the table's last known, the primary key."""
    fields = list(hint or [])
    names = {f.name for f in fields}
    for f in last or []:
        if f.name not in names and f.name not in PROVENANCE_COLUMNS:
            fields.append(f)
            names.add(f.name)
    for name in primary_key:
        if name not in names:
            fields.append(pa.field(name, pa.string(), nullable=False))
            names.add(name)
    return pa.schema(fields, metadata=hint.metadata if hint is not None else None)


def _partition_schema(
    schemas: list[pa.Schema], final: pa.Schema | None, provenance: dict[str, Any]
) -> pa.Schema:
    """The schema recorded for a partition: its part files' schemas unified.

    When a column was widened to text part-way (a type conflict between pages), the part
    files disagree on its type; the stream's final schema (where it is text) then decides.
    """
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        if final is None:
            raise
        return ParquetIOManager._with_provenance(
            pa.RecordBatch.from_pylist([], schema=final), provenance
        ).schema


def _write_extra_files(writer: storage.PartitionWriter, obj: Any) -> list[str]:
    """Store the output's ``extra_files`` in the version, once its batches are consumed.

    ``extra_files`` is a mapping of file name -> bytes, or a callable returning one (called
    after the last batch, so it can hold what was computed while streaming, e.g. a key
    sketch). Read them back with :func:`read_partition_file`.
    """
    extra = getattr(obj, "extra_files", None)
    if extra is None:
        return []
    if callable(extra):
        extra = extra()
    if not isinstance(extra, Mapping):
        raise dg.DagsterInvariantViolationError(
            f"extra_files must be a mapping of file name -> bytes, not {type(extra).__name__}"
        )
    names = []
    for name, data in extra.items():
        if name in (MARKER, DEAD_LETTERS_FILE, KEY_SKETCH_FILE) or str(name).startswith("part-"):
            raise dg.DagsterInvariantViolationError(
                f"extra file {name!r} would replace a file of the table itself"
            )
        writer.write_file(str(name), bytes(data))
        names.append(str(name))
    return names


def read_partition_file(folder: str | UPath, name: str) -> bytes | None:
    """A file stored with the current version of a table partition (None when absent).

    Args:
        folder: the partition folder (``dagster/uri`` of its materialization).
        name: the file name, e.g. one of the output's ``extra_files``.
    """
    version = storage.current_version(folder, MARKER)
    if version is None or not version.has_file(name):
        return None
    return version.read_bytes(name)


def current_parquet_files(table_folder: str | UPath) -> list[str]:
    """The Parquet files of the current version of every partition of one table.

    The way other engines read a table consistently (``docs/storage.md``): e.g.
    ``duckdb.read_parquet(current_parquet_files("data/tables/payments/charges"))``.
    Local paths are absolute; object storage paths are URLs (``s3://...``).
    """
    files: list[str] = []
    for version in storage.current_versions(table_folder, MARKER):
        marker = orjson.loads(version.read_bytes(MARKER))
        for name in marker["files"]:
            path = version.path(name)
            files.append(storage.display_uri(path) if storage.is_local(path) else str(path))
    return files


def _concat_preview(batches: list[pa.RecordBatch]) -> pa.Table:
    try:
        return pa.Table.from_batches(batches)
    except pa.ArrowInvalid:  # the schema widened inside the preview: show the first batch
        return pa.Table.from_batches(batches[:1])


def _wanted_type(context: dg.InputContext) -> Any:
    try:
        wanted = context.dagster_type.typing_type
    except Exception:  # noqa: BLE001 - no type information: the default
        return None
    origin = typing.get_origin(wanted)
    return origin or wanted
